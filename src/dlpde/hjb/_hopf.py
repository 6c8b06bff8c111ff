"""The Hopf formula for convex initial data and a state-independent Hamiltonian.

For ``g`` convex (proper, lower semicontinuous) and ``H = H(p)`` (Hopf 1965; Darbon & Osher,
*Research in the Mathematical Sciences* 2016)

    u(x, t) = (g* + t H)*(x) = -min_p { g*(p) + t H(p) - <x, p> },

and the minimiser is ``p* = grad u(x, t)`` where ``u`` is differentiable. Each point is one convex
problem in ``p`` (no characteristics, no grid), solved here for every point at once by a proximal
gradient method: gradient steps on the smooth part ``g*(p) - <x, p>`` (plus ``t H(p)`` when ``H`` is
smooth), the proximal map of ``t H`` for the norms ``H = c |p|_r`` (soft thresholding for
``r = 1``, block shrinkage for ``r = 2``, and ``v - proj_{|.|_1 <= s c}(v)`` for ``r = inf``), a
per-row Barzilai-Borwein step size with a backtracking test that halves it where the smooth part
rises above its quadratic model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dlpde.shared.checks import check_bool, check_callable, check_positive, check_positive_int, check_tensor

from ._hamiltonians import Hamiltonian, NormHamiltonian, _differentiable, _project_l1_ball
from ._problems import _check_points, _times

__all__ = ["hopf_value"]


def _norm_prox(hamiltonian: NormHamiltonian, v: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """``argmin_p step c |p|_r + |p - v|^2 / 2`` for every row (``step``: ``(B,)``)."""
    threshold = (step * hamiltonian.speed)[:, None]
    if hamiltonian.order == 1:
        return torch.sign(v) * (v.abs() - threshold).clamp_min(0)
    if hamiltonian.order == 2:
        norm = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
        return v * (1 - threshold / norm.clamp_min(torch.finfo(v.dtype).tiny)).clamp_min(0)
    # r = inf: Moreau decomposition with the projection onto the l1 ball of radius step * c.
    out = torch.empty_like(v)
    for radius in torch.unique(threshold):  # one radius per distinct time (usually few)
        rows = (threshold[:, 0] == radius).nonzero().squeeze(-1)
        out[rows] = v[rows] - _project_l1_ball(v[rows], float(radius))
    return out


def hopf_value(
    hamiltonian: Hamiltonian,
    conjugate: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    t,
    *,
    initial_momentum: torch.Tensor | None = None,
    max_iterations: int = 5000,
    tolerance: float = 1e-11,
    return_info: bool = False,
):
    """``u(x, t) = -min_p { g*(p) + t H(p) - <x, p> }`` and the minimiser ``p* = grad u``.

    Args:
        hamiltonian: state-independent (``H = H(p)``), not necessarily convex in theory; here
            ``g* + t H`` must be convex for the minimiser to be global, so ``H`` must be convex.
            ``NormHamiltonian`` is handled by its proximal map; other Hamiltonians must be smooth
            (their gradient ``grad_p`` is used).
        conjugate: ``g*: (N, d) -> (N,)``, the Legendre-Fenchel transform of the convex data ``g``,
            finite and differentiable (a torch function, differentiated by autograd), e.g.
            ``g(x) = (x - a)^T Q (x - a)/2 + c`` has ``g*(p) = a.p + p^T Q^{-1} p/2 - c``.
        x: ``(B, d)``; t: a number or a ``(B,)`` tensor, ``t >= 0``.
        initial_momentum: the start ``p_0`` (``(B, d)``; zeros by default); ``grad g(x)`` is a
            good one when known.
        max_iterations, tolerance: a row stops when its step is below ``tolerance * (1 + |p|)``.
        return_info: also return ``{"converged": fraction of rows that met the tolerance,
            "iterations": the number of iterations run}``.

    Returns:
        ``(value, momentum)`` of shapes ``(B,)`` and ``(B, d)`` (and the info dict).
    """
    if not isinstance(hamiltonian, Hamiltonian):
        raise TypeError(f"hamiltonian must be a Hamiltonian, got {type(hamiltonian).__name__}")
    if not hamiltonian.convex or hamiltonian.state_dependent:
        raise ValueError("hopf_value needs a convex, state-independent Hamiltonian H(p)")
    conjugate = _differentiable(check_callable(conjugate, "conjugate"))
    x = check_tensor(x, "x", dim=2)
    _check_points(x)
    t = _times(t, x)
    max_iterations = check_positive_int(max_iterations, "max_iterations")
    tolerance = check_positive(tolerance, "tolerance")
    return_info = check_bool(return_info, "return_info")
    if hamiltonian.dim is not None and hamiltonian.dim != x.shape[1]:
        raise ValueError(f"x must have {hamiltonian.dim} columns, got shape {tuple(x.shape)}")
    x = x.detach()
    if initial_momentum is None:
        p = torch.zeros_like(x)
    else:
        p = check_tensor(initial_momentum, "initial_momentum", shape=tuple(x.shape)).detach().to(x).clone()
    proximal = isinstance(hamiltonian, NormHamiltonian)

    def smooth(momentum, rows):
        """The smooth part and its gradient on ``rows``."""
        with torch.enable_grad():
            v = momentum.detach().requires_grad_(True)
            value = conjugate(v) - (x[rows] * v).sum(-1)
            if not isinstance(value, torch.Tensor) or value.shape != (v.shape[0],):
                raise ValueError(
                    f"conjugate must return shape ({v.shape[0]},), got {getattr(value, 'shape', value)!r}"
                )
            if not proximal:
                value = value + t[rows] * hamiltonian.value(x[rows], v)
            (grad,) = torch.autograd.grad(value.sum(), v)
        return value.detach(), grad

    def prox(v, step, rows):
        return _norm_prox(hamiltonian, v, step * t[rows]) if proximal else v

    every = torch.arange(x.shape[0], device=x.device)
    f_value, f_grad = smooth(p, every)
    step_size = torch.ones_like(t)
    active = torch.ones_like(t, dtype=torch.bool)
    iterations = 0
    for iterations in range(1, max_iterations + 1):  # noqa: B007 (reported)
        rows = active.nonzero().squeeze(-1)
        if rows.numel() == 0:
            break
        alpha = step_size[rows]
        trial = prox(p[rows] - alpha[:, None] * f_grad[rows], alpha, rows)
        step = trial - p[rows]
        step_norm_sq = (step * step).sum(-1)
        small = step_norm_sq.sqrt() <= tolerance * (1 + torch.linalg.vector_norm(p[rows], dim=-1))
        trial_value, trial_grad = smooth(trial, rows)
        model = f_value[rows] + (f_grad[rows] * step).sum(-1) + step_norm_sq / (2 * alpha)
        accept = (trial_value <= model + 1e-12 * (1 + f_value[rows].abs())) | small
        curvature = (step * (trial_grad - f_grad[rows])).sum(-1)
        spectral = torch.where(
            curvature > 0, step_norm_sq / curvature.clamp_min(torch.finfo(x.dtype).tiny), 2.0 * alpha
        )
        step_size[rows] = torch.where(accept, spectral.clamp(1e-12, 1e12), 0.5 * alpha)
        p[rows] = torch.where(accept[:, None], trial, p[rows])
        f_value[rows] = torch.where(accept, trial_value, f_value[rows])
        f_grad[rows] = torch.where(accept[:, None], trial_grad, f_grad[rows])
        active[rows] = ~(small & accept)
    objective = f_value + (t * hamiltonian.value(x, p) if proximal else 0.0)
    value = -objective
    if return_info:
        return value, p, {"converged": float((~active).double().mean()), "iterations": iterations}
    return value, p
