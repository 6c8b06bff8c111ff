"""ntk.convergence: the finite-width bias measured with monte_carlo_kernel (nonzero at depth 2,
consistent with zero for one hidden layer), its delta-method error against the spread of
independent repeats, the weighted slope fit against numpy, and the fast parameter draws of
monte_carlo_kernel against build_network."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from dlpde.ntk import Dense, Relu, Serial, build_network, empirical_ntk, monte_carlo_kernel
from dlpde.ntk._empirical import _replay_parameters, _replayable
from dlpde.ntk.studies.convergence import Config, bias_point, bias_threshold, spec_of, weighted_slope
from dlpde.shared import make_generator, spawn_seed


def _config(**changes):
    base = Config(widths=(16,), fc_depths=(1, 2), cnn_depths=(), n_inputs=4, bias_widths=(8,),
                  bias_samples=(4096,), bias_batches=8)
    return dataclasses.replace(base, **changes)


def test_depth_two_bias_is_significant_and_one_hidden_layer_is_consistent_with_zero():
    # E K_m = K_inf exactly with one hidden layer (Gaussian pre-activations, independent readout);
    # with two the mean kernel is off by O(1/m): at width 8, 4096 networks resolve it
    config = _config()
    threshold = bias_threshold(config.n_inputs)
    one = bias_point((config, {"family": "fc", "depth": 1, "width": 8}))
    two = bias_point((config, {"family": "fc", "depth": 2, "width": 8}))
    assert one["n_samples"] == two["n_samples"] == 4096
    assert not one["significant"] and one["max_z"] < threshold
    assert two["significant"] and two["max_z"] > 2 * threshold
    # the Frobenius-norm estimate: the depth-1 squared bias within 3 of its standard deviations of
    # zero (it is an unbiased estimate: it may be negative), the depth-2 one positive
    assert abs(one["bias_squared"]) < 3 * one["bias_squared_error"]
    assert two["bias_squared"] > 0 and two["bias"] > 0
    assert one["raw_difference"] < 2 * one["noise_floor"]


def test_bias_error_matches_the_spread_of_independent_repeats():
    # 8 independent estimates (other networks, same inputs) of the depth-2 bias at width 8: the
    # spread of the unbiased squared-bias estimates against their mean standard deviation
    # sqrt(4 B^T S B + 2 tr S^2) (S from 16 batch means); both come from a few values, so only a
    # factor of 2.5 is asserted
    config = _config(bias_samples=(2048,), bias_batches=16)
    rows = [bias_point((config, {"family": "fc", "depth": 2, "width": 8, "repeat": r})) for r in range(8)]
    assert all(r["significant"] for r in rows)
    spread = float(np.std([r["bias_squared"] for r in rows], ddof=1))
    error = float(np.mean([r["bias_squared_error"] for r in rows]))
    assert 1 / 2.5 < spread / error < 2.5, (spread, error)


def test_weighted_slope_agrees_with_numpy_polyfit():
    widths = np.array([8, 16, 32, 64, 128])
    rng = np.random.default_rng(0)
    values = 0.3 / widths * np.exp(0.05 * rng.standard_normal(5))
    errors = values * np.array([0.02, 0.05, 0.05, 0.1, 0.3])
    fit = weighted_slope(widths, values, errors)
    x, y, sigma = np.log(widths), np.log(values), errors / values
    beta, cov = np.polyfit(x, y, 1, w=1 / sigma, cov="unscaled")
    chi2 = float((((y - np.polyval(beta, x)) / sigma) ** 2).sum())
    assert fit["widths"] == [8, 16, 32, 64, 128] and fit["dof"] == 3
    assert fit["slope"] == pytest.approx(beta[0], rel=1e-12)
    assert fit["chi2"] == pytest.approx(chi2, rel=1e-9)
    assert fit["slope_error"] == pytest.approx(math.sqrt(cov[0, 0] * max(1.0, chi2 / 3)), rel=1e-9)
    # points below twice their error, or not marked for use, are left out
    errors[-1] = values[-1]
    fit = weighted_slope(widths, values, errors, use=[True, True, False, True, True])
    assert fit["widths"] == [8, 16, 64]
    assert math.isnan(weighted_slope(widths[:1], values[:1], errors[:1])["slope"])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("family,depth", [("fc", 3), ("cnn", 2)])
def test_replayed_parameters_are_those_of_build_network(family, depth, dtype):
    spec = spec_of(family, depth, 8)
    shape = (5,) if family == "fc" else (2, 6)
    g = make_generator(4)
    seeds = [spawn_seed(g) for _ in range(3)]
    template = build_network(spec, shape, seeds[0], dtype)
    assert _replayable(template, seeds[0])
    stacked = _replay_parameters(template, seeds)
    for i, seed in enumerate(seeds):
        net = build_network(spec, shape, seed, dtype)
        for name, value in net.named_parameters():
            assert stacked[name].dtype == dtype
            assert torch.equal(stacked[name][i], value.detach()), (name, i)


def test_standard_parameterisation_is_drawn_by_build_network_and_still_exact():
    # W ~ N(0, W_std^2 / n_in): not unit normal draws, so the networks are built one by one;
    # the Monte Carlo mean is still the brute-force average of build_network's networks
    spec = Serial(Dense(6, 1.4, 0.2, "standard"), Relu(), Dense(1, 1.0, 0.1, "standard"))
    x = torch.randn(3, 2, generator=make_generator(1), dtype=torch.float64)
    g = make_generator(9)
    seed = spawn_seed(g)
    assert not _replayable(build_network(spec, (2,), seed, torch.float64), seed)
    mc = monte_carlo_kernel(spec, x, n_samples=6, seed=9, get="ntk", sample_batch=4)
    g = make_generator(9)
    kernels = torch.stack([empirical_ntk(build_network(spec, (2,), spawn_seed(g), torch.float64), x,
                                         method="jacobian") for _ in range(6)])
    torch.testing.assert_close(mc["ntk"], kernels.mean(0), rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(mc["ntk_standard_error"], kernels.std(0) / math.sqrt(6), rtol=1e-9, atol=1e-13)


def test_float32_networks_accumulate_in_float64_to_the_float64_mean():
    # the same networks (drawn in float64, cast): the means agree to float32 rounding
    spec = spec_of("fc", 2, 16)
    x = torch.randn(4, 8, generator=make_generator(2), dtype=torch.float64)
    a = monte_carlo_kernel(spec, x, n_samples=300, seed=5, get="ntk")
    b = monte_carlo_kernel(spec, x.float(), n_samples=300, seed=5, get="ntk")
    assert b["ntk"].dtype == torch.float32
    torch.testing.assert_close(b["ntk"].double(), a["ntk"], rtol=2e-6, atol=1e-6)


def test_config_rejects_mismatched_bias_samples():
    with pytest.raises(ValueError, match="bias_samples"):
        Config(bias_widths=(8, 16), bias_samples=(1024,))
    with pytest.raises(ValueError, match="bias_samples"):
        Config(bias_widths=(8,), bias_samples=(16,), bias_batches=16)
    with pytest.raises(ValueError, match="bias_dtype"):
        Config(bias_dtype="float16")
