"""Analytic kernels: closed forms (arc-cosine, Williams), quadrature, the large-width average of
empirical kernels (within Monte Carlo error), batching, dtypes and bad input."""

import math

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
    empirical_nngp,
    empirical_ntk,
)
from dlpde.shared import make_generator
from dlpde.shared.testing import assert_monte_carlo_close


def _x(n, d, seed=0):
    return torch.randn(n, d, generator=make_generator(seed), dtype=torch.float64)


def _one_hidden_layer_reference(x1, x2, w_std, b_std, expectations):
    """NNGP/NTK of Dense -> phi -> Dense written out independently in NumPy."""
    d = x1.shape[1]
    s11 = w_std**2 * np.sum(x1 * x1, 1) / d + b_std**2
    s22 = w_std**2 * np.sum(x2 * x2, 1) / d + b_std**2
    s12 = w_std**2 * x1 @ x2.T / d + b_std**2
    value, derivative = expectations(s12, s11[:, None], s22[None, :])
    nngp = w_std**2 * value + b_std**2
    ntk = nngp + w_std**2 * derivative * s12
    return nngp, ntk


def _arc_cosine(c, q1, q2):  # Cho & Saul (2009), degrees 1 and 0
    t = np.arccos(np.clip(c / np.sqrt(q1 * q2), -1, 1))
    return np.sqrt(q1 * q2) * (np.sin(t) + (np.pi - t) * np.cos(t)) / (2 * np.pi), (np.pi - t) / (2 * np.pi)


def _williams(c, q1, q2):  # Williams (1997) for erf
    value = 2 / np.pi * np.arcsin(2 * c / np.sqrt((1 + 2 * q1) * (1 + 2 * q2)))
    derivative = 4 / np.pi / np.sqrt((1 + 2 * q1) * (1 + 2 * q2) - 4 * c**2)
    return value, derivative


@pytest.mark.parametrize("layer, reference", [(Relu(), _arc_cosine), (Erf(), _williams)])
def test_closed_forms(layer, reference):
    x1, x2 = _x(6, 4, 1), _x(5, 4, 2)
    nngp, ntk = analytic_kernels(Serial(Dense(8, 1.3, 0.2), layer, Dense(1, 1.3, 0.2)), x1, x2)
    ref_nngp, ref_ntk = _one_hidden_layer_reference(x1.numpy(), x2.numpy(), 1.3, 0.2, reference)
    np.testing.assert_allclose(nngp.numpy(), ref_nngp, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(ntk.numpy(), ref_ntk, rtol=1e-13, atol=1e-14)


def test_quadrature_matches_closed_forms():
    x1, x2 = _x(5, 3, 3), _x(4, 3, 4)
    closed = analytic_kernels(Serial(Dense(8, 1.0, 0.1), Erf(), Dense(8), Erf(), Dense(1)), x1, x2)
    # Gauss-Hermite converges fast for erf(sqrt(q) z) with q ~ 1 (slower for larger variances)
    numeric = analytic_kernels(Serial(Dense(8, 1.0, 0.1), Elementwise(torch.erf, 100), Dense(8),
                                      Elementwise(torch.erf, 100), Dense(1)), x1, x2)
    for a, b in zip(closed, numeric):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)  # quadrature error
    # leaky ReLU: slope 0 is ReLU; slope 1 is the identity (a linear network)
    relu = analytic_kernels(Serial(Dense(8), Relu(), Dense(1)), x1, x2)
    leaky0 = analytic_kernels(Serial(Dense(8), LeakyRelu(0.0), Dense(1)), x1, x2)
    linear = analytic_kernels(Serial(Dense(8), LeakyRelu(1.0), Dense(1)), x1, x2)
    identity = analytic_kernels(Serial(Dense(8), Identity(), Dense(1)), x1, x2)
    for a, b in [*zip(relu, leaky0), *zip(linear, identity)]:
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-14)


