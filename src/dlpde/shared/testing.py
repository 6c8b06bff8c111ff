"""Property checks shipped with dlpde, for its tests and for users' own models.

Every ``assert_*`` check raises ``AssertionError`` with the measured discrepancy when the
property fails, and returns that discrepancy (a float) when it holds, so that tests can also
report it. Checks run in the dtype of their inputs; use float64 for tight tolerances.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from .random import make_generator

__all__ = [
    "random_permutation",
    "random_rotation",
    "assert_permutation_invariant",
    "assert_permutation_equivariant",
    "assert_antisymmetric",
    "assert_rotation_invariant",
    "assert_rotation_equivariant",
    "assert_adjoint",
    "convergence_order",
    "assert_convergence_order",
    "assert_monte_carlo_close",
    "assert_gradcheck",
    "finite_difference_gradient",
    "assert_matches_finite_differences",
]


def _gen(generator, device):
    return make_generator(0 if generator is None else generator, device)


def _max_error(a: torch.Tensor, b: torch.Tensor, rtol: float, atol: float) -> tuple[float, bool]:
    diff = (a.detach() - b.detach()).abs()
    ok = bool((diff <= atol + rtol * b.detach().abs()).all())
    return float(diff.max()) if diff.numel() else 0.0, ok


def _outputs(f, x):
    out = f(x)
    return out if isinstance(out, tuple) else (out,)


def random_permutation(n: int, generator=None, device="cpu") -> torch.Tensor:
    return torch.randperm(n, generator=_gen(generator, "cpu")).to(device)


def random_rotation(dim: int = 3, dtype=torch.float64, device="cpu", generator=None,
                    reflection: bool = False) -> torch.Tensor:
    """A Haar-random orthogonal matrix; ``det = +1`` unless ``reflection=True`` (then ``-1``)."""
    g = _gen(generator, "cpu")
    a = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    if reflection:
        q = q @ torch.diag(torch.tensor([-1.0] + [1.0] * (dim - 1), dtype=torch.float64))
    return q.to(dtype=dtype, device=device)


def assert_permutation_invariant(f: Callable, x: torch.Tensor, dim: int = 1, n_trials: int = 5,
                                 rtol: float = 1e-10, atol: float = 1e-10, generator=None) -> float:
    """``f(x[perm]) == f(x)`` for random permutations ``perm`` along ``dim`` (every output of ``f``)."""
    g = _gen(generator, "cpu")
    reference = _outputs(f, x)
    worst = 0.0
    for _ in range(n_trials):
        perm = torch.randperm(x.shape[dim], generator=g).to(x.device)
        for out, ref in zip(_outputs(f, x.index_select(dim, perm)), reference):
            err, ok = _max_error(out, ref, rtol, atol)
            worst = max(worst, err)
            if not ok:
                raise AssertionError(f"not permutation invariant: max deviation {err:.3e}")
    return worst


def assert_permutation_equivariant(f: Callable, x: torch.Tensor, dim: int = 1, out_dim: int = 1,
                                   n_trials: int = 5, rtol: float = 1e-10, atol: float = 1e-10,
                                   generator=None) -> float:
    """``f(x[perm]) == f(x)[perm]`` (permuting ``dim`` of the input and ``out_dim`` of the output)."""
    g = _gen(generator, "cpu")
    reference = f(x)
    worst = 0.0
    for _ in range(n_trials):
        perm = torch.randperm(x.shape[dim], generator=g).to(x.device)
        err, ok = _max_error(f(x.index_select(dim, perm)), reference.index_select(out_dim, perm),
                             rtol, atol)
        worst = max(worst, err)
        if not ok:
            raise AssertionError(f"not permutation equivariant: max deviation {err:.3e}")
    return worst


def _parity(perm: Sequence[int]) -> int:
    perm = list(perm)
    sign, seen = 1, [False] * len(perm)
    for i in range(len(perm)):
        if seen[i]:
            continue
        j, length = i, 0
        while not seen[j]:
            seen[j] = True
            j = perm[j]
            length += 1
        if length % 2 == 0:
            sign = -sign
    return sign


def assert_antisymmetric(f: Callable, x: torch.Tensor, groups: Sequence[Sequence[int]] | None = None,
                         dim: int = 1, n_trials: int = 5, rtol: float = 1e-9, atol: float = 1e-9,
                         generator=None) -> float:
    """``f(P x) = sign(P) f(x)`` for permutations ``P`` within each group of indices along ``dim``.

    ``f`` returns either values ``(B,)`` or ``(sign, log|psi|)``; in the latter case the sign must
    flip by the parity and ``log|psi|`` stay unchanged. ``groups`` are the index sets of
    identical fermions (e.g. ``[range(n_up), range(n_up, n_up + n_down)]``); default: all.
    Every transposition of two members of a group is tried, then ``n_trials`` random
    permutations of all groups at once.
    """
    n = x.shape[dim]
    groups = [list(range(n))] if groups is None else [list(g) for g in groups]
    g = _gen(generator, "cpu")
    reference = f(x)
    is_pair = isinstance(reference, tuple)

    def compare(perm):
        parity = _parity(perm)
        out = f(x.index_select(dim, torch.as_tensor(perm, device=x.device)))
        if is_pair:
            sign_err = float((out[0] - parity * reference[0]).abs().max())
            log_err, ok = _max_error(out[1], reference[1], rtol, atol)
            if sign_err > 0.5 or not ok:
                raise AssertionError(
                    f"not antisymmetric under {perm}: sign error {sign_err}, log|psi| error {log_err:.3e}")
            return log_err
        err, ok = _max_error(out, parity * reference, rtol, atol)
        if not ok:
            raise AssertionError(f"not antisymmetric under {perm}: max deviation {err:.3e}")
        return err

    worst = 0.0
    if not any(len(group) >= 2 for group in groups):
        raise ValueError("antisymmetry needs a group of at least two particles")
    for group in groups:
        for a in range(len(group)):
            for b in range(a + 1, len(group)):
                perm = list(range(n))
                perm[group[a]], perm[group[b]] = perm[group[b]], perm[group[a]]
                worst = max(worst, compare(perm))
    for _ in range(n_trials):
        perm = list(range(n))
        for group in groups:
            shuffled = [group[i] for i in torch.randperm(len(group), generator=g).tolist()]
            for src, dst in zip(group, shuffled):
                perm[src] = dst
        worst = max(worst, compare(perm))
    return worst


def assert_rotation_invariant(f: Callable, positions: torch.Tensor, n_trials: int = 3,
                              reflections: bool = True, translations: bool = True,
                              rtol: float = 1e-9, atol: float = 1e-9, generator=None) -> float:
    """``f(x R^T + c) == f(x)`` for random rotations (and reflections, translations ``c``).

    ``positions`` has shape ``(..., 3)`` (or ``(..., d)``); ``f`` returns any tensor.
    """
    g = _gen(generator, "cpu")
    d = positions.shape[-1]
    reference = f(positions)
    worst = 0.0
    for trial in range(n_trials):
        r = random_rotation(d, positions.dtype, positions.device, g,
                            reflection=reflections and trial % 2 == 1)
        shift = torch.randn(d, generator=g, dtype=torch.float64).to(positions) if translations else 0.0
        err, ok = _max_error(f(positions @ r.T + shift), reference, rtol, atol)
        worst = max(worst, err)
        if not ok:
            raise AssertionError(f"not rotation invariant: max deviation {err:.3e}")
    return worst


def assert_rotation_equivariant(f: Callable, positions: torch.Tensor, n_trials: int = 3,
                                reflections: bool = True, translations: bool = True,
                                rtol: float = 1e-9, atol: float = 1e-9, generator=None) -> float:
    """``f(x R^T + c) == f(x) R^T`` for vector outputs ``(..., d)`` (e.g. forces)."""
    g = _gen(generator, "cpu")
    d = positions.shape[-1]
    reference = f(positions)
    worst = 0.0
    for trial in range(n_trials):
        r = random_rotation(d, positions.dtype, positions.device, g,
                            reflection=reflections and trial % 2 == 1)
        shift = torch.randn(d, generator=g, dtype=torch.float64).to(positions) if translations else 0.0
        err, ok = _max_error(f(positions @ r.T + shift), reference @ r.T, rtol, atol)
        worst = max(worst, err)
        if not ok:
            raise AssertionError(f"not rotation equivariant: max deviation {err:.3e}")
    return worst


def assert_adjoint(forward: Callable, adjoint: Callable, x: torch.Tensor, y: torch.Tensor,
                   n_trials: int = 3, tol: float = 1e-10, generator=None) -> float:
    """``<A u, v> == <u, A^T v>`` for random ``u`` shaped like ``x`` and ``v`` like ``y``.

    The error is relative: ``|<Au,v> - <u,A^T v>| / (|Au| |v| + |u| |A^T v|)``.
    """
    g = _gen(generator, "cpu")
    worst = 0.0
    for _ in range(n_trials):
        u = torch.randn(x.shape, generator=g, dtype=torch.float64).to(x)
        v = torch.randn(y.shape, generator=g, dtype=torch.float64).to(y)
        au, atv = forward(u), adjoint(v)
        if au.shape != v.shape or atv.shape != u.shape:
            raise AssertionError(f"shape mismatch: A u {tuple(au.shape)} vs v {tuple(v.shape)}, "
                                 f"A^T v {tuple(atv.shape)} vs u {tuple(u.shape)}")
        lhs, rhs = float((au * v).sum()), float((u * atv).sum())
        scale = float(au.norm() * v.norm() + u.norm() * atv.norm()) or 1.0
        err = abs(lhs - rhs) / scale
        worst = max(worst, err)
        if not err <= tol:
            raise AssertionError(f"adjoint mismatch: relative error {err:.3e} > {tol:.1e}")
    return worst


def convergence_order(step_sizes, errors) -> float:
    """Least-squares slope of ``log(error)`` against ``log(step size)``."""
    h = np.log(np.asarray(step_sizes, dtype=float))
    e = np.log(np.asarray(errors, dtype=float))
    if h.size < 2 or not np.all(np.isfinite(e)):
        raise ValueError("need at least two step sizes with positive finite errors")
    return float(np.polyfit(h, e, 1)[0])


def assert_convergence_order(step_sizes, errors, expected: float, tol: float = 0.3) -> float:
    """The measured order (log-log slope) is within ``tol`` of ``expected``; returns it."""
    order = convergence_order(step_sizes, errors)
    if abs(order - expected) > tol:
        raise AssertionError(f"measured order {order:.3f}, expected {expected} +- {tol}")
    return order


def assert_monte_carlo_close(estimate: float, standard_error: float, exact: float,
                             n_sigma: float = 5.0) -> float:
    """``|estimate - exact| <= n_sigma * standard_error``; returns the deviation in sigmas."""
    if not (standard_error > 0 and math.isfinite(standard_error)):
        raise AssertionError(f"standard error must be positive and finite, got {standard_error}")
    z = abs(float(estimate) - float(exact)) / float(standard_error)
    if z > n_sigma:
        raise AssertionError(f"estimate {estimate:.6g} +- {standard_error:.2g} is {z:.1f} sigma "
                             f"from {exact:.6g} (allowed {n_sigma})")
    return z


def assert_gradcheck(f: Callable, inputs, eps: float = 1e-6, atol: float = 1e-5,
                     rtol: float = 1e-3) -> bool:
    """``torch.autograd.gradcheck`` in float64, raising ``AssertionError`` on a mismatch."""
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    for t in inputs:
        if isinstance(t, torch.Tensor) and t.requires_grad and t.dtype != torch.float64:
            raise ValueError("gradcheck inputs must be float64")
    try:
        return torch.autograd.gradcheck(f, inputs, eps=eps, atol=atol, rtol=rtol, raise_exception=True)
    except RuntimeError as error:
        raise AssertionError(str(error).splitlines()[0]) from error


def finite_difference_gradient(f: Callable, x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Central differences of a batched scalar function ``(B, *event) -> (B,)``; shape of ``x``."""
    flat = x.detach().reshape(x.shape[0], -1)
    grad = torch.empty_like(flat)
    with torch.no_grad():
        for i in range(flat.shape[1]):
            step = torch.zeros_like(flat)
            step[:, i] = eps
            plus = f((flat + step).reshape(x.shape))
            minus = f((flat - step).reshape(x.shape))
            grad[:, i] = (plus - minus) / (2 * eps)
    return grad.reshape(x.shape)


def assert_matches_finite_differences(f: Callable, x: torch.Tensor, grad: torch.Tensor,
                                      eps: float = 1e-6, rtol: float = 1e-6, atol: float = 1e-6) -> float:
    """A claimed gradient ``grad`` of ``f`` at ``x`` matches central differences."""
    reference = finite_difference_gradient(f, x, eps)
    err, ok = _max_error(grad.detach(), reference, rtol, atol)
    if not ok:
        raise AssertionError(f"gradient differs from finite differences by {err:.3e}")
    return err
