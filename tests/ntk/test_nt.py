"""Cross-checks against neural-tangents (run in the side environment: `pytest -m nt -p no:xdist
tests/ntk` with the `nt` extra installed; skipped elsewhere)."""

import collections

import numpy as np
import pytest
import torch

from dlpde.ntk import (
    AvgPool,
    Conv,
    Dense,
    Elementwise,
    Erf,
    FanInSum,
    FanOut,
    Flatten,
    GlobalAvgPool,
    Identity,
    LeakyRelu,
    Parallel,
    Relu,
    Serial,
    analytic_kernels,
    build_network,
    empirical_ntk,
    gradient_descent_mse,
    gradient_descent_mse_ensemble,
    kernel_regression,
    monte_carlo_kernel,
    to_stax,
)
from dlpde.shared import make_generator

pytestmark = pytest.mark.nt


@pytest.fixture(scope="module")
def nt():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)  # before neural_tangents creates any constant
    return pytest.importorskip("neural_tangents")


def _channels_last(x):
    return x.permute(0, *range(2, x.dim()), 1).numpy() if x.dim() > 2 else x.numpy()


BRANCH = Serial(Relu(), Conv(8, (3, 3), (1, 1), "SAME", 1.2, 0.1))
SPECS = {
    "fc_relu": (Serial(Dense(8, 1.5, 0.1), Relu(), Dense(8, 1.2, 0.3), Relu(), Dense(1, 1.0, 0.05)), (7,)),
    "fc_erf_leaky": (Serial(Dense(8, 1.5, 0.1), Erf(), Dense(8, 1.2, 0.3), LeakyRelu(0.2), Dense(1)), (7,)),
    "fc_standard": (Serial(Dense(8, 1.5, 0.1, "standard"), Relu(), Dense(16, 1.2, None, "standard"),
                           Erf(0.5, 2.0, 0.1), Dense(1, 1.0, 0.2, "standard")), (7,)),
    "fc_tanh_quadrature": (Serial(Dense(8, 1.5, 0.1), Elementwise("tanh", 25), Dense(1)), (7,)),
    "conv1d_same_gap": (Serial(Conv(8, (3,), (1,), "SAME", 1.3, 0.2), Relu(), Conv(8, (2,), (1,), "SAME"),
                               Relu(), GlobalAvgPool(), Dense(1)), (2, 6)),
    "conv1d_circular_pool_flatten": (Serial(Conv(8, (3,), (2,), "CIRCULAR", 1.3, 0.2), Relu(),
                                            AvgPool((2,), None, "CIRCULAR"), Flatten(), Dense(1)), (2, 8)),
    "conv2d_valid_standard": (Serial(Conv(8, (3, 2), (1, 1), "VALID", 1.3, 0.2, "standard"), Relu(),
                                     Conv(8, (2, 2), (1, 1), "VALID"), Erf(), AvgPool((2, 2), None, "SAME"),
                                     GlobalAvgPool(), Dense(1)), (2, 6, 5)),
    "conv2d_residual": (Serial(Conv(8, (3, 3), (1, 1), "CIRCULAR", 1.3, 0.2), FanOut(2),
                               Parallel(BRANCH, Identity()), FanInSum(), Relu(), Flatten(), Dense(1)),
                        (2, 5, 4)),
}


@pytest.mark.parametrize("name", list(SPECS))
def test_analytic_kernels_match_neural_tangents(nt, name):
    spec, shape = SPECS[name]
    g = make_generator(0)
    x1 = torch.randn(4, *shape, generator=g, dtype=torch.float64)
    x2 = torch.randn(3, *shape, generator=g, dtype=torch.float64)
    nngp, ntk = analytic_kernels(spec, x1, x2)
    reference = to_stax(spec)[2](_channels_last(x1), _channels_last(x2), ("nngp", "ntk"))
    np.testing.assert_allclose(nngp.numpy(), np.asarray(reference.nngp), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ntk.numpy(), np.asarray(reference.ntk), rtol=1e-10, atol=1e-12)