def _monte_carlo(spec, x, seeds, width_note=""):
    nngps, ntks = [], []
    for seed in range(seeds):
        net = build_network(spec, x.shape[1:], seed, torch.float64)
        ntks.append(empirical_ntk(net, x))
        nngps.append(empirical_nngp(net, x))
    return torch.stack(nngps), torch.stack(ntks)


def _assert_mean_matches(samples, exact, n_sigma=5.0):
    mean, error = samples.mean(0), samples.std(0) / math.sqrt(samples.shape[0])
    worst = 0.0
    for m, e, t in zip(mean.reshape(-1), error.reshape(-1), exact.reshape(-1)):
        worst = max(worst, assert_monte_carlo_close(float(m), float(e), float(t), n_sigma))
    return worst


FC = Serial(Dense(512, 1.4, 0.2), Relu(), Dense(512, 1.4, 0.2), Erf(), Dense(1, 1.0, 0.1))
CNN = Serial(Conv(128, (3,), 1, "CIRCULAR", 1.4, 0.1), Relu(), Conv(128, (3,), 1, "SAME", 1.4), Relu(),
             GlobalAvgPool(), Dense(1))


@pytest.mark.parametrize("spec, shape", [(FC, (3,)), (CNN, (2, 6))], ids=["fc", "cnn"])
def test_empirical_average_converges_to_analytic(spec, shape):
    x = torch.randn(4, *shape, generator=make_generator(5), dtype=torch.float64)
    nngps, ntks = _monte_carlo(spec, x, seeds=24)
    nngp, ntk = analytic_kernels(spec, x)
    _assert_mean_matches(nngps, nngp)
    _assert_mean_matches(ntks, ntk)


def test_monte_carlo_check_detects_a_wrong_kernel():
    x = _x(4, 3, 6)
    _, ntks = _monte_carlo(FC, x, seeds=24)
    # a mis-specified recursion: first-layer weight scale 1.8 instead of the network's 1.4
    wrong = Serial(Dense(512, 1.8, 0.2), Relu(), Dense(512, 1.4, 0.2), Erf(), Dense(1, 1.0, 0.1))
    with pytest.raises(AssertionError):
        _assert_mean_matches(ntks, analytic_kernels(wrong, x)[1])


def test_residual_and_pooling_specs_run_and_batch():
    branch = Serial(Relu(), Conv(16, (3, 3), 1, "SAME"))
    spec = Serial(Conv(16, (3, 3), 1, "SAME"), FanOut(2), Parallel(branch, Identity()), FanInSum(), Relu(),
                  AvgPool((2, 2)), Flatten(), Dense(1))
    x = torch.randn(5, 2, 4, 4, generator=make_generator(7), dtype=torch.float64)
    full = analytic_kernels(spec, x)
    batched = analytic_kernels(spec, x, batch_size=2)
    for a, b in zip(full, batched):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-14)
        torch.testing.assert_close(a, a.T)
    single = analytic_kernels(spec, x.float())
    for a, b in zip(full, single):
        torch.testing.assert_close(b.double(), a, rtol=1e-4, atol=1e-5)
    net = build_network(spec, x.shape[1:], 0, torch.float64)
    assert net(x).shape == (5, 1)


def test_bad_input():
    with pytest.raises(ValueError, match="out_dim"):
        Dense(0)
    with pytest.raises(ValueError, match="padding"):
        Conv(4, 3, padding="REFLECT")
    with pytest.raises(ValueError, match="parameterization"):
        Dense(4, parameterization="mup")
    with pytest.raises(ValueError, match="x2 must match"):
        analytic_kernels(Serial(Dense(1)), _x(3, 2), _x(3, 4))
    with pytest.raises(ValueError, match="non-finite"):
        analytic_kernels(Serial(Dense(1)), torch.full((2, 2), float("nan")))
    with pytest.raises(TypeError, match="spec"):
        analytic_kernels("relu", _x(2, 2))
    with pytest.raises(ValueError, match="FanInSum"):
        analytic_kernels(Serial(Dense(2), FanOut(2)), _x(2, 2))
