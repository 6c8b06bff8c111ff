"""Characteristics: convergence order, scipy agreement, backward = reversed forward, anchoring."""

import numpy as np
import pytest
import torch

from dlpde.hjb import (
    Hamiltonian,
    LQRHamiltonian,
    QuadraticHamiltonian,
    backward_characteristics,
    characteristics,
    min_of_quadratics_problem,
)
from dlpde.shared import make_generator
from dlpde.shared.testing import assert_convergence_order


def pendulum():
    """H(x, p) = |p|^2 / 2 - sum cos(x): x' = p, p' = -sin(x); state-dependent and nonlinear."""
    return Hamiltonian.from_function(lambda x, p: 0.5 * (p**2).sum(-1) - torch.cos(x).sum(-1), convex=True)


def _start(d=3, n=5, seed=0):
    g = make_generator(seed)
    return (
        torch.randn(n, d, generator=g, dtype=torch.float64),
        torch.randn(n, d, generator=g, dtype=torch.float64),
    )


def test_rk4_characteristics_converge_with_order_four():
    x0, p0 = _start()
    reference = characteristics(pendulum(), x0, p0, t0=0.0, t1=1.0, method="dopri5", rtol=1e-12, atol=1e-13)
    steps = [8, 16, 32, 64]
    errors = [
        float((characteristics(pendulum(), x0, p0, t1=1.0, steps=n).x - reference.x).abs().max())
        for n in steps
    ]
    assert_convergence_order([1 / n for n in steps], errors, expected=4.0, tol=0.3)


def test_convergence_order_checker_fails_for_euler():
    x0, p0 = _start()
    reference = characteristics(pendulum(), x0, p0, t1=1.0, method="dopri5", rtol=1e-12, atol=1e-13)
    steps = [8, 16, 32, 64]
    errors = [
        float(
            (characteristics(pendulum(), x0, p0, t1=1.0, method="euler", steps=n).x - reference.x).abs().max()
        )
        for n in steps
    ]
    with pytest.raises(AssertionError):
        assert_convergence_order([1 / n for n in steps], errors, expected=4.0, tol=0.3)


def test_dopri5_characteristics_match_scipy():
    from scipy.integrate import solve_ivp

    x0, p0 = _start(d=2, n=3)
    ours = characteristics(pendulum(), x0, p0, t1=2.0, method="dopri5", rtol=1e-10, atol=1e-12)
    for b in range(3):

        def rhs(_, y):
            x, p = y[:2], y[2:4]
            return np.concatenate([p, -np.sin(x), [p @ p - (0.5 * p @ p - np.cos(x).sum())]])

        y0 = np.concatenate([x0[b].numpy(), p0[b].numpy(), [0.0]])
        theirs = solve_ivp(rhs, (0, 2.0), y0, method="DOP853", rtol=1e-12, atol=1e-12).y[:, -1]
        np.testing.assert_allclose(ours.x[b].numpy(), theirs[:2], atol=1e-8)
        np.testing.assert_allclose(ours.p[b].numpy(), theirs[2:4], atol=1e-8)
        np.testing.assert_allclose(float(ours.z[b]), theirs[4], atol=1e-8)


