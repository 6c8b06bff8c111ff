"""Infinite-width predictions against an ODE solve, a direct GP solve and Monte Carlo."""

import math

import torch

from dlpde.ntk import (
    Dense,
    Relu,
    Serial,
    analytic_kernels,
    gradient_descent_mse,
    gradient_descent_mse_ensemble,
    nngp_posterior,
)
from dlpde.shared import integrate, make_generator
from dlpde.shared.testing import assert_monte_carlo_close

SPEC = Serial(Dense(8, 1.5, 0.1), Relu(), Dense(8, 1.5, 0.1), Relu(), Dense(1, 1.0, 0.1))


def _problem(n=6, m=3):
    g = make_generator(0)
    x = torch.randn(n + m, 3, generator=g, dtype=torch.float64)
    nngp, ntk = analytic_kernels(SPEC, x)
    y = torch.randn(n, 2, generator=g, dtype=torch.float64)
    return nngp, ntk, y, n


def test_gradient_flow_matches_ode_solution():
    _, ntk, y, n = _problem()
    f0 = torch.randn(n, 2, generator=make_generator(1), dtype=torch.float64)
    eta, times = 0.7, [0.0, 1.5, 4.0]
    out = gradient_descent_mse(ntk[:n, :n], y, times, eta, f_train_0=f0, ntk_test_train=ntk[n:, :n],
                               f_test_0=torch.zeros(3, 2, dtype=torch.float64))
    # dynamics of all points under the loss (1/2N) sum (f(X) - y)^2, N = y.numel()
    def rhs(t, f):
        residual = f[:n] - y
        return -eta / y.numel() * ntk[:, :n] @ residual

    start = torch.cat([f0, torch.zeros(3, 2, dtype=torch.float64)])
    path = integrate(rhs, start, 0.0, 4.0, method="dopri5", rtol=1e-11, atol=1e-13, save_at=times)
    torch.testing.assert_close(out["train"], path[:, :n], rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(out["test"], path[:, n:], rtol=1e-8, atol=1e-9)
    # at t = inf the training data are interpolated; full (N K x N K) kernels give the same
    late = gradient_descent_mse(ntk[:n, :n], y, [math.inf], eta, ntk_test_train=ntk[n:, :n])
    torch.testing.assert_close(late["train"][0], y, rtol=1e-8, atol=1e-8)
    full = torch.kron(ntk, torch.eye(2, dtype=torch.float64))
    same = gradient_descent_mse(full[:2 * n, :2 * n], y, times, eta, f_train_0=f0,
                                ntk_test_train=full[2 * n:, :2 * n])
    torch.testing.assert_close(same["test"], out["test"])


def test_nngp_posterior_matches_direct_solve():
    nngp, _, y, n = _problem()
    post = nngp_posterior(nngp[:n, :n], nngp[n:, :n], nngp[n:, n:], y, noise_variance=0.1)
    inverse = torch.linalg.inv(nngp[:n, :n] + 0.1 * torch.eye(n, dtype=torch.float64))
    torch.testing.assert_close(post["mean"], nngp[n:, :n] @ inverse @ y)
    torch.testing.assert_close(post["covariance"], nngp[n:, n:] - nngp[n:, :n] @ inverse @ nngp[:n, n:])


def test_ensemble_matches_monte_carlo_over_initialisations():
    nngp, ntk, y, n = _problem()
    y = y[:, 0]
    t, eta = [2.0], 1.0
    ens = gradient_descent_mse_ensemble(nngp[:n, :n], nngp[n:, :n], nngp[n:, n:], ntk[:n, :n], ntk[n:, :n], y,
                                        t, eta)
    # sample f_0 ~ GP(0, NNGP) on all points and evolve every draw (one column each) with the
    # linearised dynamics (the draws are the columns of y, so N = y.numel() grows by a factor
    # `draws`: the learning rate is scaled by it to keep eta / N, the rate per training output)
    draws = 4000
    chol = torch.linalg.cholesky(nngp + 1e-12 * torch.eye(n + 3, dtype=torch.float64))
    f0 = chol @ torch.randn(n + 3, draws, generator=make_generator(2), dtype=torch.float64)
    out = gradient_descent_mse(ntk[:n, :n], y[:, None].expand(n, draws), t, eta * draws, f_train_0=f0[:n],
                               ntk_test_train=ntk[n:, :n], f_test_0=f0[n:])
    finals = out["test"][0].T  # (draws, 3)
    mean, std = finals.mean(0), finals.std(0)
    for i in range(3):
        assert_monte_carlo_close(float(mean[i]), float(std[i]) / math.sqrt(draws), float(ens["mean"][0, i]))
        variance = float(ens["covariance"][0, i, i])
        assert abs(float(std[i]) ** 2 - variance) < 5 * variance * math.sqrt(2 / draws)
    sample_cov = torch.cov(finals.T)
    scale = float(ens["covariance"][0].abs().max())
    assert float((sample_cov - ens["covariance"][0]).abs().max()) < 5 * scale * math.sqrt(2 / draws)
