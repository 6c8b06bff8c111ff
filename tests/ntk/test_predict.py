"""Infinite-width predictions against an ODE solve, a direct GP solve and Monte Carlo."""

import math

import pytest
import torch

from dlpde.ntk import (
    Dense,
    Relu,
    Serial,
    analytic_kernels,
    gradient_descent_mse,
    gradient_descent_mse_ensemble,
    gradient_descent_mse_predictor,
    kernel_regression,
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


def test_predictor_reuses_one_eigendecomposition(monkeypatch):
    _, ntk, y, n = _problem()
    direct = gradient_descent_mse(ntk[:n, :n], y, [0.3, 2.0, math.inf], 0.7, ntk_test_train=ntk[n:, :n])
    calls = []
    eigh = torch.linalg.eigh
    monkeypatch.setattr(torch.linalg, "eigh", lambda a: calls.append(a.shape) or eigh(a))
    predict = gradient_descent_mse_predictor(ntk[:n, :n], y, 0.7, ntk_test_train=ntk[n:, :n])
    pieces = [predict(t) for t in (0.3, [2.0, math.inf])]
    assert len(calls) == 1  # the decomposition is done once, at construction
    for key in ("train", "test"):
        torch.testing.assert_close(torch.cat([p[key] for p in pieces]), direct[key], rtol=1e-13, atol=1e-13)


def _closed_form(kernel, nngp, y, n, t, eta, mode):
    """Mean and covariance from matrix exponentials and solves (no eigendecomposition)."""
    n_out = y.numel()
    theta = kernel[:n, :n]
    inverse = torch.linalg.inv(theta)
    eye = torch.eye(n, dtype=torch.float64)
    decay = eye if math.isinf(t) else eye - torch.linalg.matrix_exp(-eta * t * theta / n_out)
    a = kernel[n:, :n] @ inverse @ decay
    if mode == "ntk":
        cov = (nngp[n:, n:] - a @ nngp[:n, n:] - nngp[n:, :n] @ a.T + a @ nngp[:n, :n] @ a.T)
    else:
        decay2 = eye if math.isinf(t) else eye - torch.linalg.matrix_exp(-2 * eta * t * theta / n_out)
        cov = nngp[n:, n:] - nngp[n:, :n] @ inverse @ decay2 @ nngp[:n, n:]
    return a @ y, cov


@pytest.mark.parametrize("get", ["ntk", "nngp"])
def test_kernel_regression_against_closed_forms(get):
    g = make_generator(4)
    x = torch.randn(9, 3, generator=g, dtype=torch.float64)
    y = torch.randn(6, 2, generator=g, dtype=torch.float64)
    nngp, ntk = analytic_kernels(SPEC, x)
    kernel = ntk if get == "ntk" else nngp
    times = [0.0, 0.8, 5.0, math.inf]
    out = kernel_regression(SPEC, x[:6], y, x[6:], get=get, t=times, learning_rate=0.9)
    assert out["mean"].shape == (4, 3, 2) and out["covariance"].shape == (4, 3, 3)
    for i, t in enumerate(times):
        mean, cov = _closed_form(kernel, nngp, y, 6, t, 0.9, get)
        torch.testing.assert_close(out["mean"][i], mean, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(out["covariance"][i], cov, rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(out["variance"][i], torch.diagonal(cov), rtol=1e-8, atol=1e-10)
    # t = 0: the prior (mean 0, covariance K(x, x')); t = None is t = inf without the time axis
    torch.testing.assert_close(out["covariance"][0], nngp[6:, 6:], rtol=1e-12, atol=1e-12)
    converged = kernel_regression(SPEC, x[:6], y, x[6:], get=get)
    torch.testing.assert_close(converged["mean"], out["mean"][-1], rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(converged["covariance"], out["covariance"][-1], rtol=1e-8, atol=1e-10)


def test_kernel_regression_nngp_is_the_bayesian_posterior_with_noise():
    g = make_generator(5)
    x = torch.randn(10, 3, generator=g, dtype=torch.float64)
    y = torch.randn(7, generator=g, dtype=torch.float64)
    nngp, _ = analytic_kernels(SPEC, x)
    noise = 0.05 * float(torch.diagonal(nngp[:7, :7]).mean())  # diag_reg is relative to mean(diag K)
    out = kernel_regression(SPEC, x[:7], y, x[7:], get="nngp", diag_reg=0.05)
    inverse = torch.linalg.inv(nngp[:7, :7] + noise * torch.eye(7, dtype=torch.float64))
    torch.testing.assert_close(out["mean"], nngp[7:, :7] @ inverse @ y, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out["covariance"], nngp[7:, 7:] - nngp[7:, :7] @ inverse @ nngp[:7, 7:],
                               rtol=1e-10, atol=1e-12)
    assert out["mean"].shape == (3,) and out["variance"].shape == (3,)
    assert bool((out["variance"] > 0).all())


def test_kernel_regression_refuses_bad_arguments():
    x = torch.randn(5, 3, dtype=torch.float64)
    y = torch.randn(4, dtype=torch.float64)
    with pytest.raises(ValueError, match="y_train"):
        kernel_regression(SPEC, x[:3], y, x[3:])
    with pytest.raises(ValueError, match="get"):
        kernel_regression(SPEC, x[:4], y, x[4:], get="ntkgp")
    with pytest.raises(ValueError, match="diag_reg"):
        kernel_regression(SPEC, x[:4], y, x[4:], diag_reg=-1.0)
    with pytest.raises(ValueError, match="times"):
        kernel_regression(SPEC, x[:4], y, x[4:], t=[-1.0])
