"""Batched Pontryagin two-point boundary-value problems by multiple shooting.

For ``u_t + H(x, grad u) = 0``, ``u(x, 0) = g(x)`` (``t`` the time to go of an optimal control
problem, ``g`` its terminal cost), the value at ``(x, t)`` is carried by the characteristic
``x' = H_p``, ``p' = -H_x`` on ``[0, t]`` with the two-point boundary conditions

    x(t) = x,        p(0) = grad g(x(0))

(Pontryagin's maximum principle: ``p`` is the costate, ``p(t) = grad u(x, t)``), and
``u(x, t) = g(x(0)) + int_0^t (p . H_p - H) ds``. ``solve_pontryagin_bvp`` solves a batch of
these problems at once by multiple shooting: the unknowns are the states ``(x_m, p_m)`` at
``M + 1`` nodes ``s_m = (m / M) t``; the equations are the boundary conditions and the matching
conditions ``Phi_m(x_m, p_m) = (x_{m+1}, p_{m+1})``, where ``Phi_m`` is the flow over one
segment (``dlpde.shared.ode.integrate``) and its Jacobian comes from the variational equation
``dPhi/ds = J_F Phi``, ``J_F = [[H_px, H_pp], [-H_xx, -H_xp]]``. Damped Newton steps (a
backtracking line search on the residual norm) solve every problem of the batch together.

Time marching and warm starts (Nakamura-Zimmerer, Gong & Kang 2021): with ``time_marching =
(f_1, ..., f_K = 1)`` the problem is solved for the horizons ``f_k t`` in turn, each solution
(shifted so that the current state ``x`` stays at the top, and extended at the far end by its
last node) starting the next solve; ``initial_guess`` warm-starts the first stage (e.g. from a
learned value function or from LQR).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch
from torch import func as tfunc

from dlpde.shared.autodiff import gradient
from dlpde.shared.ode import integrate
from dlpde.shared.random import make_generator

from ._characteristics import characteristic_field
from ._hamiltonians import _differentiable
from ._problems import HJProblem, _check_points, _times

__all__ = ["PontryaginSolution", "solve_pontryagin_bvp", "pontryagin_data_source"]


@dataclasses.dataclass
class PontryaginSolution:
    """Solutions of a batch of ``B`` boundary-value problems on ``M + 1`` nodes.

    ``value`` ``(B,)`` = ``u(x, t)``; ``gradient`` ``(B, d)`` = ``p(t)``; ``times`` ``(M+1, B)``
    = ``s_m``; ``states``, ``costates`` ``(M+1, B, d)``; ``values`` ``(M+1, B)`` = ``z(s_m)`` =
    ``u(x_m, s_m)``; ``converged`` ``(B,)``; ``residual`` ``(B,)`` (max-norm of the equations);
    ``iterations``: Newton iterations of the last stage.
    """

    value: torch.Tensor
    gradient: torch.Tensor
    times: torch.Tensor
    states: torch.Tensor
    costates: torch.Tensor
    values: torch.Tensor
    converged: torch.Tensor
    residual: torch.Tensor
    iterations: int


class _Shooting:
    """Residuals and Jacobians of the multiple-shooting equations for a subset of the batch."""

    def __init__(self, problem: HJProblem, segments: int, steps: int, method: str, jacobian_steps: int):
        self.hamiltonian = problem.hamiltonian
        self.initial = _differentiable(problem.initial)
        self.segments, self.steps, self.method = segments, steps, method
        self.jacobian_steps = jacobian_steps

        def single(y):
            return self.initial(y.unsqueeze(0)).squeeze(0)

        self.initial_hessian = tfunc.vmap(tfunc.hessian(single))

    def _integrate(self, start, scale, steps, with_jacobian):
        """Integrate every segment start ``(N, 2d)`` over one segment; with the sensitivity
        ``Phi`` (variational equation ``Phi' = J_F Phi``, ``Phi(0) = I``) when asked."""
        n2 = start.shape[1]
        d = n2 // 2
        hamiltonian = self.hamiltonian

        def field(_, y):
            x, p = y[:, :d], y[:, d:n2]
            out = scale[:, None] * torch.cat([hamiltonian.grad_p(x, p), -hamiltonian.grad_x(x, p)], -1)
            if not with_jacobian:
                return out
            hess = hamiltonian.hessian(x, p)
            jac = scale[:, None, None] * torch.cat([hess[:, d:], -hess[:, :d]], dim=1)
            sensitivity = y[:, n2:].reshape(-1, n2, n2)
            return torch.cat([out, (jac @ sensitivity).reshape(-1, n2 * n2)], -1)

        state = start
        if with_jacobian:
            eye = (
                torch.eye(n2, dtype=start.dtype, device=start.device)
                .reshape(1, -1)
                .expand(start.shape[0], -1)
            )
            state = torch.cat([start, eye], -1)
        with torch.no_grad():
            return integrate(field, state, 0.0, 1.0 / self.segments, method=self.method, steps=steps)

    def _flow(self, nodes, horizon, with_jacobian):
        """Flow of every segment: ``nodes`` ``(M+1, B, 2d)`` -> ``(M, B, 2d)`` (and the sensitivities
        ``(M, B, 2d, 2d)``, integrated with ``jacobian_steps`` steps: an inexact Newton Jacobian
        when fewer than ``steps``)."""
        m, b, n2 = nodes[:-1].shape
        start = nodes[:-1].reshape(m * b, n2)
        scale = horizon.repeat(m)
        if not with_jacobian:
            return self._integrate(start, scale, self.steps, False).reshape(m, b, n2), None
        end = self._integrate(start, scale, self.jacobian_steps, True)
        sensitivity = end[:, n2:].reshape(m, b, n2, n2)
        if self.jacobian_steps == self.steps:
            return end[:, :n2].reshape(m, b, n2), sensitivity
        return self._integrate(start, scale, self.steps, False).reshape(m, b, n2), sensitivity

    def residual(self, nodes, target, horizon, with_jacobian=False):
        """``(B, n)`` residuals (and ``(B, n, n)`` Jacobians) with ``n = 2d(M+1)``."""
        d = target.shape[1]
        foot = nodes[0]
        grad_g = gradient(self.initial, foot[:, :d], create_graph=False)
        flow, sensitivity = self._flow(nodes, horizon, with_jacobian)
        matching = (flow - nodes[1:]).permute(1, 0, 2).reshape(target.shape[0], -1)
        residual = torch.cat([foot[:, d:] - grad_g, matching, nodes[-1][:, :d] - target], -1)
        if not with_jacobian:
            return residual, None
        b, m = target.shape[0], self.segments
        n2, n = 2 * d, 2 * d * (m + 1)
        eye = torch.eye(n2, dtype=target.dtype, device=target.device)
        jacobian = torch.zeros(b, n, n, dtype=target.dtype, device=target.device)
        with torch.no_grad():
            jacobian[:, :d, :d] = -self.initial_hessian(foot[:, :d].detach())
        jacobian[:, :d, d:n2] = eye[:d, :d]
        for k in range(m):
            rows = slice(d + k * n2, d + (k + 1) * n2)
            jacobian[:, rows, k * n2 : (k + 1) * n2] = sensitivity[k]
            jacobian[:, rows, (k + 1) * n2 : (k + 2) * n2] = -eye
        jacobian[:, n - d :, m * n2 : m * n2 + d] = eye[:d, :d]
        return residual, jacobian


def _newton(shooting: _Shooting, nodes, target, horizon, max_iterations, tolerance, line_search_steps=10):
    """Damped Newton on every problem of the batch; a problem whose residual does not decrease
    after ``line_search_steps`` halvings is given up. Returns nodes, residual norms, iterations."""
    m1, b, n2 = nodes.shape
    nodes = nodes.clone()
    active = torch.arange(b, device=nodes.device)
    iterations = 0
    while iterations < max_iterations:
        iterations += 1
        current = nodes[:, active]
        residual, jacobian = shooting.residual(current, target[active], horizon[active], with_jacobian=True)
        still = torch.linalg.vector_norm(residual, ord=float("inf"), dim=-1) > tolerance
        if not bool(still.any()):
            break
        active, current, residual, jacobian = (
            active[still],
            current[:, still],
            residual[still],
            jacobian[still],
        )
        try:
            step = torch.linalg.solve(jacobian, -residual.unsqueeze(-1)).squeeze(-1)
        except RuntimeError:  # a singular Jacobian somewhere: least squares for the whole batch
            step = torch.linalg.lstsq(jacobian, -residual.unsqueeze(-1)).solution.squeeze(-1)
        step = torch.nan_to_num(step, nan=0.0, posinf=0.0, neginf=0.0)
        step = step.reshape(-1, m1, n2).permute(1, 0, 2)
        old = torch.linalg.vector_norm(residual, dim=-1)
        fraction = torch.ones(active.numel(), dtype=nodes.dtype, device=nodes.device)
        pending = torch.ones(active.numel(), dtype=torch.bool, device=nodes.device)
        for _ in range(line_search_steps):
            rows = pending.nonzero().squeeze(-1)
            trial = current[:, rows] + fraction[rows][None, :, None] * step[:, rows]
            trial_residual, _ = shooting.residual(trial, target[active[rows]], horizon[active[rows]])
            new = torch.linalg.vector_norm(trial_residual, dim=-1)
            ok = torch.isfinite(new) & (new <= (1 - 1e-4 * fraction[rows]) * old[rows])
            accepted = rows[ok]
            current[:, accepted] = trial[:, ok]
            pending[accepted] = False
            fraction[rows[~ok]] *= 0.5
            if not bool(pending.any()):
                break
        nodes[:, active] = current
        active = active[~pending]  # no decrease along the Newton direction: give up
        if active.numel() == 0:
            break
    final, _ = shooting.residual(nodes, target, horizon)
    residual_norm = torch.linalg.vector_norm(final, ord=float("inf"), dim=-1)
    return nodes, residual_norm, iterations


def _extend(nodes, old_horizon, new_horizon):
    """Warm start for a longer horizon: the old path keeps the current state at the top; the
    added stretch at the far end (near ``s = 0``) repeats the old foot node."""
    m1 = nodes.shape[0]
    taus = torch.linspace(0, 1, m1, dtype=nodes.dtype, device=nodes.device)
    s_old = taus[:, None] * new_horizon[None, :] - (new_horizon - old_horizon)[None, :]
    position = (s_old / old_horizon[None, :]).clamp(0, 1) * (m1 - 1)
    lower = position.floor().long().clamp(max=m1 - 2)
    weight = (position - lower).unsqueeze(-1)
    columns = torch.arange(nodes.shape[1], device=nodes.device)[None, :].expand(m1, -1)
    return (1 - weight) * nodes[lower, columns] + weight * nodes[lower + 1, columns]


def solve_pontryagin_bvp(
    problem: HJProblem,
    x: torch.Tensor,
    t,
    *,
    segments: int = 8,
    steps_per_segment: int = 4,
    method: str = "rk4",
    jacobian_steps: int | None = None,
    initial_guess: torch.Tensor | None = None,
    time_marching: Sequence[float] = (1.0,),
    max_iterations: int = 30,
    tolerance: float = 1e-9,
) -> PontryaginSolution:
    """Solve the Pontryagin boundary-value problems at the points ``(x_b, t_b)``.

    Args:
        problem: the ``HJProblem`` (its Hamiltonian must be twice differentiable, with a
            ``hessian``; ``g`` composable with ``torch.func``).
        x: ``(B, d)`` states; t: a number or ``(B,)`` tensor of horizons ``> 0``.
        segments, steps_per_segment, method: ``M`` shooting segments, each integrated with
            ``steps_per_segment`` steps of ``method``.
        jacobian_steps: steps for the sensitivities of the Newton Jacobian (default
            ``steps_per_segment``); fewer make each iteration cheaper (an inexact Newton method,
            converging to the same solution, typically in a few more iterations).
        initial_guess: ``(M + 1, B, 2d)`` nodes ``(x_m, p_m)`` at ``s_m = (m/M) f_1 t`` for the
            first stage; default the constant path ``x_m = x``, ``p_m = grad g(x)``.
        time_marching: increasing fractions ending at 1: the horizons solved in turn.
        max_iterations, tolerance: Newton iterations per stage and the max-norm tolerance on the
            equations.

    Returns a ``PontryaginSolution`` (computed in the dtype of ``x``; use float64).
    """
    if not isinstance(problem, HJProblem):
        raise TypeError(f"problem must be an HJProblem, got {type(problem).__name__}")
    _check_points(x, problem.dim)
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains non-finite values")
    t = _times(t, x)
    if not bool((t > 0).all()):
        raise ValueError("t must be positive")
    for name, value in (
        ("segments", segments),
        ("steps_per_segment", steps_per_segment),
        ("max_iterations", max_iterations),
        ("jacobian_steps", steps_per_segment if jacobian_steps is None else jacobian_steps),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    fractions = [float(f) for f in time_marching]
    if (
        not fractions
        or abs(fractions[-1] - 1.0) > 1e-12
        or any(not 0 <= a < b for a, b in zip([0.0] + fractions[:-1], fractions))
    ):
        raise ValueError(
            f"time_marching must be increasing fractions in (0, 1] ending at 1, got {time_marching!r}"
        )
    b, d = x.shape
    x = x.detach()
    jacobian_steps = steps_per_segment if jacobian_steps is None else jacobian_steps
    shooting = _Shooting(problem, segments, steps_per_segment, method, jacobian_steps)
    if initial_guess is None:
        costate = gradient(shooting.initial, x, create_graph=False)
        nodes = torch.cat([x, costate], -1).unsqueeze(0).repeat(segments + 1, 1, 1)
    else:
        nodes = torch.as_tensor(initial_guess).to(x)
        if nodes.shape != (segments + 1, b, 2 * d):
            raise ValueError(
                f"initial_guess must have shape ({segments + 1}, {b}, {2 * d}), got {tuple(nodes.shape)}"
            )
    previous = None
    for fraction in fractions:
        horizon = fraction * t
        if previous is not None:
            nodes = _extend(nodes, previous, horizon)
        nodes, residual, iterations = _newton(shooting, nodes, x, horizon, max_iterations, tolerance)
        previous = horizon
    states, costates = nodes[..., :d], nodes[..., d:]
    with torch.no_grad():
        start = torch.cat(
            [nodes[:-1].reshape(-1, 2 * d), torch.zeros(segments * b, 1, dtype=x.dtype, device=x.device)], -1
        )
        field = characteristic_field(problem.hamiltonian, d, scale=t.repeat(segments))
        end = integrate(field, start, 0.0, 1.0 / segments, method=method, steps=steps_per_segment)
        increments = end[:, -1].reshape(segments, b)
        values = problem.initial(states[0]).unsqueeze(0) + torch.cat(
            [torch.zeros(1, b, dtype=x.dtype, device=x.device), increments.cumsum(0)]
        )
    times = torch.linspace(0, 1, segments + 1, dtype=x.dtype, device=x.device)[:, None] * t[None, :]
    converged = residual <= tolerance
    return PontryaginSolution(
        value=values[-1],
        gradient=costates[-1],
        times=times,
        states=states,
        costates=costates,
        values=values,
        converged=converged,
        residual=residual,
        iterations=iterations,
    )


def pontryagin_data_source(
    problem: HJProblem,
    *,
    n_starts: int = 4,
    along_path: bool = False,
    warm_start: Callable | None = None,
    seed: int = 0,
    **solver_options,
) -> Callable:
    """A data source ``(x, t) -> dict(x, t, value, gradient)`` for ``ValueGradientSolver``.

    At every point it solves the boundary-value problem from a first guess (the constant path, or
    ``warm_start(x, horizon) -> (M + 1, B, 2d)`` nodes for the first horizon of the time marching,
    e.g. from LQR or a learned value function) and from ``n_starts`` guesses whose foot is a random
    point of the box (straight paths with ``p = grad g(foot)``), keeps the converged solution of
    least value (the viscosity solution selects the minimum where characteristics cross) and drops
    points where no start converged.
    ``along_path=True`` returns the data at every node of the selected paths (optimal
    trajectories are optimal from each of their points), otherwise at ``(x, t)`` only.
    ``solver_options`` go to ``solve_pontryagin_bvp``. The numbers of points asked and kept are
    recorded in ``source.log``.
    """
    generator = make_generator(seed)
    log: list[dict] = []

    def source(x, t):
        _check_points(x, problem.dim)
        t = _times(t, x)
        segments = solver_options.get("segments", 8)
        best = None
        first = solver_options.get("time_marching", (1.0,))[0]
        guesses = [None if warm_start is None else warm_start(x, first * t)]
        d = problem.dim
        for _ in range(n_starts):
            feet = problem.sample(x.shape[0], generator, x.dtype, "cpu", initial=True).to(x.device)
            costate = gradient(_differentiable(problem.initial), feet, create_graph=False)
            taus = torch.linspace(0, 1, segments + 1, dtype=x.dtype, device=x.device)[:, None, None]
            path = (1 - taus) * feet + taus * x
            guesses.append(torch.cat([path, costate.expand_as(path)], -1))
        for guess in guesses:
            solution = solve_pontryagin_bvp(problem, x, t, initial_guess=guess, **solver_options)
            value = torch.where(
                solution.converged, solution.value, torch.full_like(solution.value, float("inf"))
            )
            if best is None:
                best, best_value = solution, value
                continue
            better = value < best_value
            best_value = torch.where(better, value, best_value)
            for name in ("states", "costates", "values"):
                field = getattr(best, name)
                mask = better.view(1, -1, *([1] * (field.dim() - 2)))
                setattr(best, name, torch.where(mask, getattr(solution, name), field))
        ok = torch.isfinite(best_value)
        log.append({"asked": int(x.shape[0]), "kept": int(ok.sum())})
        if along_path:
            keep = ok.unsqueeze(0).expand(segments + 1, -1)
            return {
                "x": best.states[keep].reshape(-1, d),
                "t": best.times[keep],
                "value": best.values[keep],
                "gradient": best.costates[keep].reshape(-1, d),
            }
        return {"x": x[ok], "t": t[ok], "value": best.values[-1][ok], "gradient": best.costates[-1][ok]}

    source.log = log
    return source
