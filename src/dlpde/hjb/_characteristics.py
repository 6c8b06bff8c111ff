"""Characteristics of ``u_t + H(x, grad u) = 0``, batched over trajectories.

Along a characteristic (Evans, *PDE*, section 3.2)

    x' = H_p(x, p),    p' = -H_x(x, p),    z' = p . H_p(x, p) - H(x, p),

and, while ``u`` is smooth, ``p(s) = grad u(x(s), s)`` and ``z(s) = u(x(s), s)``. The three fields
are packed into one tensor ``cat([x, p, z], -1)`` of shape ``(B, 2d + 1)`` and integrated by
``dlpde.shared.ode.integrate`` (forward, or backward when ``t1 < t0``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch

from dlpde.shared.autodiff import gradient
from dlpde.shared.checks import check_choice, check_int, check_positive_int, check_real
from dlpde.shared.ode import INTEGRATORS, integrate
from dlpde.shared.random import make_generator

from ._hamiltonians import Hamiltonian, _differentiable
from ._problems import HJProblem, _check_points, _times

__all__ = [
    "characteristics",
    "backward_characteristics",
    "CharacteristicState",
    "CharacteristicPath",
    "characteristic_field",
    "characteristic_data_source",
]


@dataclasses.dataclass
class CharacteristicState:
    """``x``, ``p``: ``(B, d)`` (or ``(K, B, d)`` at ``K`` saved times); ``z``: ``(B,)`` (or ``(K, B)``)."""

    x: torch.Tensor
    p: torch.Tensor
    z: torch.Tensor


@dataclasses.dataclass
class CharacteristicPath:
    """A path ``(x(s), p(s), z(s))`` at times ``s`` ordered from 0 to ``t``.

    ``times``: ``(K, B)``; ``x``, ``p``: ``(K, B, d)``; ``z``: ``(K, B)``; ``fractions``: the ``K``
    nodes ``s / t`` in ``[0, 1]``.
    """

    times: torch.Tensor
    x: torch.Tensor
    p: torch.Tensor
    z: torch.Tensor
    fractions: torch.Tensor


def characteristic_field(hamiltonian: Hamiltonian, dim: int, scale: torch.Tensor | None = None):
    """The vector field ``f(s, y)`` of ``y = cat([x, p, z])``, optionally multiplied row-wise by
    ``scale`` (``(B,)``; used to integrate in rescaled time ``s = tau * t_b``)."""

    def field(_, y):
        x, p = y[:, :dim], y[:, dim : 2 * dim]
        h_p, h_x, h = hamiltonian.characteristic_rates(x, p)
        out = torch.cat([h_p, -h_x, ((p * h_p).sum(-1) - h).unsqueeze(-1)], dim=-1)
        return out if scale is None else scale[:, None] * out

    return field


def _check_start(x0, p0):
    _check_points(x0, name="x0")
    _check_points(p0, x0.shape[1], name="p0")
    if p0.shape != x0.shape:
        raise ValueError(f"x0 and p0 must have the same shape, got {tuple(x0.shape)} and {tuple(p0.shape)}")
    for name, value in (("x0", x0), ("p0", p0)):
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"{name} contains non-finite values")


def characteristics(
    hamiltonian: Hamiltonian,
    x0: torch.Tensor,
    p0: torch.Tensor,
    z0: torch.Tensor | None = None,
    t0: float = 0.0,
    t1: float = 1.0,
    *,
    method: str = "rk4",
    steps: int | None = 100,
    rtol: float = 1e-8,
    atol: float = 1e-10,
    save_at: Sequence[float] | None = None,
    step_control: str = "batch",
) -> CharacteristicState:
    """Integrate the characteristic system from ``t0`` to ``t1`` (backward when ``t1 < t0``).

    ``x0``, ``p0``: ``(B, d)``; ``z0``: ``(B,)`` (zero by default). ``method``, ``steps``,
    ``rtol``, ``atol``, ``save_at``, ``step_control`` are those of ``dlpde.shared.ode.integrate``
    (``steps`` is ignored by ``"dopri5"``; ``step_control="row"`` gives every trajectory its own
    adaptive step size). Returns a ``CharacteristicState`` at ``t1``, or stacked at the
    ``save_at`` times. Differentiable with respect to ``x0``, ``p0``, ``z0``.
    """
    if not isinstance(hamiltonian, Hamiltonian):
        raise TypeError(f"hamiltonian must be a Hamiltonian, got {type(hamiltonian).__name__}")
    _check_start(x0, p0)
    dim = x0.shape[1]
    z0 = torch.zeros(x0.shape[0], dtype=x0.dtype, device=x0.device) if z0 is None else z0
    if z0.shape != (x0.shape[0],):
        raise ValueError(f"z0 must have shape ({x0.shape[0]},), got {tuple(z0.shape)}")
    y0 = torch.cat([x0, p0, z0.to(x0).unsqueeze(-1)], dim=-1)
    y = integrate(
        characteristic_field(hamiltonian, dim),
        y0,
        check_real(t0, "t0"),
        check_real(t1, "t1"),
        method=method,
        steps=None if method == "dopri5" else steps,
        rtol=rtol,
        atol=atol,
        save_at=save_at,
        step_control=step_control,
    )
    return CharacteristicState(y[..., :dim], y[..., dim : 2 * dim], y[..., 2 * dim])


def backward_characteristics(
    hamiltonian: Hamiltonian,
    x: torch.Tensor,
    t,
    p: torch.Tensor,
    initial: Callable[[torch.Tensor], torch.Tensor],
    *,
    fractions: Sequence[float] | torch.Tensor | None = None,
    nodes: int = 9,
    method: str = "rk4",
    steps: int = 8,
) -> CharacteristicPath:
    """Trace characteristics from ``(x, t)`` with ``p(t) = p`` back to time 0 and anchor
    ``z(0) = g(x(0))``.

    Every trajectory ``b`` runs over its own interval ``[0, t_b]``: the system is integrated in
    the rescaled time ``tau = s / t_b`` from ``tau = 1`` to 0 (one batched call of
    ``dlpde.shared.ode.integrate``), with the ``z`` component started at 0 and shifted afterwards
    so that ``z(0) = g(x(0))``, i.e. ``z(s) = g(x(0)) + int_0^s (p . H_p - H) ds'``.

    Args:
        x, p: ``(B, d)``; t: a number or ``(B,)`` tensor of times ``>= 0``.
        initial: ``g: (B, d) -> (B,)``.
        fractions: the nodes ``tau_k`` in ``[0, 1]``, increasing (default ``nodes`` equispaced
            nodes from 0 to 1).
        method, steps: the integrator and its number of steps over ``tau in [0, 1]``.

    Returns a ``CharacteristicPath`` ordered from ``s = 0`` to ``s = t``; differentiable with
    respect to ``x``, ``p`` (and anything ``g`` and ``H`` close over).
    """
    if not isinstance(hamiltonian, Hamiltonian):
        raise TypeError(f"hamiltonian must be a Hamiltonian, got {type(hamiltonian).__name__}")
    _check_start(x, p)
    t = _times(t, x)
    if fractions is None:
        if not isinstance(nodes, int) or nodes < 2:
            raise ValueError(f"nodes must be an int >= 2, got {nodes!r}")
        fractions = torch.linspace(0.0, 1.0, nodes, dtype=torch.float64)
    fractions = torch.as_tensor(fractions, dtype=torch.float64).reshape(-1)
    if (
        fractions.numel() < 1
        or bool((fractions < 0).any())
        or bool((fractions > 1).any())
        or bool((fractions.diff() <= 0).any())
    ):
        raise ValueError("fractions must be increasing numbers in [0, 1]")
    dim = x.shape[1]
    z_top = torch.zeros(x.shape[0], 1, dtype=x.dtype, device=x.device)
    y_top = torch.cat([x, p, z_top], dim=-1)
    save = sorted({*fractions.tolist(), 0.0}, reverse=True)
    path = integrate(
        characteristic_field(hamiltonian, dim, scale=t),
        y_top,
        1.0,
        0.0,
        method=method,
        steps=None if method == "dopri5" else steps,
        save_at=save,
    )
    path = path.flip(0)  # ascending tau; path[0] is tau = 0
    saved = torch.tensor(save[::-1], dtype=torch.float64)
    index = torch.searchsorted(saved, fractions)
    x_path, p_path, a_path = path[..., :dim], path[..., dim : 2 * dim], path[..., 2 * dim]
    foot = x_path[0]
    z_path = initial(foot).unsqueeze(0) + a_path - a_path[0].unsqueeze(0)
    taus = fractions.to(x)
    return CharacteristicPath(
        times=taus[:, None] * t[None, :], x=x_path[index], p=p_path[index], z=z_path[index], fractions=taus
    )


def characteristic_data_source(
    problem, *, nodes: int = 11, steps: int = 40, method: str = "rk4", seed: int = 0
) -> Callable:
    """A data source ``(x, t) -> dict(x, t, value, gradient)`` for ``ValueGradientSolver`` from
    forward characteristics: it draws as many feet ``y`` uniform in the box as points are asked,
    starts ``x(0) = y``, ``p(0) = grad g(y)``, ``z(0) = g(y)`` and returns the ``nodes`` equispaced
    points of every path on ``[0, T]`` (the asked points themselves are not used). Valid only where
    characteristics do not cross (e.g. LQR with convex ``g``); otherwise use
    ``pontryagin_data_source``.
    """
    if not isinstance(problem, HJProblem):
        raise TypeError(f"problem must be an HJProblem, got {type(problem).__name__}")
    nodes = check_int(nodes, "nodes", minimum=2)
    steps = check_positive_int(steps, "steps")
    method = check_choice(method, "method", sorted(INTEGRATORS))
    generator = make_generator(seed)
    times = [problem.horizon * k / (nodes - 1) for k in range(nodes)]

    def source(x, t):
        _check_points(x, problem.dim)
        feet = problem.sample(x.shape[0], generator, x.dtype, "cpu", initial=True).to(x.device)
        costate = gradient(_differentiable(problem.initial), feet, create_graph=False)
        with torch.no_grad():
            path = characteristics(
                problem.hamiltonian,
                feet,
                costate,
                problem.initial(feet),
                0.0,
                problem.horizon,
                method=method,
                steps=steps,
                save_at=times,
            )
        stamp = torch.tensor(times, dtype=x.dtype, device=x.device)[:, None].expand(-1, x.shape[0])
        return {
            "x": path.x.reshape(-1, problem.dim),
            "t": stamp.reshape(-1),
            "value": path.z.reshape(-1),
            "gradient": path.p.reshape(-1, problem.dim),
        }

    return source
