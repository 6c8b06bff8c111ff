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
from dlpde.shared.checks import (
    NonFiniteResultError,
    check_bool,
    check_callable,
    check_choice,
    check_int,
    check_positive,
    check_positive_int,
    check_real,
    check_tensor,
)
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
    ``iterations``: Newton iterations of the last stage; ``segments`` ``(B,)``: the shooting
    segments each row needed (``M`` times a power of 2 after refinement; the nodes reported are
    those at the ``M + 1`` original node times).
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
    segments: torch.Tensor | None = None


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
        still = ~(torch.linalg.vector_norm(residual, ord=float("inf"), dim=-1) <= tolerance)  # NaN: not done
        still &= torch.isfinite(residual).all(-1)  # a non-finite shooting is left to the refinement
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


def _path_values(problem, nodes, horizon, method, steps):
    """``z(s_m) = g(x_0) + int_0^{s_m} (p . H_p - H) ds`` at the nodes ``(M+1, B, 2d)``."""
    m1, b, n2 = nodes.shape
    d, segments = n2 // 2, m1 - 1
    with torch.no_grad():
        start = torch.cat(
            [
                nodes[:-1].reshape(-1, n2),
                torch.zeros(segments * b, 1, dtype=nodes.dtype, device=nodes.device),
            ],
            -1,
        )
        field = characteristic_field(problem.hamiltonian, d, scale=horizon.repeat(segments))
        end = integrate(field, start, 0.0, 1.0 / segments, method=method, steps=steps)
        increments = end[:, -1].reshape(segments, b)  # steps: 4x the shooting's (cheap, no Jacobian)
        foot = problem.initial(nodes[0, :, :d]).unsqueeze(0)
        return torch.cat([foot, foot + increments.cumsum(0)])


