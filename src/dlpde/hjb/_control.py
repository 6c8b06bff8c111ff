"""Control-affine optimal control, its Hamilton-Jacobi-Bellman equation, and closed-loop tests.

The problem ``min_v int_0^T [ q(x) + v^T R v / 2 ] dt + phi(x(T))`` with ``x' = f(x) + B(x) v``
has the value function ``V(x, tau)`` (``tau`` = time to go) solving
``V_tau + H(x, grad V) = 0``, ``V(x, 0) = phi(x)``, with the time-to-go Hamiltonian

    H(x, p) = -p . f(x) - q(x) + p^T B(x) R^{-1} B(x)^T p / 2,

and the optimal feedback ``v = -R^{-1} B(x)^T grad V(x, T - time)``. Linearising ``f`` and taking
the quadratic parts of ``q`` and ``phi`` at ``x = 0`` gives the LQR problem
(``ControlAffineProblem.lqr_problem``). ``simulate_closed_loop`` integrates the closed loop of a
feedback and its cost. The rigid-body attitude problem is the 6-state example of
Nakamura-Zimmerer, Gong & Kang (SISC 2021).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import func as tfunc

from dlpde.shared.checks import (
    NonFiniteResultError,
    check_callable,
    check_finite_result,
    check_int,
    check_positive,
    check_positive_int,
    check_tensor,
)
from dlpde.shared.ode import integrate

from ._hamiltonians import Hamiltonian, _check_pair, _real_tensor, _symmetric_psd
from ._problems import HJProblem, lqr_problem

__all__ = [
    "ControlAffineProblem",
    "rigid_body_problem",
    "simulate_closed_loop",
    "value_feedback",
    "lqr_warm_start",
]


class _ControlHamiltonian(Hamiltonian):
    """``H(x, p) = -p . f(x) - q(x) + |R^{-1/2} B(x)^T p|^2 / 2`` of a ``ControlAffineProblem``."""

    convex = True
    state_dependent = True

    def __init__(self, problem: ControlAffineProblem):
        self.problem = problem
        self.dim = problem.dim

    def value(self, x, p):
        _check_pair(x, p)
        problem = self.problem
        bp = torch.einsum("bij,bi->bj", problem.input_matrix(x), p)  # B^T p, (B, m)
        quadratic = (bp * (bp @ problem.control_weight_inverse.to(x))).sum(-1)
        return -(p * problem.drift(x)).sum(-1) - problem.state_cost(x) + 0.5 * quadratic

    def grad_p(self, x, p):
        _check_pair(x, p)
        problem = self.problem
        matrix = problem.input_matrix(x)
        bp = torch.einsum("bij,bi->bj", matrix, p)
        return -problem.drift(x) + torch.einsum(
            "bij,bj->bi", matrix, bp @ problem.control_weight_inverse.to(x)
        )


class ControlAffineProblem:
    """``min_v int_0^T [q(x) + v^T R v/2] dt + phi(x(T))``, ``x' = f(x) + B(x) v``.

    Args:
        drift: ``f: (N, d) -> (N, d)``; input_matrix: ``B: (N, d) -> (N, d, m)`` or a constant
            ``(d, m)`` matrix; state_cost ``q`` and terminal_cost ``phi``: ``(N, d) -> (N,)``;
            control_weight: ``R``, ``(m, m)`` symmetric positive definite. All torch functions
            composable with ``torch.func`` (the boundary-value solver differentiates them twice).
        dim, control_dim: ``d`` and ``m``; horizon: ``T``; radius: the half-widths of the box of
            initial states (a number or ``d`` numbers).
    """

    def __init__(
        self,
        drift: Callable,
        input_matrix,
        state_cost: Callable,
        control_weight,
        terminal_cost: Callable,
        *,
        dim: int,
        control_dim: int,
        horizon: float,
        radius=1.0,
        name: str = "control",
    ):
        for label, function in (
            ("drift", drift),
            ("state_cost", state_cost),
            ("terminal_cost", terminal_cost),
        ):
            check_callable(function, label)
        dim, control_dim = check_positive_int(dim, "dim"), check_positive_int(control_dim, "control_dim")
        self.drift_function, self.state_cost, self.terminal_cost = drift, state_cost, terminal_cost
        if callable(input_matrix):
            self._input = input_matrix
        else:
            constant = _real_tensor(input_matrix, "input_matrix", shape=(dim, control_dim)).to(torch.float64)
            self._input = lambda x: constant.to(x).expand(x.shape[0], -1, -1)
        weight = _symmetric_psd(control_weight, "control_weight", definite=True)
        self.control_weight = weight.to(torch.float64)
        if self.control_weight.shape != (control_dim, control_dim):
            raise ValueError(
                f"control_weight must have shape ({control_dim}, {control_dim}), "
                f"got {tuple(self.control_weight.shape)}"
            )
        self.control_weight_inverse = torch.linalg.inv(self.control_weight)
        if isinstance(radius, tuple):
            if len(radius) not in (1, dim):
                raise ValueError(
                    f"radius must be a positive number or {dim} positive numbers, got {radius!r}"
                )
            radius = tuple(check_positive(r, "radius") for r in radius)
        else:
            radius = check_positive(radius, "radius")
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        self.dim, self.control_dim = dim, control_dim
        self.horizon, self.radius, self.name = check_positive(horizon, "horizon"), radius, name

    def drift(self, x: torch.Tensor) -> torch.Tensor:
        return self.drift_function(x)

    def input_matrix(self, x: torch.Tensor) -> torch.Tensor:
        return self._input(x)

    def _check(self, x, other, name, columns):
        check_tensor(x, "x", shape=(None, self.dim), finite=False, nonempty=False)
        check_tensor(other, name, shape=(x.shape[0], columns), finite=False, nonempty=False)

    def dynamics(self, x: torch.Tensor, control: torch.Tensor) -> torch.Tensor:
        """``f(x) + B(x) v``, shape ``(N, d)``."""
        self._check(x, control, "control", self.control_dim)
        return self.drift(x) + torch.einsum("bij,bj->bi", self.input_matrix(x), control)

    def running_cost(self, x: torch.Tensor, control: torch.Tensor) -> torch.Tensor:
        """``q(x) + v^T R v / 2``, shape ``(N,)``."""
        self._check(x, control, "control", self.control_dim)
        return self.state_cost(x) + 0.5 * ((control @ self.control_weight.to(x)) * control).sum(-1)

    def optimal_control(self, x: torch.Tensor, costate: torch.Tensor) -> torch.Tensor:
        """``v = -R^{-1} B(x)^T p``, shape ``(N, m)``."""
        self._check(x, costate, "costate", self.dim)
        bp = torch.einsum("bij,bi->bj", self.input_matrix(x), costate)
        return -bp @ self.control_weight_inverse.to(x)

    def hamiltonian(self) -> Hamiltonian:
        return _ControlHamiltonian(self)

    def hj_problem(self) -> HJProblem:
        """The HJB equation in time to go: ``V_tau + H(x, grad V) = 0``, ``V(x, 0) = phi(x)``."""
        return HJProblem(
            self.hamiltonian(),
            self.terminal_cost,
            dim=self.dim,
            radius=self.radius,
            horizon=self.horizon,
            name=self.name,
        )

    def linearization(self) -> dict[str, torch.Tensor]:
        """``A = df/dx(0)``, ``B = B(0)``, ``Q = Hess q(0)``, ``R``, ``P0 = Hess phi(0)`` (float64)."""
        zero = torch.zeros(self.dim, dtype=torch.float64)

        def single(function):
            return lambda y: function(y.unsqueeze(0)).squeeze(0)

        return {
            "A": tfunc.jacrev(single(self.drift))(zero),
            "B": self.input_matrix(zero[None])[0],
            "Q": tfunc.hessian(single(self.state_cost))(zero),
            "R": self.control_weight,
            "P0": tfunc.hessian(single(self.terminal_cost))(zero),
        }

    def lqr_problem(self) -> HJProblem:
        """The LQR problem of the linearisation at 0 (exact value by the Riccati equation)."""
        lin = self.linearization()
        return lqr_problem(
            lin["A"], lin["B"], lin["Q"], lin["R"], lin["P0"], horizon=self.horizon, radius=self.radius
        )


def value_feedback(problem: ControlAffineProblem, value_gradient: Callable, horizon: float | None = None):
    """The feedback ``v(x, time) = -R^{-1} B(x)^T grad V(x, T - time)`` of a value function
    given by its gradient ``value_gradient(x, tau) -> (N, d)`` (e.g. ``solver.gradient`` or an
    ``HJProblem``'s ``exact_gradient``)."""
    _check_problem(problem)
    check_callable(value_gradient, "value_gradient")
    horizon = problem.horizon if horizon is None else check_positive(horizon, "horizon")

    def feedback(x, time):
        to_go = (horizon - time).clamp(0.0, horizon)
        return problem.optimal_control(x, value_gradient(x, to_go))

    return feedback


def simulate_closed_loop(
    problem: ControlAffineProblem,
    feedback: Callable,
    x0: torch.Tensor,
    horizon=None,
    *,
    steps: int = 200,
    method: str = "rk4",
    saves: int = 101,
) -> dict:
    """Integrate ``x' = f(x) + B(x) v(x, time)`` from ``x0`` over ``[0, horizon]`` and the cost
    ``J = int_0^T [q(x) + v^T R v/2] dt + phi(x(T))``.

    ``feedback(x, time) -> (N, m)`` with ``time`` a ``(N,)`` tensor; ``horizon``: a number or a
    ``(N,)`` tensor (per trajectory; default the problem's ``T``). The system is integrated in
    the rescaled time ``time = s * horizon``, ``s in [0, 1]``, with ``steps`` steps of ``method``.
    Returns ``times`` ``(K, N)``, ``states`` ``(K, N, d)``, ``controls`` ``(K, N, m)`` at ``K =
    saves`` equispaced times and ``cost`` ``(N,)``.
    """
    _check_problem(problem)
    check_callable(feedback, "feedback")
    check_tensor(x0, "x0", shape=(None, problem.dim))
    saves = check_int(saves, "saves", minimum=2)
    steps = check_positive_int(steps, "steps")
    horizon = _per_row_horizon(problem.horizon if horizon is None else horizon, x0)
    d, m = problem.dim, problem.control_dim

    def controls_at(x, time):
        control = feedback(x, time)
        if not isinstance(control, torch.Tensor) or control.shape != (x.shape[0], m):
            raise ValueError(
                f"feedback(x, time) must return a ({x.shape[0]}, {m}) tensor, got "
                f"{tuple(control.shape) if isinstance(control, torch.Tensor) else type(control).__name__}"
            )
        return control

    def field(s, y):
        x = y[:, :d]
        time = s * horizon
        control = controls_at(x, time)
        rate = torch.cat([problem.dynamics(x, control), problem.running_cost(x, control).unsqueeze(-1)], -1)
        return horizon[:, None] * rate

    y0 = torch.cat([x0, torch.zeros_like(x0[:, :1])], -1)
    fractions = [k / (saves - 1) for k in range(saves)]
    path = integrate(field, y0, 0.0, 1.0, method=method, steps=steps, save_at=fractions)
    states = path[..., :d]
    times = torch.tensor(fractions, dtype=x0.dtype, device=x0.device)[:, None] * horizon[None, :]
    controls = torch.stack([controls_at(states[k], times[k]) for k in range(saves)])
    cost = path[-1, :, d] + problem.terminal_cost(states[-1])
    hint = "the closed loop blew up or the feedback is non-finite; raise steps or check the feedback"
    check_finite_result(path, "closed-loop state", hint=hint)
    check_finite_result(controls, "closed-loop control", hint=hint)
    check_finite_result(cost, "closed-loop cost", hint=hint)
    return {"times": times, "states": states, "controls": controls.detach(), "cost": cost.detach()}


def _check_problem(problem) -> None:
    if not isinstance(problem, ControlAffineProblem):
        raise TypeError(f"problem must be a ControlAffineProblem, got {type(problem).__name__}")


def _per_row_horizon(horizon, x: torch.Tensor) -> torch.Tensor:
    """A positive number or ``(N,)`` tensor of positive numbers as an ``(N,)`` tensor like ``x``."""
    if isinstance(horizon, torch.Tensor) and horizon.dim() > 0:
        horizon = check_tensor(horizon, "horizon", shape=(x.shape[0],)).to(x)
        if not bool((horizon > 0).all()):
            raise ValueError("horizon must be positive: a number or one per trajectory")
        return horizon
    return torch.full((x.shape[0],), check_positive(horizon, "horizon"), dtype=x.dtype, device=x.device)


def rigid_body_problem(horizon: float = 20.0) -> ControlAffineProblem:
    """Attitude control of a rigid body with momentum wheels (Nakamura-Zimmerer, Gong & Kang 2021).

    State ``x = (v, w)``: Euler angles ``v = (phi, theta, psi)`` and body rates ``w``;
    ``v' = E(v) w``, ``J w' = S(w) R(v) h + B u`` with ``J^{-1} = diag(1/2, 1/3, 1/4)``,
    ``B = [[1, 1/20, 1/10], [1/15, 1, 1/10], [1/10, 1/15, 1]]``, ``h = (1, 1, 1)``,
    ``S(w) a = a x w``; cost ``q = W1/2 |v|^2 + W2/2 |w|^2``, ``R = W3 I``,
    ``phi = W4/2 |v|^2 + W5/2 |w|^2`` with ``(W1, ..., W5) = (1, 10, 0.5, 1, 1)``; initial states
    ``|v_i| <= pi/3``, ``|w_i| <= pi/4``.
    """
    inertia_inverse = torch.tensor([0.5, 1.0 / 3.0, 0.25], dtype=torch.float64)
    wheels = torch.tensor(
        [[1.0, 1 / 20, 1 / 10], [1 / 15, 1.0, 1 / 10], [1 / 10, 1 / 15, 1.0]], dtype=torch.float64
    )
    momentum = torch.ones(3, dtype=torch.float64)
    weights = (1.0, 10.0, 0.5, 1.0, 1.0)

    def drift(x):
        phi, theta, psi = x[:, 0], x[:, 1], x[:, 2]
        w = x[:, 3:]
        sf, cf, st, ct, ss, cs = phi.sin(), phi.cos(), theta.sin(), theta.cos(), psi.sin(), psi.cos()
        tt = st / ct
        angle_rates = torch.stack(
            [
                w[:, 0] + sf * tt * w[:, 1] + cf * tt * w[:, 2],
                cf * w[:, 1] - sf * w[:, 2],
                (sf * w[:, 1] + cf * w[:, 2]) / ct,
            ],
            -1,
        )
        h = momentum.to(x)
        rotation = torch.stack(
            [
                torch.stack([ct * cs, ct * ss, -st], -1),
                torch.stack([sf * st * cs - cf * ss, sf * st * ss + cf * cs, ct * sf], -1),
                torch.stack([cf * st * cs + sf * ss, cf * st * ss - sf * cs, ct * cf], -1),
            ],
            -2,
        )
        body_momentum = rotation @ h  # R(v) h, (N, 3)
        torque = torch.linalg.cross(body_momentum, w)  # S(w) R(v) h
        return torch.cat([angle_rates, torque * inertia_inverse.to(x)], -1)

    input_matrix = torch.cat([torch.zeros(3, 3, dtype=torch.float64), inertia_inverse[:, None] * wheels], 0)

    def state_cost(x):
        return 0.5 * weights[0] * x[:, :3].square().sum(-1) + 0.5 * weights[1] * x[:, 3:].square().sum(-1)

    def terminal_cost(x):
        return 0.5 * weights[3] * x[:, :3].square().sum(-1) + 0.5 * weights[4] * x[:, 3:].square().sum(-1)

    radius = (math.pi / 3,) * 3 + (math.pi / 4,) * 3
    return ControlAffineProblem(
        drift,
        input_matrix,
        state_cost,
        weights[2] * torch.eye(3, dtype=torch.float64),
        terminal_cost,
        dim=6,
        control_dim=3,
        horizon=horizon,
        radius=radius,
        name="rigid_body",
    )


def lqr_warm_start(problem: ControlAffineProblem, segments: int, steps: int = 200) -> Callable:
    """Initial guesses for ``solve_pontryagin_bvp`` from the LQR feedback of the linearisation:
    ``guess(x, horizon) -> (segments + 1, B, 2d)`` holds, at the nodes ``s_m = (m / M) horizon``
    (time to go), the closed-loop LQR states and the LQR costates ``P(s_m) x``. ``horizon`` may
    differ per point (a ``(B,)`` tensor)."""
    _check_problem(problem)
    segments = check_positive_int(segments, "segments")
    steps = check_positive_int(steps, "steps")
    lqr = problem.lqr_problem()

    def guess(x, horizon):
        check_tensor(x, "x", shape=(None, problem.dim))
        horizon = _per_row_horizon(horizon, x)

        def scaled_feedback(y, time):  # time runs over [0, horizon_b]; LQR time to go = horizon_b - time
            return problem.optimal_control(y, lqr.exact_gradient(y, (horizon - time).clamp_min(0)))

        run, count = None, steps
        for _ in range(4):  # a closed loop too stiff for the steps blows up: refine
            try:
                run = simulate_closed_loop(
                    problem, scaled_feedback, x, horizon, steps=count, saves=segments + 1
                )
                break
            except NonFiniteResultError:
                count *= 4
        else:
            raise NonFiniteResultError(
                f"the LQR warm start is non-finite: its closed loop blew up even with {count // 4} steps "
                "(the linearisation is too stiff for the integrator; raise steps)"
            )
        states = run["states"].flip(0)  # node m: time to go s_m
        to_go = run["times"].flip(0)
        to_go = horizon[None, :] - to_go
        costates = torch.stack(
            [lqr.exact_gradient(states[m], to_go[m].clamp(0, lqr.horizon)) for m in range(segments + 1)]
        )
        out = torch.cat([states, costates], -1)
        check_finite_result(out, "LQR warm start", hint="the Riccati solution or the closed loop overflowed")
        return out

    return guess
