"""Characteristics: convergence order, scipy agreement, backward = reversed forward, anchoring."""

import numpy as np
import pytest
import torch

from dlpde.hjb import Hamiltonian, backward_characteristics, characteristics, min_of_quadratics_problem
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