def _solve_refined(problem, nodes, x, horizon, options):
    """Newton on every row, then segment refinement: rows whose shooting is non-finite, did not
    converge, or whose flow moves by more than ``refinement_tolerance * (1 + |nodes|)`` when the
    integration steps are doubled are solved again on twice as many segments (the new nodes
    halfway between the old ones), up to ``max_refinements`` times. Returns the nodes at the
    ``M + 1`` original node times, the residuals, iterations, segments used per row and the path
    values ``z`` at the nodes."""
    segments, method = options["segments"], options["method"]
    steps, jacobian_steps = options["steps_per_segment"], options["jacobian_steps"]
    b = x.shape[0]
    residual = torch.full((b,), float("inf"), dtype=x.dtype, device=x.device)
    used = torch.full((b,), segments, dtype=torch.long, device=x.device)
    values = torch.full((segments + 1, b), float("inf"), dtype=x.dtype, device=x.device)
    nodes = nodes.clone()
    rows = torch.arange(b, device=x.device)
    level_nodes, level_segments, iterations = nodes, segments, 0
    for refinement in range(options["max_refinements"] + 1):
        shooting = _Shooting(problem, level_segments, steps, method, jacobian_steps)
        solved, row_residual, iterations = _newton(
            shooting, level_nodes, x[rows], horizon[rows], options["max_iterations"], options["tolerance"]
        )
        finite = torch.isfinite(solved).all(-1).all(0) & torch.isfinite(row_residual)
        level_nodes = torch.where(finite[None, :, None], solved, level_nodes)
        every = level_segments // segments
        nodes[:, rows] = level_nodes[::every]
        residual[rows] = torch.where(finite, row_residual, torch.full_like(row_residual, float("inf")))
        used[rows] = level_segments
        bad = ~finite | ~(row_residual <= options["tolerance"])
        if bool((~bad).any()):
            good = (~bad).nonzero().squeeze(-1)
            if options["refinement_tolerance"] is not None:
                fine = _Shooting(problem, level_segments, 2 * steps, method, jacobian_steps)
                change, _ = fine.residual(level_nodes[:, good], x[rows[good]], horizon[rows[good]])
                scale = 1 + level_nodes[:, good].abs().amax((0, 2))
                inaccurate = ~(
                    torch.linalg.vector_norm(change, ord=float("inf"), dim=-1)
                    <= options["refinement_tolerance"] * scale
                )
                bad[good[inaccurate]] = True
                good = good[~inaccurate]
            if good.numel():
                path = _path_values(problem, level_nodes[:, good], horizon[rows[good]], method, 4 * steps)
                values[:, rows[good]] = path[::every]
        if not bool(bad.any()) or refinement == options["max_refinements"]:
            if bool(bad.any()):  # the last try of the rows that never passed
                last = bad.nonzero().squeeze(-1)
                path = _path_values(problem, level_nodes[:, last], horizon[rows[last]], method, 4 * steps)
                values[:, rows[last]] = path[::every]
            break
        old = level_nodes[:, bad]
        middle = 0.5 * (old[:-1] + old[1:])
        level_nodes = torch.stack([old[:-1], middle], 1).reshape(-1, *old.shape[1:])
        level_nodes = torch.cat([level_nodes, old[-1:]])
        rows, level_segments = rows[bad], 2 * level_segments
    return nodes, residual, iterations, used, values


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
    max_refinements: int = 4,
    refinement_tolerance: float | None = 1e-6,
    non_finite: str = "raise",
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
        max_refinements, refinement_tolerance: segment refinement (per row, per stage): a row
            whose shooting is non-finite, that did not converge, or whose converged flow moves
            by more than ``refinement_tolerance * (1 + |nodes|)`` when the steps per segment are
            doubled (an integrator too coarse for the problem's stiffness, which can converge to
            a wrong discrete solution) is solved again on twice as many segments, up to
            ``max_refinements`` times (``refinement_tolerance=None``: no accuracy check).
        non_finite: ``"raise"`` (a ``NonFiniteResultError`` when a row's shooting is still
            non-finite after the refinements) or ``"mark"`` (such rows get ``converged=False``
            and an infinite ``residual``; their value is then ``inf``).

    Points with ``t = 0`` are answered by the terminal cost: ``u = g(x)``, ``grad u = grad g(x)``.

    Returns a ``PontryaginSolution`` (computed in the dtype of ``x``; use float64); its
    ``segments`` field holds the segments each row used in the last stage.
    """
    if not isinstance(problem, HJProblem):
        raise TypeError(f"problem must be an HJProblem, got {type(problem).__name__}")
    x = check_tensor(x, "x", dim=2)
    _check_points(x, problem.dim)
    t = _times(t, x)
    for name, value in (
        ("segments", segments),
        ("steps_per_segment", steps_per_segment),
        ("max_iterations", max_iterations),
        ("jacobian_steps", steps_per_segment if jacobian_steps is None else jacobian_steps),
    ):
        check_positive_int(value, name)
    method = check_choice(method, "method", ("euler", "heun", "rk4"))
    tolerance = check_positive(tolerance, "tolerance")
    max_refinements = check_int(max_refinements, "max_refinements", 0, 10)
    if refinement_tolerance is not None:
        refinement_tolerance = check_positive(refinement_tolerance, "refinement_tolerance")
    non_finite = check_choice(non_finite, "non_finite", ("raise", "mark"))
    if isinstance(time_marching, (str, bytes)) or not isinstance(time_marching, Sequence):
        raise TypeError(f"time_marching must be a sequence of fractions, got {type(time_marching).__name__}")
    fractions = [check_real(f, "time_marching fraction") for f in time_marching]
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
    initial = _differentiable(problem.initial)
    if initial_guess is None:
        costate = gradient(initial, x, create_graph=False)
        nodes = torch.cat([x, costate], -1).unsqueeze(0).repeat(segments + 1, 1, 1)
    else:
        nodes = check_tensor(torch.as_tensor(initial_guess), "initial_guess", dim=3).to(x)
        if nodes.shape != (segments + 1, b, 2 * d):
            raise ValueError(
                f"initial_guess must have shape ({segments + 1}, {b}, {2 * d}), got {tuple(nodes.shape)}"
            )
    options = {
        "segments": segments,
        "method": method,
        "steps_per_segment": steps_per_segment,
        "jacobian_steps": jacobian_steps,
        "max_iterations": max_iterations,
        "tolerance": tolerance,
        "max_refinements": max_refinements,
        "refinement_tolerance": refinement_tolerance,
    }
    moving = t > 0  # t = 0: the terminal cost answers
    residual = torch.zeros(b, dtype=x.dtype, device=x.device)
    used = torch.full((b,), segments, dtype=torch.long, device=x.device)
    iterations = 0
    with torch.no_grad():
        values = problem.initial(x).unsqueeze(0).repeat(segments + 1, 1)
    if not bool(moving.all()):
        nodes = nodes.clone()
        nodes[:, ~moving] = torch.cat([x[~moving], gradient(initial, x[~moving], create_graph=False)], -1)
    if bool(moving.any()):
        rows = moving.nonzero().squeeze(-1)
        current, xs, ts = nodes[:, rows].clone(), x[rows], t[rows]
        previous = None
        for fraction in fractions:
            horizon = fraction * ts
            if previous is not None:
                current = _extend(current, previous, horizon)
            current, stage_residual, iterations, stage_segments, stage_values = _solve_refined(
                problem, current, xs, horizon, options
            )
            previous = horizon
        nodes = nodes.clone()
        nodes[:, rows], residual[rows], used[rows] = current, stage_residual, stage_segments
        values[:, rows] = stage_values
    unfinished = ~torch.isfinite(residual)
    if bool(unfinished.any()) and non_finite == "raise":
        raise NonFiniteResultError(
            f"the shooting of {int(unfinished.sum())} of {b} boundary-value problems stayed non-finite after "
            f"{max_refinements} segment refinements (up to {int(used.max())} segments); use a better "
            "initial_guess, more steps_per_segment, or non_finite='mark'"
        )
    values[:, unfinished] = float("inf")
    states, costates = nodes[..., :d], nodes[..., d:]
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
        segments=used,
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
    points where no start converged. Segment refinement (``solve_pontryagin_bvp``'s
    ``max_refinements``) applies to the first guess only; non-finite shootings are dropped
    (``non_finite="mark"``).
    ``along_path=True`` returns the data at every node of the selected paths (optimal
    trajectories are optimal from each of their points), otherwise at ``(x, t)`` only.
    ``solver_options`` go to ``solve_pontryagin_bvp``. The numbers of points asked and kept are
    recorded in ``source.log``.
    """
    if not isinstance(problem, HJProblem):
        raise TypeError(f"problem must be an HJProblem, got {type(problem).__name__}")
    n_starts = check_int(n_starts, "n_starts", minimum=0)
    along_path = check_bool(along_path, "along_path")
    if warm_start is not None:
        check_callable(warm_start, "warm_start")
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
        options = {"non_finite": "mark", **solver_options}
        for k, guess in enumerate(guesses):
            # segment refinement for the first guess only: a random start that fails is dropped
            extra = {} if k == 0 else {"max_refinements": 0}
            solution = solve_pontryagin_bvp(problem, x, t, initial_guess=guess, **{**options, **extra})
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
