"""The stax-coverage layers without neural-tangents: each analytic kernel against the average of
empirical kernels of wide finite networks built from the same description (n-sigma bounds), and
the closed forms of smooth activations against Gauss-Hermite quadrature of the same function.

With one hidden nonlinear layer, ``Dense(n) -> phi -> Dense(1)`` (or ``Conv(n) -> phi ->
pooling``), the first-layer pre-activations are exactly Gaussian and the hidden units are
i.i.d., so the mean over initialisations of the empirical NNGP and NTK equals the analytic one
at any width: the Monte Carlo estimate is unbiased and the n-sigma bound is clean. LayerNorm
couples the units (its bias is O(1/width), well inside the bound at width 1024)."""

import math

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
    empirical_nngp,
    empirical_ntk,
)
from dlpde.shared import make_generator
from dlpde.shared.testing import assert_monte_carlo_close

WIDTH, SEEDS = 1024, 32
OUTPUTS = 16  # the empirical NNGP (mean over outputs) self-averages over them


def _x(n, *shape, seed=0, unit=False):
    x = torch.randn(n, *shape, generator=make_generator(seed), dtype=torch.float64)
    if unit:  # |x|^2 / d = 1: a Dense(W_std=1, b_std=0) layer gives unit-variance pre-activations
        x = x / x.pow(2).mean(1, keepdim=True).sqrt()
    return x


def _monte_carlo(spec, x, seeds=SEEDS):
    nngps, ntks = [], []
    for seed in range(seeds):
        net = build_network(spec, x.shape[1:], seed, torch.float64)
        nngps.append(empirical_nngp(net, x))
        ntks.append(empirical_ntk(net, x))
    return torch.stack(nngps), torch.stack(ntks)


def _assert_mean_matches(samples, exact, n_sigma=5.0):
    mean, error = samples.mean(0), samples.std(0) / math.sqrt(samples.shape[0])
    rows, cols = torch.triu_indices(exact.shape[0], exact.shape[1])
    for i, j in zip(rows.tolist(), cols.tolist()):
        if error[i, j] == 0:  # the same value for every network (e.g. sign^2 = 1 on the NTK diagonal)
            torch.testing.assert_close(mean[i, j], exact[i, j], rtol=1e-12, atol=1e-12)
        else:
            assert_monte_carlo_close(float(mean[i, j]), float(error[i, j]), float(exact[i, j]), n_sigma)


def _hidden(layer, w_std=1.3, b_std=0.2):
    return Serial(Dense(WIDTH, w_std, b_std), layer, Dense(OUTPUTS, 1.1, 0.1))


