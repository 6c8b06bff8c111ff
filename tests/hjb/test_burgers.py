"""The Burgers stabilisation problem of Nakamura-Zimmerer, Gong & Kang and its study.

Independent references: polynomials (the collocation is exact on them), a NumPy transcription of
the paper's state and costate equations (Tenavi/HJB_NN ``examples/burgers/problem_def.py``),
central finite differences, the Riccati solution of the linearisation, and finite differences of
boundary-value values.
"""

import numpy as np
import pytest
import torch

from dlpde._registry import discover_studies
from dlpde.hjb import (
    burgers_problem,
    chebyshev_collocation,
    lqr_warm_start,
    simulate_closed_loop,
    solve_pontryagin_bvp,
    value_feedback,
)
from dlpde.hjb._hamiltonians import Hamiltonian
from dlpde.shared import make_generator
from dlpde.shared.studies import execute


def test_chebyshev_collocation_is_exact_on_polynomials():
    xi, matrix, weights = chebyshev_collocation(12)  # N = 11
    assert torch.allclose(xi, torch.cos(torch.pi * torch.arange(12, dtype=torch.float64) / 11))
    for k in range(12):  # D x^k = k x^(k-1), sum w x^k = int_{-1}^1 x^k, degree <= N
        derivative = k * xi ** (k - 1) if k else torch.zeros_like(xi)
        torch.testing.assert_close(matrix @ xi**k, derivative, rtol=0, atol=1e-11)
        torch.testing.assert_close(
            (weights * xi**k).sum(), torch.tensor((1 + (-1) ** k) / (k + 1), dtype=torch.float64),
            rtol=0, atol=1e-14,
        )
    _, _, even = chebyshev_collocation(11)  # N = 10 (the even branch of Clenshaw-Curtis)
    xi10 = torch.cos(torch.pi * torch.arange(11, dtype=torch.float64) / 10)
    torch.testing.assert_close((even * xi10**10).sum(), torch.tensor(2 / 11, dtype=torch.float64))


def test_interior_matrices_differentiate_functions_vanishing_at_the_ends():
    problem = burgers_problem()
    xi = problem.nodes
    f = (1 - xi**2) * xi**3  # degree 5 <= 11, zero at +-1
    first = -5 * xi**4 + 3 * xi**2
    second = -20 * xi**3 + 6 * xi
    torch.testing.assert_close(problem.differentiation @ f, first, rtol=0, atol=1e-11)
    torch.testing.assert_close(problem.second_differentiation @ f, second, rtol=0, atol=1e-10)
    assert problem.actuator_indicator.tolist() == [0.0] * 6 + [1.0] + [0.0] * 3  # xi = -0.415 only


def _paper(problem, x, a):
    """The paper's real-time state and costate rates (their aug_dynamics, NumPy, columns = states)."""
    D, D2 = problem.differentiation.numpy(), problem.second_differentiation.numpy()
    w = problem.quadrature_weights.numpy()[:, None]
    iw = problem.actuator_indicator.numpy().astype(bool)
    X, A = x.numpy().T, a.numpy().T
    U = -A[iw].sum(axis=0, keepdims=True) / 0.1
    DX = D @ X
    aeX = 1.5 * np.exp(-0.1 * X)
    aXeX = X * aeX
    dXdt = X * DX + 0.2 * D2 @ X + aXeX + iw[:, None] * U
    dAdt = -w * X - D.T @ (X * A) - 0.2 * D2.T @ A - (DX - 0.1 * aXeX + aeX) * A
    running = ((w * X * X).sum(0) + 0.1 * U[0] ** 2) / 2
    return dXdt.T, dAdt.T, U.T, running


