"""Pontryagin boundary-value solver and control problems against Riccati, closed forms and
closed-loop simulation (float64)."""

import math

import pytest
import torch

from dlpde.hjb import (
    ControlAffineProblem,
    lqr_problem,
    min_of_quadratics_problem,
    pontryagin_data_source,
    rigid_body_problem,
    simulate_closed_loop,
    solve_pontryagin_bvp,
    value_feedback,
)
from dlpde.shared import make_generator


def _lqr(d=3, horizon=2.0):
    g = make_generator(0)
    a = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    b = torch.randn(d, 2, generator=g, dtype=torch.float64)
    return lqr_problem(
        a,
        b,
        torch.eye(d, dtype=torch.float64),
        torch.eye(2, dtype=torch.float64),
        0.5 * torch.eye(d, dtype=torch.float64),
        horizon=horizon,
    )


def test_bvp_reproduces_riccati_with_time_marching():
    problem = _lqr()
    x = torch.randn(6, 3, generator=make_generator(1), dtype=torch.float64)
    solution = solve_pontryagin_bvp(
        problem, x, 2.0, segments=6, steps_per_segment=20, time_marching=(0.5, 1.0)
    )
    assert bool(solution.converged.all())
    torch.testing.assert_close(solution.value, problem.exact_value(x, 2.0), rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(solution.gradient, problem.exact_gradient(x, 2.0), rtol=1e-8, atol=1e-8)
    for m in range(7):  # every node lies on the optimal trajectory: p = P(s) x, z = u(x, s)
        s = float(solution.times[m, 0])
        torch.testing.assert_close(
            solution.costates[m], problem.exact_gradient(solution.states[m], s), rtol=1e-7, atol=1e-7
        )
        torch.testing.assert_close(
            solution.values[m], problem.exact_value(solution.states[m], s), rtol=1e-7, atol=1e-7
        )


@pytest.mark.parametrize("d", [1, 2, 10])
def test_bvp_data_select_the_viscosity_solution_where_characteristics_cross(d):
    problem = min_of_quadratics_problem(d)
    x, t = problem.sample(100, make_generator(d))
    source = pontryagin_data_source(problem, n_starts=12, segments=1, steps_per_segment=1)
    data = source(x, t)
    assert data["x"].shape[0] == 100 and source.log == [{"asked": 100, "kept": 100}]
    wrong = (data["value"] - problem.exact_value(data["x"], data["t"])).abs() > 1e-9
    assert int(wrong.sum()) <= 1  # a start can still miss the minimising branch
    good = ~wrong
    torch.testing.assert_close(
        data["gradient"][good], problem.exact_gradient(data["x"], data["t"])[good], rtol=1e-9, atol=1e-9
    )


def test_a_single_start_misses_the_minimum_somewhere():
    """The reason for several starts: from the constant-path guess alone some points converge to
    a crossing (non-minimal) characteristic."""
    problem = min_of_quadratics_problem(1)
    x, t = problem.sample(200, make_generator(3))
    data = pontryagin_data_source(problem, n_starts=0, segments=1, steps_per_segment=1)(x, t)
    assert bool((data["value"] > problem.exact_value(data["x"], data["t"]) + 1e-6).any())


def test_lqr_feedback_cost_equals_the_riccati_value_for_a_linear_problem():
    """For linear dynamics and quadratic costs the closed loop of the LQR feedback from x0 costs
    exactly V(x0, T) = x0^T P(T) x0 / 2: simulation vs Riccati."""
    a = torch.tensor([[0.0, 1.0], [-1.0, 0.3]], dtype=torch.float64)
    b = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    problem = ControlAffineProblem(
        lambda x: x @ a.T,
        b,
        lambda x: 0.5 * (x**2).sum(-1),
        torch.eye(1, dtype=torch.float64) * 0.5,
        lambda x: (x**2).sum(-1),
        dim=2,
        control_dim=1,
        horizon=3.0,
    )
    lqr = problem.lqr_problem()
    torch.testing.assert_close(problem.linearization()["A"], a)
    x0 = torch.randn(5, 2, generator=make_generator(0), dtype=torch.float64)
    run = simulate_closed_loop(problem, value_feedback(problem, lqr.exact_gradient), x0, steps=600)
    torch.testing.assert_close(run["cost"], lqr.exact_value(x0, 3.0), rtol=1e-6, atol=1e-8)
    bvp = solve_pontryagin_bvp(problem.hj_problem(), x0, 3.0, segments=6, steps_per_segment=20)
    torch.testing.assert_close(bvp.value, lqr.exact_value(x0, 3.0), rtol=1e-7, atol=1e-8)


def test_rigid_body_linearisation_and_optimality():
    problem = rigid_body_problem(horizon=6.0)
    lin = problem.linearization()
    expected = torch.zeros(6, 6, dtype=torch.float64)
    expected[:3, 3:] = torch.eye(3)
    expected[3:, 3:] = torch.diag(torch.tensor([0.5, 1 / 3, 0.25], dtype=torch.float64)) @ torch.tensor(
        [[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]], dtype=torch.float64
    )
    torch.testing.assert_close(lin["A"], expected)
    torch.testing.assert_close(
        lin["Q"], torch.diag(torch.tensor([1.0] * 3 + [10.0] * 3, dtype=torch.float64))
    )
    lqr = problem.lqr_problem()
    x0 = problem.hj_problem().sample(4, make_generator(2), initial=True)
    feedback = value_feedback(problem, lqr.exact_gradient)
    closed = simulate_closed_loop(problem, feedback, x0, steps=240, saves=13)
    states = closed["states"].flip(0)
    times = torch.linspace(0, 6.0, 13, dtype=torch.float64)
    costates = torch.stack([lqr.exact_gradient(states[m], float(times[m])) for m in range(13)])
    solution = solve_pontryagin_bvp(
        problem.hj_problem(),
        x0,
        6.0,
        segments=12,
        steps_per_segment=10,
        initial_guess=torch.cat([states, costates], -1),
    )
    assert bool(solution.converged.all())
    # the optimum is below the LQR closed-loop cost, and close to it for these small states
    assert bool((solution.value <= closed["cost"] + 1e-9).all())
    assert bool((solution.value >= 0.9 * closed["cost"]).all())
    assert abs(float(lqr.exact_value(torch.zeros(1, 6, dtype=torch.float64), 6.0))) < 1e-14
    assert math.isclose(problem.horizon, 6.0)


def test_bvp_validates_inputs():
    problem = _lqr()
    x = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="time_marching"):
        solve_pontryagin_bvp(problem, x, 1.0, time_marching=(0.5, 0.25, 1.0))
    with pytest.raises(ValueError, match="non-negative"):
        solve_pontryagin_bvp(problem, x, -1.0)
    with pytest.raises(ValueError, match="finite"):
        solve_pontryagin_bvp(problem, x, 1.0, segments=2, initial_guess=torch.full((3, 2, 6), float("nan")))
    with pytest.raises(ValueError, match="non_finite"):
        solve_pontryagin_bvp(problem, x, 1.0, non_finite="ignore")
    with pytest.raises(ValueError, match="initial_guess"):
        solve_pontryagin_bvp(problem, x, 1.0, segments=2, initial_guess=torch.zeros(2, 2, 6))
    with pytest.raises(ValueError, match="horizon"):
        simulate_closed_loop(
            rigid_body_problem(),
            lambda y, s: torch.zeros(2, 3, dtype=torch.float64),
            torch.zeros(2, 6, dtype=torch.float64),
            horizon=-1.0,
        )


