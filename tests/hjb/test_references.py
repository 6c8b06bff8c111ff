"""Exact references checked against each other in float64, in d = 1, 2 and 10:
closed form vs ``hopf_lax_value`` vs the finite-difference PDE residual, closed-form gradients vs
finite differences of the closed-form values, and Riccati vs characteristics.

Tolerances: ``hopf_lax_value`` converges to ~1e-12 on smooth minima and ~1e-9 at the kink of
``g = |x|`` (linear convergence at a non-smooth minimum); the central-difference residual with
step 1e-5 is O(1e-9) at points farther than 1e-3 from a kink."""

import pytest
import torch

from dlpde.hjb import (
    NormHamiltonian,
    QuadraticHamiltonian,
    characteristics,
    hopf_lax_value,
    kink_problem,
    lqr_problem,
    min_of_quadratics_problem,
)
from dlpde.shared import make_generator
from dlpde.shared.testing import assert_matches_finite_differences

DIMS = [1, 2, 10]


def _points(problem, n, seed):
    x, t = problem.sample(n, make_generator(seed))
    return x, t.clamp_min(0.02)


def _random_lqr(d, horizon=1.0, seed=0):
    g = make_generator(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    b = torch.randn(d, 2, generator=g, dtype=torch.float64)
    q = torch.randn(d, d, generator=g, dtype=torch.float64)
    return lqr_problem(
        a,
        b,
        q @ q.T / d + torch.eye(d, dtype=torch.float64),
        torch.eye(2, dtype=torch.float64),
        0.5 * torch.eye(d, dtype=torch.float64),
        horizon=horizon,
    )


@pytest.mark.parametrize("d", DIMS)
def test_min_of_quadratics_closed_form_equals_hopf_lax(d):
    problem = min_of_quadratics_problem(d)
    x, t = _points(problem, 150, d)
    value, minimiser = hopf_lax_value(problem.hamiltonian, problem.initial, x, t, generator=1)
    torch.testing.assert_close(value, problem.exact_value(x, t), rtol=1e-10, atol=1e-10)
    # the minimiser is the foot of the characteristic: y = x - t M grad u
    torch.testing.assert_close(minimiser, x - t[:, None] * problem.exact_gradient(x, t), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["negative_norm", "norm", "zero"])
@pytest.mark.parametrize("d", DIMS)
def test_kink_closed_forms_equal_hopf_lax(kind, d):
    problem = kink_problem(kind, d)
    x, t = _points(problem, 40, 7 + d)
    value, _ = hopf_lax_value(problem.hamiltonian, problem.initial, x, t, n_starts=2)
    torch.testing.assert_close(value, problem.exact_value(x, t), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("order", [1, 2, float("inf")])
@pytest.mark.parametrize("d", DIMS)
def test_hopf_lax_for_norm_hamiltonians(order, d):
    """H = c|p|: u(x, t) = min over the dual ball of radius ct around x of |y - a|^2 / 2, i.e.
    half the squared distance from a to that ball (computed from its projection)."""
    h = NormHamiltonian(order, speed=0.7)
    a = torch.full((d,), 0.3, dtype=torch.float64)
    x = 2 * torch.rand(60, d, generator=make_generator(d), dtype=torch.float64) - 1
    t = torch.rand(60, generator=make_generator(d + 1), dtype=torch.float64)
    value, _ = hopf_lax_value(h, lambda y: 0.5 * ((y - a) ** 2).sum(-1), x, t, n_starts=2)
    nearest = x - t[:, None] * h.project_velocity((x - a) / t[:, None])
    torch.testing.assert_close(value, 0.5 * ((nearest - a) ** 2).sum(-1), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", ["min_of_quadratics", "negative_norm", "norm", "lqr"])
@pytest.mark.parametrize("d", DIMS)
def test_closed_forms_have_zero_pde_residual_and_consistent_gradients(name, d):
    if name == "min_of_quadratics":
        problem = min_of_quadratics_problem(d)
    elif name == "lqr":
        problem = _random_lqr(d)
    else:
        problem = kink_problem(name, d)
    x, t = _points(problem, 60, 3 * d)
    if problem.kink_distance is not None:
        keep = problem.kink_distance(x, t) > 1e-3
        x, t = x[keep], t[keep]
    residual = problem.residual(problem.exact_value, x, t)
    assert float(residual.abs().max()) < 1e-7
    assert_matches_finite_differences(
        lambda y: problem.exact_value(y, t), x, problem.exact_gradient(x, t), eps=1e-6, rtol=1e-6, atol=1e-7
    )


def test_residual_check_detects_a_wrong_solution():
    problem = min_of_quadratics_problem(2)
    x, t = _points(problem, 50, 0)

    def wrong(y, s):
        return problem.exact_value(y, s) + 0.05 * s * y[:, 0]

    assert float(problem.residual(wrong, x, t).abs().max()) > 1e-2


@pytest.mark.parametrize("kind", ["norm", "zero"])
def test_spurious_solutions_solve_the_pde_almost_everywhere_but_are_not_the_viscosity_solution(kind):
    problem = kink_problem(kind, 2)
    ((name, spurious),) = problem.spurious_solutions.items()
    x, t = _points(problem, 200, 1)
    norm = torch.linalg.vector_norm(x, dim=-1)
    smooth = ((norm - 0.5 * t).abs() > 1e-3) & (norm > 1e-3)
    assert float(problem.residual(spurious, x[smooth], t[smooth]).abs().max()) < 1e-7
    torch.testing.assert_close(spurious(x, torch.zeros_like(t)), problem.initial(x))
    gap = problem.exact_value(x, t) - spurious(x, t)  # here the viscosity solution lies above
    assert float(gap.min()) > -1e-12 and float(gap.max()) > 0.05
    value, _ = hopf_lax_value(problem.hamiltonian, problem.initial, x, t, n_starts=2)
    torch.testing.assert_close(value, problem.exact_value(x, t), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("d", DIMS)
def test_lqr_characteristics_reproduce_the_riccati_gradient(d):
    """Forward characteristics from p(0) = P0 x(0) satisfy p(s) = P(s) x(s) and z(s) = u(x(s), s)."""
    problem = _random_lqr(d, horizon=1.0, seed=d)
    x0 = torch.randn(8, d, generator=make_generator(d), dtype=torch.float64)
    p0 = x0 @ (0.5 * torch.eye(d, dtype=torch.float64))
    times = [0.0, 0.25, 0.5, 0.75, 1.0]
    path = characteristics(
        problem.hamiltonian, x0, p0, problem.initial(x0), 0.0, 1.0, steps=400, save_at=times
    )
    for k, s in enumerate(times):
        scale = 1 + float(path.x[k].abs().max())
        torch.testing.assert_close(
            path.p[k], problem.exact_gradient(path.x[k], s), rtol=1e-8, atol=1e-8 * scale
        )
        torch.testing.assert_close(path.z[k], problem.exact_value(path.x[k], s), rtol=1e-8, atol=1e-8)


def test_riccati_and_problem_inputs_are_validated():
    problem = min_of_quadratics_problem(2)
    with pytest.raises(ValueError, match="columns"):
        problem.exact_value(torch.zeros(3, 5, dtype=torch.float64), 0.5)
    with pytest.raises(ValueError, match="non-negative"):
        problem.exact_value(torch.zeros(3, 2, dtype=torch.float64), -1.0)
    with pytest.raises(ValueError, match="initial"):
        kink_problem("cubic")
    with pytest.raises(ValueError, match="precisions"):
        min_of_quadratics_problem(2, centres=torch.zeros(2, 2), precisions=torch.ones(3))
    with pytest.raises(ValueError, match="convex, state-independent"):
        hopf_lax_value(
            _random_lqr(2).hamiltonian, problem.initial, torch.zeros(3, 2, dtype=torch.float64), 0.5
        )
    with pytest.raises(ValueError, match="Lagrangian"):
        hopf_lax_value(
            QuadraticHamiltonian(torch.zeros(2, 2, dtype=torch.float64)),
            problem.initial,
            torch.zeros(3, 2, dtype=torch.float64),
            0.5,
        )
    x = torch.zeros(4, 2, dtype=torch.float64)
    value, minimiser = hopf_lax_value(problem.hamiltonian, problem.initial, x, 0.0)
    torch.testing.assert_close(value, problem.initial(x))
    torch.testing.assert_close(minimiser, x)
    with pytest.raises(ValueError, match="t must lie"):
        _random_lqr(2, horizon=1.0).exact_value(x, 2.0)
