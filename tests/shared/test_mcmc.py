"""Walkers against a Gaussian's moments (5 standard errors, autocorrelation accounted);
autocorrelation time and blocking against an AR(1) process with known answers."""

import math

import pytest
import torch

from dlpde.shared import MetropolisWalkers, make_generator
from dlpde.shared.mcmc import blocking_standard_error, chain_mean_and_error, integrated_autocorrelation_time
from dlpde.shared.testing import assert_monte_carlo_close

DT = torch.float64
MEAN = torch.tensor([1.0, -0.5], dtype=DT)
STD = torch.tensor([2.0, 0.5], dtype=DT)


def gaussian_log_prob(x):
    return -0.5 * (((x - MEAN) / STD) ** 2).sum(-1)


@pytest.mark.parametrize("proposal", ["random_walk", "mala"])
def test_gaussian_moments(proposal):
    walkers = MetropolisWalkers(gaussian_log_prob, torch.zeros(128, 2, dtype=DT), proposal=proposal,
                                step_size=0.3, generator=make_generator(0))
    samples = walkers.sample(1500, burn_in=400)  # (T, chains, 2)
    target = walkers.target_acceptance
    assert abs(walkers.total_acceptance - target) < 0.15
    for i in range(2):
        mean, err, tau = chain_mean_and_error(samples[:, :, i])
        assert tau >= 1.0
        assert_monte_carlo_close(mean, err, float(MEAN[i]), n_sigma=5)
        var_mean, var_err, _ = chain_mean_and_error((samples[:, :, i] - MEAN[i]) ** 2)
        assert_monte_carlo_close(var_mean, var_err, float(STD[i] ** 2), n_sigma=5)


def test_wrong_target_is_detected():
    """A sampler that ignores the acceptance step samples the wrong law; the 5-sigma check catches it."""
    walkers = MetropolisWalkers(gaussian_log_prob, torch.zeros(128, 2, dtype=DT), step_size=0.5,
                                generator=make_generator(1))
    walkers.log_prob = lambda x: torch.zeros(x.shape[0], dtype=DT)  # every proposal accepted
    walkers.log_p = walkers.log_prob(walkers.x)
    samples = walkers.sample(400)
    var_mean, var_err, _ = chain_mean_and_error((samples[:, :, 1] - MEAN[1]) ** 2)
    with pytest.raises(AssertionError, match="sigma"):
        assert_monte_carlo_close(var_mean, var_err, float(STD[1] ** 2), n_sigma=5)


def ar1(phi, length, chains, seed):
    g = make_generator(seed)
    noise = torch.randn(length, chains, generator=g, dtype=DT)
    x = torch.empty_like(noise)
    x[0] = noise[0] / math.sqrt(1 - phi**2)
    for t in range(1, length):
        x[t] = phi * x[t - 1] + noise[t]
    return x


def test_autocorrelation_time_of_ar1():
    phi = 0.8
    tau_exact = (1 + phi) / (1 - phi)  # = 9
    tau = integrated_autocorrelation_time(ar1(phi, 20000, 8, 2))
    assert abs(tau - tau_exact) / tau_exact < 0.1


def test_blocking_error_of_ar1():
    phi, n = 0.8, 2**16
    series = ar1(phi, n, 1, 3)[:, 0]
    exact = math.sqrt((1 + phi) / (1 - phi) / (1 - phi**2) / n)  # sqrt(tau var / n), var = 1/(1-phi^2)
    estimate = blocking_standard_error(series)
    assert 0.75 < estimate / exact < 1.35
    naive = float(series.std() / math.sqrt(n))
    assert naive < 0.5 * exact  # the naive error is badly optimistic: blocking matters


def test_bad_inputs():
    with pytest.raises(ValueError, match="proposal"):
        MetropolisWalkers(gaussian_log_prob, torch.zeros(4, 2, dtype=DT), proposal="hmc")
    with pytest.raises(ValueError, match="step_size"):
        MetropolisWalkers(gaussian_log_prob, torch.zeros(4, 2, dtype=DT), step_size=-1.0)
    with pytest.raises(ValueError, match="x0"):
        MetropolisWalkers(gaussian_log_prob, torch.zeros(4, dtype=DT))
    with pytest.raises(ValueError, match="log_prob"):
        MetropolisWalkers(lambda x: x, torch.zeros(4, 2, dtype=DT))
    with pytest.raises(ValueError, match="64"):
        blocking_standard_error(torch.zeros(10))