def _stiff(horizon=3.0):
    """A control-affine linear problem with a decay rate of -150 (its own LQR linearisation)."""
    A = torch.tensor([[-150.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
    return ControlAffineProblem(
        lambda x: x @ A.T,
        torch.ones(2, 1, dtype=torch.float64),
        lambda x: 0.5 * (x * x).sum(-1),
        torch.eye(1, dtype=torch.float64),
        lambda x: 0.5 * (x * x).sum(-1),
        dim=2,
        control_dim=1,
        horizon=horizon,
    )


def test_stiff_problem_converges_to_riccati_with_default_settings_by_segment_refinement():
    """Without refinement the default RK4 shooting (8 segments of 4 steps, h = 0.09, h*150 = 14)
    converges to a wrong discrete solution (values off by 100x) or not at all; refinement doubles
    the segments until the flow is resolved. ``t = 0`` rows are answered by the terminal cost."""
    control = _stiff()
    lqr = control.lqr_problem()
    x = 2 * torch.rand(4, 2, generator=make_generator(3), dtype=torch.float64) - 1
    t = torch.tensor([0.0, 3.0, 1.0, 3.0], dtype=torch.float64)
    coarse = solve_pontryagin_bvp(control.hj_problem(), x, t, max_refinements=0, non_finite="mark")
    assert not bool((coarse.converged & ((coarse.value - lqr.exact_value(x, t)).abs() < 1e-3))[1:].all())
    solution = solve_pontryagin_bvp(control.hj_problem(), x, t)
    assert bool(solution.converged.all()) and int(solution.segments.max()) > 8
    torch.testing.assert_close(solution.gradient, lqr.exact_gradient(x, t), rtol=0, atol=1e-9)
    torch.testing.assert_close(solution.value, lqr.exact_value(x, t), rtol=0, atol=1e-4)
    assert solution.value[0] == control.terminal_cost(x[:1])[0] and int(solution.segments[0]) == 8


def test_non_finite_shooting_is_a_named_error():
    """``H = |p|^2/2 - sum exp(50 x)`` from ``x = 20``: ``p' = 50 exp(50 x)`` overflows."""
    from dlpde.hjb import Hamiltonian, HJProblem
    from dlpde.shared import NonFiniteResultError

    hamiltonian = Hamiltonian.from_function(
        lambda x, p: 0.5 * (p * p).sum(-1) - torch.exp(50 * x).sum(-1), convex=True
    )
    problem = HJProblem(hamiltonian, lambda x: 0.5 * (x * x).sum(-1), dim=1)
    x = torch.full((2, 1), 20.0, dtype=torch.float64)
    with pytest.raises(NonFiniteResultError, match="non-finite"):
        solve_pontryagin_bvp(problem, x, 1.0, segments=1, steps_per_segment=1, max_refinements=1)
    marked = solve_pontryagin_bvp(
        problem, x, 1.0, segments=1, steps_per_segment=1, max_refinements=1, non_finite="mark"
    )
    assert not bool(marked.converged.any()) and bool(torch.isinf(marked.residual).all())
