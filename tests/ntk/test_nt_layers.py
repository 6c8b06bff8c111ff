"""The layers added for stax coverage against neural-tangents in float64 (side environment:
`. .venv-nt/bin/activate && OMP_NUM_THREADS=1 pytest -m nt -n 0 tests/ntk/test_nt_layers.py -q`;
skipped elsewhere). Each spec puts the new layer inside a network (an affine layer before it, a
second activation or pooling after it), so its variances and its NTK feed later layers."""

import warnings

import numpy as np
import pytest
import torch

from dlpde.ntk import (
    ABRelu,
    Abs,
    Conv,
    ConvLocal,
    ConvTranspose,
    Cos,
    Dense,
    Dropout,
    Elementwise,
    ElementwiseNumerical,
    Erf,
    Exp,
    FanInConcat,
    FanInProd,
    FanOut,
    Flatten,
    Gaussian,
    Gelu,
    GlobalSelfAttention,
    GlobalSumPool,
    Hermite,
    Identity,
    LayerNorm,
    Parallel,
    Rbf,
    Relu,
    Serial,
    Sigmoid_like,
    Sign,
    Sin,
    SumPool,
    analytic_kernels,
    build_network,
    monte_carlo_kernel,
    to_stax,
)
from dlpde.shared import make_generator
from dlpde.shared.testing import assert_monte_carlo_close

pytestmark = pytest.mark.nt


@pytest.fixture(scope="module")
def nt():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)  # before neural_tangents creates any constant
    return pytest.importorskip("neural_tangents")


def _channels_last(x):
    return x.permute(0, *range(2, x.dim()), 1).numpy() if x.dim() > 2 else x.numpy()


def _fc(layer, second=None):
    return Serial(Dense(8, 1.3, 0.2), layer, Dense(8, 1.1, 0.1), second or Relu(), Dense(1, 1.0, 0.05))