def test_dynamics_cost_and_costate_equations_match_the_paper():
    problem = burgers_problem()
    generator = make_generator(3)
    x = 4 * torch.rand(6, 10, generator=generator, dtype=torch.float64) - 2
    p = torch.randn(6, 10, generator=generator, dtype=torch.float64)
    dxdt, dadt, control, running = _paper(problem, x, p)
    u = problem.optimal_control(x, p)
    np.testing.assert_allclose(u.numpy(), control, rtol=1e-13)
    np.testing.assert_allclose(problem.dynamics(x, u).numpy(), dxdt, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(problem.running_cost(x, u).numpy(), running, rtol=1e-13)
    hamiltonian = problem.hamiltonian()
    # time to go s = T - time: x' = H_p = -dx/dt and p' = -H_x = -dA/dt along the characteristics
    np.testing.assert_allclose(hamiltonian.grad_p(x, p).numpy(), -dxdt, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(hamiltonian.grad_x(x, p).numpy(), dadt, rtol=1e-12, atol=1e-11)
    # the closed-form Hessian against torch.func on the value, and H = -p.f - q + (b.p)^2 / (2 W1)
    torch.testing.assert_close(hamiltonian.hessian(x, p), Hamiltonian.hessian(hamiltonian, x, p))
    torch.testing.assert_close(hamiltonian.grad_x(x, p), Hamiltonian.grad_x(hamiltonian, x, p))
    h = -(p.numpy() * (dxdt - problem.actuator_indicator.numpy() * control)).sum(1) - 0.5 * (
        problem.quadrature_weights.numpy() * x.numpy() ** 2
    ).sum(1) + 0.5 * control[:, 0] ** 2 * 0.1
    np.testing.assert_allclose(hamiltonian.value(x, p).numpy(), h, rtol=1e-12, atol=1e-11)


def test_linearisation_against_finite_differences():
    problem = burgers_problem()
    lin = problem.linearization()
    step = 1e-6
    eye = torch.eye(10, dtype=torch.float64)
    columns = (problem.drift(step * eye) - problem.drift(-step * eye)) / (2 * step)  # row j: f(+-h e_j)
    torch.testing.assert_close(lin["A"], columns.T, rtol=0, atol=1e-8)
    expected = 0.2 * problem.second_differentiation + 1.5 * eye
    torch.testing.assert_close(lin["A"], expected, rtol=0, atol=1e-12)
    weights = torch.diag(problem.quadrature_weights)
    torch.testing.assert_close(lin["Q"], weights)
    torch.testing.assert_close(lin["P0"], weights)
    torch.testing.assert_close(lin["R"], torch.tensor([[0.1]], dtype=torch.float64))
    torch.testing.assert_close(lin["B"][:, 0], problem.actuator_indicator)
    eigenvalues = torch.linalg.eigvals(lin["A"]).real
    assert float(eigenvalues.max()) > 0.9 and float(eigenvalues.min()) < -140  # unstable and stiff


def test_boundary_value_solutions_match_lqr_and_their_costates_are_value_gradients():
    problem = burgers_problem(horizon=0.5)
    hj = problem.hj_problem()
    options = {"segments": 5, "steps_per_segment": 10, "tolerance": 1e-10, "refinement_tolerance": None}
    x = 4 * torch.rand(2, 10, generator=make_generator(5), dtype=torch.float64) - 2
    # near 0 the value is the LQR one: V = x^T P x / 2 (1 + O(|x|)); measured relative differences
    # 1.6e-3, 1.6e-4, 1.7e-5 at scales 1e-2, 1e-3, 1e-4 (the cubic term), RK4 floor ~4e-6
    lqr = problem.lqr_problem()
    gaps = []
    for scale in (1e-3, 1e-4):
        near = solve_pontryagin_bvp(hj, scale * x, 0.5, **options)
        assert bool(near.converged.all())
        gaps.append(float(((near.value - lqr.exact_value(scale * x, 0.5)) / near.value).abs().max()))
    assert gaps[1] < 5e-5 and 5 < gaps[0] / gaps[1] < 20, gaps
    # away from 0: the costate p(t) is grad V (Pontryagin), checked by central differences of V
    # (measured: 2.3e-6 of |p| = 0.13 on 10 segments of 10 RK4 steps; 2.1e-5 with 5 steps)
    base = 0.5 * x[:1]
    step = 1e-3
    eye = torch.eye(10, dtype=torch.float64)
    shifted = torch.cat([base, base + step * eye, base - step * eye])
    options = {**options, "segments": 10}
    guess = lqr_warm_start(problem, 10)(shifted, 0.5)
    solution = solve_pontryagin_bvp(hj, shifted, 0.5, initial_guess=guess, **options)
    assert bool(solution.converged.all())
    differences = (solution.value[1:11] - solution.value[11:]) / (2 * step)
    torch.testing.assert_close(solution.gradient[0], differences, rtol=0, atol=1e-5)
    # the optimum is below the cost of the LQR feedback from the same state
    feedback = value_feedback(problem, lqr.exact_gradient)
    closed = simulate_closed_loop(problem, feedback, base, steps=400)
    assert float(solution.value[0]) < float(closed["cost"][0])


def test_burgers_problem_validates_its_arguments():
    with pytest.raises(ValueError, match="n"):
        burgers_problem(1)
    with pytest.raises(ValueError, match="actuator"):
        burgers_problem(4, actuator=(0.1, 0.15))
    with pytest.raises(TypeError, match="actuator"):
        burgers_problem(actuator=0.5)
    with pytest.raises(ValueError, match="horizon"):
        burgers_problem(horizon=-1.0)
    with pytest.raises(ValueError, match="points"):
        chebyshev_collocation(2)


def test_smoke_preset_runs(tmp_path):
    study = discover_studies()["hjb.burgers"]
    run, metrics = execute(study, "smoke", out=tmp_path, device="cpu")
    assert (run.path / "metrics.json").exists() and (run.path / "burgers.png").exists()
    assert metrics["test_converged"] >= 1
    assert np.isfinite(metrics["value_relative_mean_absolute_error"])
    (run.path / "metrics.json").unlink()  # an unfinished run: --resume reuses the BVP data and checkpoints
    again, resumed = execute(study, "smoke", out=tmp_path, device="cpu", resume=True)
    assert again.path == run.path
    assert resumed["value_relative_mean_absolute_error"] == metrics["value_relative_mean_absolute_error"]
    assert resumed["learned_cost_over_optimal"] == metrics["learned_cost_over_optimal"]