def _stax_parameters(spec, network):
    """Our finite network's weights in neural-tangents' layout (Dense W (in, out); Conv HWIO)."""
    import jax.numpy as jnp

    params = []
    for layer, module in zip(spec.layers, network.layers):
        if isinstance(layer, (Dense, Conv)):
            w = module.weight.detach().numpy()
            w = w.T if isinstance(layer, Dense) else np.moveaxis(w, (0, 1), (-1, -2))
            b = None if module.bias is None else module.bias.detach().numpy()
            if b is not None:
                b = b.reshape((1,) * (w.ndim - 1) + (-1,)) if isinstance(layer, Conv) else b.reshape(1, -1)
            params.append((jnp.asarray(w), None if b is None else jnp.asarray(b)))
        else:
            params.append(())
    return params


@pytest.mark.parametrize("name, outputs", [("fc", 3), ("cnn", 2)])
@pytest.mark.parametrize("implementation", [1, 2])
def test_empirical_ntk_matches_neural_tangents(nt, name, outputs, implementation):
    if name == "fc":
        spec = Serial(Dense(16, 1.4, 0.1), Relu(), Dense(16, 1.3, 0.2), Erf(), Dense(outputs, 1.0, 0.1))
        shape = (5,)
    else:
        spec = Serial(Conv(6, (3,), (1,), "SAME", 1.3, 0.1), Relu(), Conv(6, (3,), (1,), "CIRCULAR"), Relu(),
                      GlobalAvgPool(), Dense(outputs))
        shape = (2, 7)
    network = build_network(spec, shape, 3, torch.float64)
    g = make_generator(1)
    x1 = torch.randn(4, *shape, generator=g, dtype=torch.float64)
    x2 = torch.randn(3, *shape, generator=g, dtype=torch.float64)
    apply_fn = to_stax(spec)[1]
    params = _stax_parameters(spec, network)
    np.testing.assert_allclose(network(x1).detach().numpy(), np.asarray(apply_fn(params, _channels_last(x1))),
                               rtol=1e-12, atol=1e-12)
    traced = nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), implementation=implementation)
    full = nt.empirical_ntk_fn(apply_fn, trace_axes=(), implementation=implementation)
    ref_traced = np.asarray(traced(_channels_last(x1), _channels_last(x2), params))
    ref_full = np.asarray(full(_channels_last(x1), _channels_last(x2), params))  # (N1, N2, K, K)
    ref_full = ref_full.transpose(0, 2, 1, 3).reshape(4 * outputs, 3 * outputs)
    for method in ("jacobian", "ntk_vp"):
        ours = empirical_ntk(network, x1, x2, method=method).numpy()
        np.testing.assert_allclose(ours, ref_traced, rtol=1e-10, atol=1e-12)
        ours = empirical_ntk(network, x1, x2, method=method, trace_outputs=False).numpy()
        np.testing.assert_allclose(ours, ref_full, rtol=1e-10, atol=1e-12)