UNIT = Serial(Dense(8, 1.0, 0.0), LayerNorm())  # unit-variance pre-activations (for Hermite)
RELU_BRANCH, ERF_BRANCH = Serial(Relu(), Dense(8, 1.2, 0.1)), Serial(Erf(), Dense(8, 0.8, 0.3))
SPECS = {
    "gelu": (_fc(Gelu(), Gelu()), (5,)),
    "sin": (_fc(Sin(1.3, 0.7, 0.4), Sin()), (5,)),
    "cos": (_fc(Cos(0.8, 1.2, -0.3)), (5,)),
    "rbf": (_fc(Rbf(0.7), Rbf(0.3)), (5,)),
    "abs": (_fc(Abs(), Abs()), (5,)),
    "abrelu": (_fc(ABRelu(-0.4, 1.7), ABRelu(0.3, -1.1)), (5,)),
    "sign": (_fc(Sign(), Sign()), (5,)),
    "exp": (Serial(Dense(8, 0.6, 0.1), Exp(0.7, 0.8), Dense(8, 0.5, 0.1), Exp(), Dense(1)), (5,)),
    "gaussian": (_fc(Gaussian(1.2, -0.7), Gaussian()), (5,)),
    "gaussian_positive_b": (Serial(Dense(8, 0.5, 0.1), Gaussian(1.0, 0.3), Dense(1)), (5,)),
    "sigmoid_like": (_fc(Sigmoid_like(), Erf(0.5, 2.0, 0.1)), (5,)),
    "hermite": (Serial(UNIT, Hermite(3), Dense(8, 1.0, 0.0), LayerNorm(), Hermite(2), Dense(1)), (5,)),
    "hermite_0_1": (Serial(UNIT, Hermite(1), Dense(8, 1.0, 0.0), LayerNorm(), Hermite(0), Dense(1)), (5,)),
    "elementwise_numerical": (_fc(ElementwiseNumerical("gelu", 30), Elementwise("sin", 30)), (5,)),
    "layernorm_fc": (Serial(Dense(8, 1.3, 0.3), LayerNorm(1e-3), Relu(), Dense(8), LayerNorm(), Erf(),
                            Dense(1)), (5,)),
    "dropout": (Serial(Dense(8, 1.3, 0.3), Relu(), Dropout(0.7), Dense(1)), (5,)),
    "sumpool_conv2d": (Serial(Conv(8, (3, 3), (1, 1), "SAME", 1.2, 0.1), Relu(),
                              SumPool((2, 2), None, "SAME"), Conv(8, (2, 2), (1, 1), "VALID"), Relu(),
                              SumPool((2, 1), (1, 1), "VALID"), Flatten(), Dense(1)), (2, 5, 4)),
    "sumpool_circular_global_sum": (Serial(Conv(8, (3,), (1,), "CIRCULAR", 1.2, 0.1),
                                           SumPool((2,), None, "CIRCULAR"), Gelu(), GlobalSumPool(),
                                           Dense(1)), (2, 7)),
    "conv_transpose_1d": (Serial(ConvTranspose(8, (3,), (1,), "VALID", 1.3, 0.2), Relu(),
                                 ConvTranspose(8, (4,), (3,), "SAME", 1.1, 0.1), Erf(), GlobalSumPool(),
                                 Dense(1)),
                          (2, 5)),
    "conv_transpose_1d_flatten": (Serial(ConvTranspose(8, (2,), (2,), "VALID", 1.3, 0.2), Gelu(),
                                         ConvTranspose(8, (3,), (2,), "SAME"), Relu(), Flatten(), Dense(1)),
                                  (2, 4)),
    "conv_transpose_2d": (Serial(ConvTranspose(8, (3, 2), (2, 1), "SAME", 1.3, 0.2, "standard"), Relu(),
                                 ConvTranspose(8, (2, 2), (1, 2), "VALID"), Relu(),
                                 Conv(8, (2, 2), (1, 1), "SAME"), GlobalSumPool(), Dense(1)), (2, 3, 4)),
    "attention_1d": (Serial(Conv(8, (3,), (1,), "SAME", 1.3, 0.2), Relu(),
                            GlobalSelfAttention(8, 8, 8, 2, 1.1, 1.2, 0.9, 1.3, 0.1), Relu(), GlobalSumPool(),
                            Dense(1)), (2, 5)),
    "attention_2d_input": (Serial(GlobalSelfAttention(8, 4, 8, 3), Conv(8, (2, 2), (1, 1), "SAME", 1.3, 0.2),
                                  Erf(), GlobalSelfAttention(8, 4, 4, 2, W_out_std=0.7), GlobalSumPool(),
                                  Dense(1)), (2, 3, 2)),
    "fan_in_prod": (Serial(Dense(8, 1.3, 0.2), FanOut(3), Parallel(RELU_BRANCH, ERF_BRANCH, Identity()),
                           FanInProd(), Dense(1)), (5,)),
    "fan_in_concat": (Serial(Dense(8, 1.3, 0.2), FanOut(3),
                             Parallel(RELU_BRANCH, Serial(Erf(), Dense(16, 0.8, 0.3)), Identity()),
                             FanInConcat(), Dense(4), Relu(), Dense(1)), (5,)),
    "fan_in_concat_conv": (Serial(Conv(8, (3,), (1,), "SAME", 1.3, 0.2), FanOut(2),
                                  Parallel(Serial(Relu(), Conv(4, (2,), (1,), "SAME")), Identity()),
                                  FanInConcat(), Conv(8, (3,), (1,), "CIRCULAR"), Relu(), GlobalSumPool(),
                                  Dense(1)), (2, 5)),
    "conv_local_1d": (Serial(ConvLocal(8, (3,), (1,), "CIRCULAR", 1.3, 0.2), Relu(),
                             ConvLocal(8, (2,), (2,), "VALID", 1.1, 0.3, "standard"), Relu(), Flatten(),
                             Dense(1)),
                      (2, 6)),
    "conv_local_2d": (Serial(ConvLocal(8, (3, 2), (1, 1), "SAME", 1.2, 0.1), Erf(),
                             ConvLocal(8, (2, 2), (1, 1), "CIRCULAR", 1.2, 0.1), Relu(), GlobalSumPool(),
                             Dense(1)),
                      (2, 4, 3)),
    "layernorm_conv": (Serial(Conv(8, (3,), (1,), "SAME", 1.2, 0.3), LayerNorm(), Abs(), GlobalSumPool(),
                              Dense(1)), (3, 6)),
}


def _inputs(shape, seed=0):
    g = make_generator(seed)
    x1 = torch.randn(4, *shape, generator=g, dtype=torch.float64)
    x2 = torch.randn(3, *shape, generator=g, dtype=torch.float64)
    return x1, x2


