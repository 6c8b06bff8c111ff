"""monte_carlo_kernel: exact bookkeeping against a brute-force average, and the infinite-width
kernels within an n-sigma Monte Carlo bound where the finite-width mean is unbiased."""

import math

import pytest
import torch

from dlpde.ntk import (
    Conv,
    Dense,
    GlobalAvgPool,
    Relu,
    Serial,
    analytic_kernels,
    build_network,
    empirical_ntk,
    monte_carlo_kernel,
)
from dlpde.shared import make_generator, spawn_seed


def _x(n=5, d=3, seed=0):
    return torch.randn(n, d, generator=make_generator(seed), dtype=torch.float64)


def test_mean_and_standard_error_equal_a_brute_force_average():
    spec = Serial(Dense(16, 1.3, 0.2), Relu(), Dense(16, 1.3, 0.2), Relu(), Dense(2, 1.0, 0.1))
    x1, x2 = _x(4), _x(3, seed=1)
    mc = monte_carlo_kernel(spec, x1, x2, n_samples=5, seed=7, batch_size=2)
    g = make_generator(7)
    nngps, ntks = [], []
    for _ in range(5):  # the same seeds, spawned the same way
        net = build_network(spec, (3,), spawn_seed(g), torch.float64)
        with torch.no_grad():
            nngps.append(net(x1) @ net(x2).T / 2)
        ntks.append(empirical_ntk(net, x1, x2, method="jacobian"))
    for name, values in (("nngp", nngps), ("ntk", ntks)):
        stack = torch.stack(values)
        torch.testing.assert_close(mc[name], stack.mean(0), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(mc[f"{name}_standard_error"], stack.std(0) / math.sqrt(5), rtol=1e-9,
                                   atol=1e-12)
    assert mc["n_samples"] == 5
    # network s is the same whatever the number of networks evaluated together (vmap)
    for batch in (1, 2):
        again = monte_carlo_kernel(spec, x1, x2, n_samples=5, seed=7, sample_batch=batch, method="jacobian")
        for name in ("nngp", "ntk", "ntk_standard_error"):
            torch.testing.assert_close(again[name], mc[name], rtol=1e-12, atol=1e-13)


def test_one_hidden_layer_is_unbiased_within_five_sigma():
    # with one hidden layer the pre-activations are exactly Gaussian and the readout weights are
    # independent of them, so E[empirical kernel] equals the analytic kernel at every width: only
    # Monte Carlo error remains (max |z| over 15 entries; P(|z| > 5) ~ 6e-7 each)
    spec = Serial(Dense(64, 1.5, 0.3), Relu(), Dense(1, 1.2, 0.1))
    x = _x(5)
    mc = monte_carlo_kernel(spec, x, n_samples=400, seed=3)
    nngp, ntk = analytic_kernels(spec, x)
    upper = torch.triu_indices(5, 5)
    for name, exact in (("nngp", nngp), ("ntk", ntk)):
        z = ((mc[name] - exact) / mc[f"{name}_standard_error"])[upper[0], upper[1]]
        assert z.abs().max() < 5, (name, z)
        # the error bar is informative: well below the kernel itself
        assert bool((mc[f"{name}_standard_error"] < 0.2 * exact.abs().max()).all())
    torch.testing.assert_close(mc["nngp"], mc["nngp"].T)  # x2 = None: symmetric


def test_cnn_with_pooling_and_get_one_kernel():
    spec = Serial(Conv(8, (3,), (1,), "CIRCULAR", 1.4, 0.1), Relu(), GlobalAvgPool(), Dense(1))
    x = torch.randn(3, 2, 5, generator=make_generator(2), dtype=torch.float64)
    mc = monte_carlo_kernel(spec, x, n_samples=3, get="ntk")
    assert set(mc) == {"ntk", "ntk_standard_error", "n_samples"}
    assert mc["ntk"].shape == (3, 3) and bool(torch.isfinite(mc["ntk"]).all())


def test_bad_arguments_are_refused():
    spec = Serial(Dense(4), Relu(), Dense(1))
    x = _x(3)
    with pytest.raises(ValueError, match="n_samples"):
        monte_carlo_kernel(spec, x, n_samples=1)
    with pytest.raises(ValueError, match="sample_batch"):
        monte_carlo_kernel(spec, x, n_samples=2, sample_batch=0)
    with pytest.raises(ValueError, match="get"):
        monte_carlo_kernel(spec, x, n_samples=2, get=("ntk", "bogus"))
    with pytest.raises(TypeError, match="spec"):
        monte_carlo_kernel("dense", x)
    with pytest.raises(ValueError, match="x2"):
        monte_carlo_kernel(spec, x, _x(3, d=4), n_samples=2)
    with pytest.raises(ValueError, match="readout"):
        monte_carlo_kernel(Serial(Conv(2, (3,)), Relu()), torch.ones(2, 1, 4, dtype=torch.float64),
                           n_samples=2)