def test_predictions_match_neural_tangents(nt):
    spec = SPECS["fc_relu"][0]
    g = make_generator(2)
    x = torch.randn(9, 7, generator=g, dtype=torch.float64)
    y = torch.randn(6, 2, generator=g, dtype=torch.float64)
    nngp, ntk = analytic_kernels(spec, x)
    f0 = torch.randn(6, 2, generator=g, dtype=torch.float64)
    g0 = torch.randn(3, 2, generator=g, dtype=torch.float64)
    times = np.array([0.5, 3.0])
    ours = gradient_descent_mse(ntk[:6, :6], y, times, 0.8, f_train_0=f0, ntk_test_train=ntk[6:, :6],
                                f_test_0=g0)
    predict = nt.predict.gradient_descent_mse(ntk[:6, :6].numpy(), y.numpy(), learning_rate=0.8)
    train_ref, test_ref = predict(times, f0.numpy(), g0.numpy(), ntk[6:, :6].numpy())
    np.testing.assert_allclose(ours["train"].numpy(), np.asarray(train_ref), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours["test"].numpy(), np.asarray(test_ref), rtol=1e-10, atol=1e-12)
    kernel_fn = to_stax(spec)[2]
    ensemble = nt.predict.gradient_descent_mse_ensemble(kernel_fn, x[:6].numpy(), y[:, :1].numpy(),
                                                        learning_rate=0.8)
    ref = ensemble(times, x[6:].numpy(), "ntk", compute_cov=True)
    ours = gradient_descent_mse_ensemble(nngp[:6, :6], nngp[6:, :6], nngp[6:, 6:], ntk[:6, :6], ntk[6:, :6],
                                         y[:, :1], times, 0.8)
    # neural-tangents solves this through its own decompositions: agreement to rounding times the
    # condition number of Theta(X, X) (about 1e3 here)
    np.testing.assert_allclose(ours["mean"].numpy(), np.asarray(ref.mean), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours["covariance"].numpy(), np.asarray(ref.covariance), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("get", ["ntk", "nngp"])
@pytest.mark.parametrize("diag_reg", [0.0, 1e-2])
def test_kernel_regression_matches_neural_tangents_predict(nt, get, diag_reg):
    spec = SPECS["fc_relu"][0]
    g = make_generator(6)
    x = torch.randn(10, 7, generator=g, dtype=torch.float64)
    y = torch.randn(7, 2, generator=g, dtype=torch.float64)
    kernel_fn = to_stax(spec)[2]
    times = np.array([0.5, 3.0, 40.0])
    ensemble = nt.predict.gradient_descent_mse_ensemble(kernel_fn, x[:7].numpy(), y.numpy(),
                                                        learning_rate=0.8, diag_reg=diag_reg)
    for t in (times, None):
        ours = kernel_regression(spec, x[:7], y, x[7:], get=get, t=t, diag_reg=diag_reg, learning_rate=0.8)
        ref = ensemble(t, x[7:].numpy(), get, compute_cov=True)
        # agreement to rounding times the condition number of the training kernel (about 1e3)
        np.testing.assert_allclose(ours["mean"].numpy(), np.asarray(ref.mean), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(ours["covariance"].numpy(), np.asarray(ref.covariance), rtol=1e-8,
                                   atol=1e-10)
    # t = None against gp_inference on the analytic kernels (the NNGP posterior / NTK ensemble)
    nngp, ntk = analytic_kernels(spec, x)
    pair = collections.namedtuple("Kernel", "nngp ntk")
    kernels = nt.predict.gp_inference(pair(nngp[:7, :7].numpy(), ntk[:7, :7].numpy()), y.numpy(),
                                      diag_reg=diag_reg)
    ref = kernels(get, pair(nngp[7:, :7].numpy(), ntk[7:, :7].numpy()), nngp[7:, 7:].numpy())
    ours = kernel_regression(spec, x[:7], y, x[7:], get=get, diag_reg=diag_reg)
    np.testing.assert_allclose(ours["mean"].numpy(), np.asarray(ref.mean), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours["covariance"].numpy(), np.asarray(ref.covariance), rtol=1e-8, atol=1e-10)


def test_monte_carlo_kernel_matches_neural_tangents_within_monte_carlo_error(nt):
    import jax

    spec = Serial(Dense(256, 1.4, 0.1), Relu(), Dense(256, 1.4, 0.1), Relu(), Dense(1, 1.0, 0.1))
    x = torch.randn(5, 4, generator=make_generator(8), dtype=torch.float64)
    n = 200
    ours = monte_carlo_kernel(spec, x, n_samples=n, seed=1)
    init_fn, apply_fn, _ = to_stax(spec)
    theirs = nt.monte_carlo_kernel_fn(init_fn, apply_fn, jax.random.PRNGKey(3), n, trace_axes=(-1,))(
        x.numpy(), None, ("nngp", "ntk"))
    upper = np.triu_indices(5)
    for name in ("nngp", "ntk"):
        # two independent estimates of the same finite-width mean: their difference has standard
        # deviation sqrt(2) times one standard error (max |z| over 15 entries < 5)
        z = (ours[name].numpy() - np.asarray(getattr(theirs, name))) / (
            np.sqrt(2) * ours[f"{name}_standard_error"].numpy())
        assert np.abs(z[upper]).max() < 5, (name, z)