def test_backward_characteristics_retrace_forward_ones_and_anchor_z():
    x0, p0 = _start(d=2, n=4, seed=1)
    g_linear = lambda x: (x * 0.3).sum(-1)  # noqa: E731
    times = torch.tensor([0.3, 0.6, 0.9, 1.2], dtype=torch.float64)
    forward = [
        characteristics(
            pendulum(), x0[b : b + 1], p0[b : b + 1], g_linear(x0[b : b + 1]), 0.0, float(times[b]), steps=400
        )
        for b in range(4)
    ]
    top_x = torch.cat([f.x for f in forward])
    top_p = torch.cat([f.p for f in forward])
    path = backward_characteristics(pendulum(), top_x, times, top_p, g_linear, nodes=5, steps=400)
    torch.testing.assert_close(path.x[0], x0, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(path.p[0], p0, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(path.z[0], g_linear(path.x[0]))
    torch.testing.assert_close(path.z[-1], torch.cat([f.z for f in forward]), rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(path.times[-1], times)
    torch.testing.assert_close(path.x[-1], top_x)


def test_backward_characteristics_of_the_exact_solution_carry_its_values():
    """With p = grad u(x, t) of the viscosity solution the path stays on u: z(s) = u(x(s), s)."""
    problem = min_of_quadratics_problem(10)
    x, t = problem.sample(64, make_generator(0))
    path = backward_characteristics(
        problem.hamiltonian, x, t, problem.exact_gradient(x, t), problem.initial, nodes=6, steps=5
    )
    for k in range(6):
        torch.testing.assert_close(
            path.z[k], problem.exact_value(path.x[k], path.times[k]), rtol=1e-10, atol=1e-10
        )


def test_characteristics_are_differentiable_and_validate_inputs():
    x0, p0 = _start(d=2, n=3)
    p0.requires_grad_(True)
    end = characteristics(pendulum(), x0, p0, t1=0.5, steps=20)
    (grad,) = torch.autograd.grad(end.x.sum(), p0)
    assert grad.shape == p0.shape and bool(torch.isfinite(grad).all())
    with pytest.raises(ValueError, match="columns"):
        characteristics(pendulum(), x0, p0[:, :1])
    with pytest.raises(ValueError, match="non-finite"):
        characteristics(pendulum(), x0 * float("nan"), p0)
    with pytest.raises(TypeError):
        characteristics(lambda x, p: p, x0, p0)
    with pytest.raises(ValueError, match="fractions"):
        backward_characteristics(pendulum(), x0, 1.0, p0.detach(), lambda y: y.sum(-1), fractions=[0.5, 0.2])
    with pytest.raises(ValueError, match="non-negative"):
        backward_characteristics(pendulum(), x0, -1.0, p0.detach(), lambda y: y.sum(-1))


def _harmonic(dim):
    generator = make_generator(7)
    root = torch.randn(dim, dim, generator=generator, dtype=torch.float64) / dim**0.5
    return root @ root.T + 0.5 * torch.eye(dim, dtype=torch.float64)


def test_characteristic_rates_of_the_built_in_hamiltonians_equal_autograd():
    d = 3
    generator = make_generator(3)
    x = torch.randn(6, d, generator=generator, dtype=torch.float64)
    p = torch.randn(6, d, generator=generator, dtype=torch.float64)
    eye = torch.eye(d, dtype=torch.float64)
    built_in = [
        QuadraticHamiltonian(eye + 0.1, potential=_harmonic(d)),
        QuadraticHamiltonian.identity(d),
        LQRHamiltonian(_harmonic(d) - eye, torch.ones(d, 1, dtype=torch.float64), eye, [[2.0]]),
    ]
    for hamiltonian in built_in:
        h_p, h_x, h = hamiltonian.characteristic_rates(x, p)
        xs, ps = x.clone().requires_grad_(True), p.clone().requires_grad_(True)
        value = hamiltonian.value(xs, ps)
        grad_x, grad_p = torch.autograd.grad(value.sum(), (xs, ps), allow_unused=True)
        grad_x = torch.zeros_like(x) if grad_x is None else grad_x
        torch.testing.assert_close(h, value.detach(), rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(h_p, grad_p, rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(h_x, grad_x, rtol=1e-13, atol=1e-13)
    function = Hamiltonian.from_function(lambda x, p: (p**2).sum(-1) * torch.cos(x).sum(-1))
    h_p, h_x, _ = function.characteristic_rates(x, p)
    torch.testing.assert_close(h_p, 2 * p * torch.cos(x).sum(-1, keepdim=True))
    torch.testing.assert_close(h_x, -(p**2).sum(-1, keepdim=True) * torch.sin(x))


@pytest.mark.parametrize("control", ["batch", "row"])
def test_harmonic_characteristics_against_the_exact_flow(control):
    """``H = |p|^2/2 + x^T K x/2``: ``x(t) = cos(sqrt(K) t) x0 + sqrt(K)^-1 sin(sqrt(K) t) p0``
    and ``z(t) = (x.p - x0.p0)/2``."""
    d = 4
    K = _harmonic(d)
    x0, p0 = _start(d=d, n=50)
    end = characteristics(
        QuadraticHamiltonian(torch.eye(d, dtype=torch.float64), potential=K),
        x0, p0, t1=1.3, method="dopri5", rtol=1e-10, atol=1e-12, step_control=control,
    )
    w, v = torch.linalg.eigh(K)
    omega = w.sqrt()
    a, b = x0 @ v, p0 @ v
    x = (a * torch.cos(1.3 * omega) + b / omega * torch.sin(1.3 * omega)) @ v.T
    p = (-a * omega * torch.sin(1.3 * omega) + b * torch.cos(1.3 * omega)) @ v.T
    torch.testing.assert_close(end.x, x, rtol=0, atol=1e-8)
    torch.testing.assert_close(end.p, p, rtol=0, atol=1e-8)
    torch.testing.assert_close(end.z, 0.5 * ((x * p).sum(-1) - (x0 * p0).sum(-1)), rtol=0, atol=1e-8)