@pytest.mark.parametrize("name", list(SPECS))
def test_new_layers_match_neural_tangents(nt, name):
    spec, shape = SPECS[name]
    x1, x2 = _inputs(shape)
    nngp, ntk = analytic_kernels(spec, x1, x2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Hermite's and ElementwiseNumerical's notices
        reference = to_stax(spec)[2](_channels_last(x1), _channels_last(x2), ("nngp", "ntk"))
    np.testing.assert_allclose(nngp.numpy(), np.asarray(reference.nngp), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ntk.numpy(), np.asarray(reference.ntk), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["gelu", "layernorm_fc", "sumpool_conv2d", "conv_transpose_2d",
                                  "attention_2d_input", "fan_in_prod", "fan_in_concat_conv"])
def test_new_layers_self_kernel_matches_neural_tangents(nt, name):
    """x2 = None: the symmetric path (upper triangle, blocks on the diagonal) agrees too."""
    spec, shape = SPECS[name]
    x1, _ = _inputs(shape, seed=1)
    nngp, ntk = analytic_kernels(spec, x1, batch_size=3)
    reference = to_stax(spec)[2](_channels_last(x1), None, ("nngp", "ntk"))
    np.testing.assert_allclose(nngp.numpy(), np.asarray(reference.nngp), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ntk.numpy(), np.asarray(reference.ntk), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["gelu", "sin", "cos", "rbf", "abs", "abrelu", "sign", "exp", "gaussian",
                                  "hermite", "layernorm_fc", "sumpool_conv2d", "layernorm_conv",
                                  "conv_transpose_1d", "conv_transpose_2d", "attention_1d",
                                  "attention_2d_input"])
def test_new_finite_layers_match_neural_tangents_apply(nt, name):
    """The finite network built from the description computes what neural-tangents' apply_fn does
    with the same weights (Dense W (in, out), Conv HWIO)."""
    import jax.numpy as jnp

    spec, shape = SPECS[name]
    network = build_network(spec, shape, 2, torch.float64)
    x1, _ = _inputs(shape, seed=2)

    def parameters(layers, modules):
        params = []
        for layer, module in zip(layers, modules):
            if isinstance(layer, Serial):
                params.append(parameters(layer.layers, module.layers))
            elif isinstance(layer, (Dense, Conv, ConvTranspose)):
                w = module.weight.detach().numpy()
                w = w.T if isinstance(layer, Dense) else np.moveaxis(w, (0, 1), (-1, -2))
                b = module.bias.detach().numpy().reshape((1,) * (w.ndim - 1) + (-1,))
                params.append((jnp.asarray(w), jnp.asarray(b)))
            elif isinstance(layer, GlobalSelfAttention):
                b = None if module.bias is None else jnp.asarray(
                    module.bias.detach().numpy().reshape((1,) * len(shape) + (-1,)))
                params.append((None, *(jnp.asarray(p.detach().numpy()) for p in (module.keys, module.values,
                                                                                   module.out)), b, None))
            else:
                params.append(())
        return params

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        apply_fn = to_stax(spec)[1]
        ours = network(x1).detach().numpy()
        theirs = np.asarray(apply_fn(parameters(spec.layers, network.layers), _channels_last(x1)))
    np.testing.assert_allclose(ours, theirs, rtol=1e-11, atol=1e-12)


def test_conv_local_after_a_shared_conv_wide_networks_side_with_dlpde(nt):
    """The one case found where neural-tangents 0.6.5 and dlpde differ: a shared ``Conv``, an
    activation, a ``ConvLocal`` with a non-square 2-D filter, an activation and a global sum
    (NNGP diagonal 2.85 here against neural-tangents' 3.19). Wide finite networks built from the
    same description decide: dlpde's kernel is within the Monte Carlo bound, neural-tangents' is not."""
    def spec(width, outputs):
        return Serial(Conv(width, (3, 2), (1, 1), "SAME", 1.2, 0.1), Relu(),
                      ConvLocal(width, (3, 2), (1, 1), "SAME", 1.2, 0.1), Relu(), GlobalSumPool(),
                      Dense(outputs, 0.5, 0.1))

    x = torch.randn(4, 2, 4, 3, generator=make_generator(0), dtype=torch.float64)
    ours = analytic_kernels(spec(8, 1), x)[0]
    theirs = torch.from_numpy(np.asarray(to_stax(spec(8, 1))[2](_channels_last(x), None, "nngp")))
    assert (ours - theirs).abs().max() > 0.1  # the disagreement is real
    # width 128: the finite-width bias (two nonlinear layers, O(1/width)) is well inside the bound
    mc = monte_carlo_kernel(spec(128, 16), x, None, n_samples=160, seed=0, get=("nngp",))
    mean, error = mc["nngp"].diagonal(), mc["nngp_standard_error"].diagonal()
    for i in range(4):
        assert_monte_carlo_close(float(mean[i]), float(error[i]), float(ours[i, i]), 4.0)
    assert ((mean - theirs.diagonal()).abs() / error).max() > 4.0
