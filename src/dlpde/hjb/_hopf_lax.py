"""The Hopf-Lax formula by batched multi-start minimisation.

For ``H = H(p)`` convex with Lagrangian ``L = H*`` the viscosity solution of
``u_t + H(grad u) = 0``, ``u(x, 0) = g(x)`` is (Evans, *PDE*, section 3.3; Darbon & Osher 2016)

    u(x, t) = min_y { g(y) + t L((x - y)/t) } = min_q { g(x - t q) + t L(q) }.

``hopf_lax_value`` minimises over the velocity ``q`` for every point and every start at once:
gradient steps with a per-row step size adapted by an Armijo test (doubled after an accepted
step, halved after a rejected one), projected onto the ball where ``L`` is finite when ``L`` is an
indicator (``NormHamiltonian``). ``g`` may be non-convex (several starts) and non-smooth (the
step size shrinks at kinks, where the iterates converge linearly).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dlpde.shared.autodiff import gradient
from dlpde.shared.random import make_generator

from ._hamiltonians import Hamiltonian, _differentiable
from ._problems import _check_points, _times

__all__ = ["hopf_lax_value"]


def hopf_lax_value(
    hamiltonian: Hamiltonian,
    initial: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    t,
    *,
    n_starts: int = 8,
    initial_guesses: torch.Tensor | None = None,
    start_scale: float = 1.0,
    generator: torch.Generator | int | None = None,
    max_iterations: int = 1000,
    tolerance: float = 1e-9,
):
    """``u(x, t) = min_y g(y) + t L((x - y)/t)`` and the minimiser ``y``.

    Args:
        hamiltonian: convex and state-independent, with a ``lagrangian``.
        initial: ``g: (N, d) -> (N,)``, a torch function (differentiated by autograd).
        x: ``(B, d)``; t: a number or a ``(B,)`` tensor, ``t >= 0`` (``t = 0`` gives ``g(x)``).
        n_starts: random starting velocities ``q ~ N(0, start_scale^2 I)`` per point, besides the
            two deterministic ones ``q = 0`` (``y = x``) and ``q = H_p(grad g(x))`` (the
            characteristic through ``x``). Random starts come from ``generator`` (CPU; seed 0 by
            default), so every device sees the same starts.
        initial_guesses: optional extra starting points ``y``, ``(K, d)`` or ``(B, K, d)``.
        max_iterations, tolerance: stop when every proposed step is below
            ``tolerance * (1 + |q|)`` or after ``max_iterations`` iterations.

    Returns:
        ``(value, minimiser)`` of shapes ``(B,)`` and ``(B, d)``, in the dtype of ``x``.
    """
    if not isinstance(hamiltonian, Hamiltonian):
        raise TypeError(f"hamiltonian must be a Hamiltonian, got {type(hamiltonian).__name__}")
    if not hamiltonian.convex or hamiltonian.state_dependent:
        raise ValueError("hopf_lax_value needs a convex, state-independent Hamiltonian H(p)")
    _check_points(x)
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains non-finite values")
    t = _times(t, x)
    if not isinstance(n_starts, int) or n_starts < 0:
        raise ValueError(f"n_starts must be a non-negative int, got {n_starts!r}")
    if not isinstance(max_iterations, int) or max_iterations < 1:
        raise ValueError(f"max_iterations must be a positive int, got {max_iterations!r}")
    batch, dim = x.shape
    x = x.detach()
    initial = _differentiable(initial)

    with torch.no_grad():
        value = initial(x).detach().clone()
    minimiser = x.clone()
    moving = t > 0
    if not bool(moving.any()):
        return value, minimiser
    xs, ts = x[moving], t[moving]
    n = xs.shape[0]

    try:
        hamiltonian.lagrangian(xs[:1], torch.zeros_like(xs[:1]))
    except NotImplementedError as error:
        raise ValueError(f"hopf_lax_value needs the Lagrangian: {error}") from None

    starts = [
        torch.zeros_like(xs),
        hamiltonian.grad_p(xs, gradient(initial, xs, create_graph=False)).detach(),
    ]
    if n_starts:
        g = make_generator(0 if generator is None else generator)
        noise = torch.randn(n, n_starts, dim, generator=g, dtype=xs.dtype, device=g.device)
        starts.extend((start_scale * noise).to(xs.device).unbind(1))
    if initial_guesses is not None:
        guesses = torch.as_tensor(initial_guesses).to(xs)
        if guesses.dim() == 2 and guesses.shape[1] == dim:
            guesses = guesses.unsqueeze(0).expand(batch, -1, -1)
        if guesses.dim() != 3 or guesses.shape[0] != batch or guesses.shape[2] != dim:
            raise ValueError(
                f"initial_guesses must have shape (K, {dim}) or ({batch}, K, {dim}), "
                f"got {tuple(guesses.shape)}"
            )
        guesses = guesses[moving]
        starts.extend(((xs.unsqueeze(1) - guesses) / ts[:, None, None]).unbind(1))
    n_total = len(starts)
    q = hamiltonian.project_velocity(torch.stack(starts, 1).reshape(n * n_total, dim))
    xs_rows = xs.repeat_interleave(n_total, 0)
    ts_rows = ts.repeat_interleave(n_total, 0)

    def evaluate(velocity, rows):
        x_rows, t_rows = xs_rows[rows], ts_rows[rows]

        def objective(v):
            return initial(x_rows - t_rows[:, None] * v) + t_rows * hamiltonian.lagrangian(x_rows, v)

        grad = gradient(objective, velocity, create_graph=False)
        with torch.no_grad():
            return objective(velocity), grad

    every = torch.arange(q.shape[0], device=q.device)
    f_value, f_grad = evaluate(q, every)
    step_size = 1.0 / ts_rows
    active = torch.ones_like(f_value, dtype=torch.bool)
    for _ in range(max_iterations):
        trial = hamiltonian.project_velocity(q - step_size[:, None] * f_grad)
        step = trial - q
        step_norm_sq = (step * step).sum(-1)
        active &= step_norm_sq.sqrt() > tolerance * (1 + torch.linalg.vector_norm(q, dim=-1))
        rows = active.nonzero().squeeze(-1)
        if rows.numel() == 0:
            break
        trial, step, step_norm_sq = trial[rows], step[rows], step_norm_sq[rows]
        trial_value, trial_grad = evaluate(trial, rows)
        accept = trial_value <= f_value[rows] - 1e-4 * step_norm_sq / step_size[rows]
        # Barzilai-Borwein step s.s / s.y after an accepted step (doubling where s.y <= 0),
        # halving after a rejected one.
        curvature = (step * (trial_grad - f_grad[rows])).sum(-1)
        spectral = torch.where(
            curvature > 0,
            step_norm_sq / curvature.clamp_min(torch.finfo(q.dtype).tiny),
            2.0 * step_size[rows],
        )
        step_size[rows] = torch.where(accept, spectral.clamp(max=1e6 / ts_rows[rows]), 0.5 * step_size[rows])
        q[rows] = torch.where(accept[:, None], trial, q[rows])
        f_value[rows] = torch.where(accept, trial_value, f_value[rows])
        f_grad[rows] = torch.where(accept[:, None], trial_grad, f_grad[rows])
    f_value = f_value.reshape(n, n_total)
    best = f_value.argmin(1)
    q_best = q.reshape(n, n_total, dim)[torch.arange(n, device=x.device), best]
    value[moving] = f_value[torch.arange(n, device=x.device), best]
    minimiser[moving] = xs - ts[:, None] * q_best
    return value, minimiser