CASES = {
    "gelu": (_hidden(Gelu()), dict()),
    "sin": (_hidden(Sin(1.3, 0.7, 0.4)), dict()),
    "cos": (_hidden(Cos(0.8, 1.2, -0.3)), dict()),
    "rbf": (_hidden(Rbf(0.7)), dict()),
    "abs": (_hidden(Abs()), dict()),
    "abrelu": (_hidden(ABRelu(-0.4, 1.7)), dict()),
    "sign": (_hidden(Sign()), dict()),
    "exp": (_hidden(Exp(0.7, 0.5), 0.8, 0.1), dict()),
    "gaussian": (_hidden(Gaussian(1.2, -0.7)), dict()),
    "sigmoid_like": (_hidden(Sigmoid_like()), dict()),
    "hermite3": (_hidden(Hermite(3), 1.0, 0.0), dict(unit=True)),
    "layernorm": (Serial(Dense(WIDTH, 1.3, 0.3), LayerNorm(), Relu(), Dense(OUTPUTS, 1.1, 0.1)), dict()),
    "fan_in_prod": (Serial(FanOut(2), Parallel(Dense(WIDTH, 1.3, 0.2), Dense(WIDTH, 0.9, 0.1)), FanInProd(),
                           Dense(OUTPUTS, 1.1, 0.1)), dict()),
    "fan_in_concat": (Serial(FanOut(2), Parallel(Serial(Dense(WIDTH, 1.3, 0.2), Relu()),
                                                 Serial(Dense(WIDTH // 2, 0.9, 0.1), Erf())), FanInConcat(),
                             Dense(OUTPUTS, 1.1, 0.1)), dict()),
    "dropout": (Serial(Dense(WIDTH, 1.3, 0.3), Relu(), Dropout(0.5), Dense(OUTPUTS, 1.1, 0.1)), dict()),
}


@pytest.mark.parametrize("name", list(CASES))
def test_wide_network_average_matches_analytic_kernels(name):
    spec, options = CASES[name]
    x = _x(4, 3, seed=1, **options)
    nngps, ntks = _monte_carlo(spec, x)
    nngp, ntk = analytic_kernels(spec, x)
    _assert_mean_matches(nngps, nngp)
    _assert_mean_matches(ntks, ntk)


@pytest.mark.parametrize("spec", [
    Serial(Conv(256, (3,), 1, "CIRCULAR", 1.3, 0.2), Gelu(), SumPool((2,), (1,), "SAME"), Flatten(),
           Dense(OUTPUTS, 1.1, 0.1)),
    Serial(Conv(256, (3,), 1, "SAME", 1.3, 0.2), Abs(), SumPool((2,), None, "VALID"), GlobalSumPool(),
           Dense(OUTPUTS, 0.4, 0.1)),
    Serial(ConvTranspose(256, (3,), (2,), "SAME", 1.3, 0.2), Relu(), Flatten(), Dense(OUTPUTS, 1.1, 0.1)),
    Serial(ConvTranspose(128, (2, 3), (1, 2), "VALID", 1.3, 0.2), Erf(), GlobalSumPool(), Dense(OUTPUTS)),
    Serial(ConvLocal(256, (3,), (1,), "SAME", 1.3, 0.2), Relu(), Flatten(), Dense(OUTPUTS, 1.1, 0.1)),
    Serial(ConvLocal(256, (3,), (1,), "CIRCULAR", 1.3, 0.2), Relu(), GlobalSumPool(),
           Dense(OUTPUTS, 0.5, 0.1)),
], ids=["sumpool_same_flatten", "sumpool_valid_global_sum", "conv_transpose_1d", "conv_transpose_2d",
        "conv_local", "conv_local_global_sum"])
def test_wide_convolutional_average_matches_analytic_kernels(spec):
    two_dimensional = isinstance(spec.layers[0], ConvTranspose) and spec.layers[0].filter_shape == (2, 3)
    x = _x(3, 2, 3, 3, seed=2) if two_dimensional else _x(3, 2, 6, seed=2)
    nngps, ntks = _monte_carlo(spec, x, seeds=24)
    nngp, ntk = analytic_kernels(spec, x)
    _assert_mean_matches(nngps, nngp)
    _assert_mean_matches(ntks, ntk)


def test_conv_local_then_pooling_keeps_the_cross_position_mean_terms():
    """After ``ConvLocal`` the pre-activations at different positions are independent, but a ReLU's
    outputs there still correlate through their means, ``E[relu(u_t)] E[relu(u_s)] > 0``, and a global
    sum pools those cross terms. A kernel that keeps only the spatial diagonal after ``ConvLocal`` (a
    tempting shortcut, since the pre-activations' off-diagonal covariances are zero) is rejected by
    the wide networks; the full kernel is not."""
    length = 6
    pooled = Serial(ConvLocal(256, (3,), (1,), "CIRCULAR", 1.3, 0.2), Relu(), GlobalSumPool(),
                    Dense(OUTPUTS, 0.5, 0.1))
    flat = Serial(ConvLocal(256, (3,), (1,), "CIRCULAR", 1.3, 0.2), Relu(), Flatten(),
                  Dense(OUTPUTS, 0.5, 0.1))
    x = _x(3, 2, length, seed=2)
    nngps, _ = _monte_carlo(pooled, x, seeds=24)
    full = analytic_kernels(pooled, x)[0]
    diagonal_only = length * (analytic_kernels(flat, x)[0] - 0.1**2) + 0.1**2  # sum_t K[t, t] read out
    _assert_mean_matches(nngps, full)
    assert (full - diagonal_only).min() > 0.1 * full.abs().max()  # the cross terms are not small
    with pytest.raises(AssertionError):
        _assert_mean_matches(nngps, diagonal_only)


def test_wide_self_attention_average_matches_analytic_kernels():
    # attention on the input: the logits converge to W_key_std W_query_std K_0 as n_chan_key grows
    # (softmax bias O(1/n_chan_key), far inside the bound at 512); values and heads self-average
    spec = Serial(GlobalSelfAttention(64, 512, 16, 16, 1.2, 1.1, 0.9, 1.3, 0.1), GlobalSumPool(),
                  Dense(OUTPUTS, 0.5, 0.1))
    x = _x(3, 2, 4, seed=9)
    nngps, ntks = _monte_carlo(spec, x, seeds=24)
    nngp, ntk = analytic_kernels(spec, x)
    _assert_mean_matches(nngps, nngp)
    _assert_mean_matches(ntks, ntk)


def test_monte_carlo_check_detects_a_wrong_activation_kernel():
    x = _x(4, 3, seed=1)
    nngps, _ = _monte_carlo(_hidden(Sin(1.0, 1.0, 0.0)), x)
    with pytest.raises(AssertionError):  # cos's kernel for a sin network
        _assert_mean_matches(nngps, analytic_kernels(_hidden(Cos(1.0, 1.0, 0.0)), x)[0])


@pytest.mark.parametrize("layer, function", [
    (Gelu(), torch.nn.functional.gelu),
    (Sin(1.3, 0.7, 0.4), lambda z: 1.3 * torch.sin(0.7 * z + 0.4)),
    (Cos(0.8, 1.2, -0.3), lambda z: 0.8 * torch.cos(1.2 * z - 0.3)),
    (Rbf(0.7), lambda z: math.sqrt(2) * torch.sin(math.sqrt(1.4) * z + math.pi / 4)),
    (Exp(0.7, 0.5), lambda z: 0.7 * torch.exp(0.5 * z)),
    (Gaussian(1.2, -0.7), lambda z: 1.2 * torch.exp(-0.7 * z * z)),
    (Sigmoid_like(), lambda z: 0.5 * torch.erf(z / 2.4020563531719796) + 0.5),
], ids=["gelu", "sin", "cos", "rbf", "exp", "gaussian", "sigmoid_like"])
def test_closed_forms_match_quadrature(layer, function):
    x1, x2 = _x(4, 3, seed=3), _x(3, 3, seed=4)
    closed = analytic_kernels(Serial(Dense(8, 1.0, 0.1), layer, Dense(8, 1.2), Relu(), Dense(1)), x1, x2)
    numeric = analytic_kernels(Serial(Dense(8, 1.0, 0.1), Elementwise(function, 100), Dense(8, 1.2), Relu(),
                                      Dense(1)), x1, x2)
    for a, b in zip(closed, numeric):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)  # quadrature error at degree 100


def test_hermite_is_exact_under_quadrature_and_refuses_other_variances():
    # He_3 / sqrt(6) is a cubic: Gauss-Hermite of degree 8 integrates its products exactly
    x1, x2 = _x(4, 3, seed=5, unit=True), _x(3, 3, seed=6, unit=True)
    cubic = Elementwise(lambda z: (z**3 - 3 * z) / math.sqrt(6), 8)
    for a, b in zip(analytic_kernels(Serial(Dense(8, 1.0, 0.0), Hermite(3), Dense(1)), x1, x2),
                    analytic_kernels(Serial(Dense(8, 1.0, 0.0), cubic, Dense(1)), x1, x2)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)
    with pytest.raises(ValueError, match="unit-variance"):
        analytic_kernels(Serial(Dense(8, 1.3, 0.1), Hermite(2), Dense(1)), x1, x2)


def test_piecewise_linear_and_pooling_identities():
    x = _x(5, 3, seed=7)
    kernels = {name: analytic_kernels(Serial(Dense(8, 1.2, 0.1), layer, Dense(1)), x)
               for name, layer in [("relu", Relu()), ("abrelu01", ABRelu(0.0, 1.0)), ("abs", Abs()),
                                   ("abrelu-11", ABRelu(-1.0, 1.0)), ("linear", ABRelu(0.7, 0.7))]}
    linear = analytic_kernels(Serial(Dense(8, 1.2 * 0.7, 0.1 * 0.7), Dense(1)), x)
    for a, b in [*zip(kernels["relu"], kernels["abrelu01"]), *zip(kernels["abs"], kernels["abrelu-11"]),
                 (kernels["linear"][0], linear[0])]:
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-14)
    xs = _x(3, 2, 6, seed=8)
    window = Serial(Conv(4, (3,), 1, "SAME"), Relu(), SumPool((2,), None, "VALID"))
    total = Serial(Conv(4, (3,), 1, "SAME"), Relu(), GlobalSumPool())
    pooled, summed = analytic_kernels(window, xs), analytic_kernels(total, xs)
    for a, b in zip(pooled, summed):  # summing the three pooled windows is the global sum
        torch.testing.assert_close(a.sum(dim=(-2, -1)), b, rtol=1e-13, atol=1e-13)


def test_layer_arguments_are_checked():
    with pytest.raises(ValueError, match="padding"):
        ConvTranspose(4, 3, padding="CIRCULAR")
    with pytest.raises(ValueError, match="n_heads"):
        GlobalSelfAttention(4, 4, 4, 0)
    with pytest.raises(ValueError, match="gamma"):
        Rbf(0.0)
    with pytest.raises(TypeError, match="a"):
        Sin("one")
    with pytest.raises(ValueError, match="degree"):
        Hermite(-1)
    with pytest.raises(ValueError, match="rate"):
        Dropout(0.0)
    with pytest.raises(NotImplementedError, match="test"):
        Dropout(0.5, "train")
    with pytest.raises(ValueError, match="Gaussian pre-activations"):
        analytic_kernels(Serial(Dense(4), Relu(), Gelu(), Dense(1)), _x(2, 3))
    with pytest.raises(ValueError, match="Gaussian inputs"):
        analytic_kernels(Serial(Dense(4), Relu(), LayerNorm(), Dense(1)), _x(2, 3))
    with pytest.raises(ValueError, match="1/\\(4b\\)"):
        analytic_kernels(Serial(Dense(4, 2.0, 1.0), Gaussian(1.0, 0.5), Dense(1)), _x(2, 3))
