"""Derivatives of batched functions, written once.

Convention: a *batched scalar function* ``f`` maps ``x`` of shape ``(B, *event)`` to ``(B,)``,
and row ``b`` of the output depends on row ``b`` of the input only. A *batched vector field*
``v`` maps ``(B, *event)`` to ``(B, *event)`` with the same independence. Derivatives are taken
with respect to the event dimensions; ``D = prod(event)`` below.

- ``gradient``: reverse mode (``torch.autograd``), differentiable (``create_graph=True``).
- ``hessian_vector_product``: reverse-over-reverse.
- ``laplacian`` and ``divergence``: forward-over-reverse / forward mode through ``torch.func``
  (exact: ``D`` Jacobian-vector products; Hutchinson: ``n_samples`` of them with Rademacher
  probes, an unbiased estimate ``E[z^T H z] = tr H``). The results stay connected to the
  autograd graph of any parameters ``f`` closes over, so they can enter a training loss.
- ``jacobian``: per-sample Jacobians by ``torch.func.vmap(jacrev)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import func as tfunc

__all__ = ["gradient", "hessian_vector_product", "divergence", "laplacian", "jacobian"]


def _check_batched(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"{name} must have shape (batch, *event) with at least 2 dims, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")


def _requiring_grad(x: torch.Tensor) -> torch.Tensor:
    return x if x.requires_grad else x.detach().requires_grad_(True)


def _check_scalar_output(y: torch.Tensor, batch: int, what: str = "f") -> None:
    if y.shape != (batch,):
        raise ValueError(f"{what} must map (batch, *event) to (batch,), got output shape {tuple(y.shape)}")


def gradient(f: Callable, x: torch.Tensor, create_graph: bool = True) -> torch.Tensor:
    """``grad_x f(x)`` for a batched scalar function; shape ``(B, *event)`` like ``x``.

    With ``create_graph=True`` (the default) the result can itself be differentiated, e.g. in a
    PDE-residual loss.
    """
    _check_batched(x)
    x = _requiring_grad(x)
    with torch.enable_grad():
        y = f(x)
        _check_scalar_output(y, x.shape[0])
        (g,) = torch.autograd.grad(y.sum(), x, create_graph=create_graph)
    return g


def hessian_vector_product(f: Callable, x: torch.Tensor, v: torch.Tensor, create_graph: bool = True):
    """``(Hess_x f)(x) v`` per batch row, shape ``(B, *event)``; ``v`` has the shape of ``x``."""
    _check_batched(x)
    if v.shape != x.shape:
        raise ValueError(f"v must have the shape of x {tuple(x.shape)}, got {tuple(v.shape)}")
    x = _requiring_grad(x)
    with torch.enable_grad():
        y = f(x)
        _check_scalar_output(y, x.shape[0])
        (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
        (hv,) = torch.autograd.grad((g * v).sum(), x, create_graph=create_graph)
    return hv


def _basis(x: torch.Tensor) -> torch.Tensor:
    """One-hot tangents, shape ``(D, B, *event)``; tangent ``i`` is ``e_i`` in every batch row."""
    dim = math.prod(x.shape[1:])
    eye = torch.eye(dim, dtype=x.dtype, device=x.device)
    return eye.reshape(dim, 1, *x.shape[1:]).expand(dim, *x.shape)


def _rademacher(shape, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Rademacher probes drawn on the generator's device (a CPU generator gives the same probes
    whatever the device of ``like``), then moved to ``like``'s device and dtype."""
    device = generator.device if generator is not None else like.device
    bits = torch.randint(0, 2, shape, generator=generator, device=device)
    return (2 * bits - 1).to(device=like.device, dtype=like.dtype)


def _check_method(method: str, n_samples: int) -> None:
    if method not in ("exact", "hutchinson"):
        raise ValueError(f"method must be 'exact' or 'hutchinson', got {method!r}")
    if not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")


def _trace_of_linear_map(apply: Callable, x: torch.Tensor, method: str, n_samples: int,
                         generator, chunk_size: int | None):
    """Return ``(tr J, primal)`` for ``apply(tangent) = (primal, J tangent)``."""
    batch_dims = tuple(range(1, x.dim()))
    if method == "exact":
        tangents = _basis(x)
    else:
        tangents = _rademacher((n_samples, *x.shape), x, generator)

    def contract(tangent):
        primal, jv = apply(tangent)
        return primal, (jv * tangent).sum(dim=batch_dims)

    primals, traces = tfunc.vmap(contract, chunk_size=chunk_size)(tangents)
    total = traces.sum(0) if method == "exact" else traces.mean(0)
    return total, primals[0]


def divergence(v: Callable, x: torch.Tensor, method: str = "exact", n_samples: int = 1,
               generator: torch.Generator | None = None, chunk_size: int | None = None):
    """``div v(x) = sum_i d v_i / d x_i`` per batch row, shape ``(B,)``.

    ``method="exact"`` uses ``D`` forward-mode products; ``"hutchinson"`` the unbiased estimate
    ``mean_k z_k^T (Dv) z_k`` with ``n_samples`` Rademacher probes drawn from ``generator``.
    """
    _check_batched(x)
    _check_method(method, n_samples)

    def apply(tangent):
        return tfunc.jvp(v, (x,), (tangent,))

    div, _ = _trace_of_linear_map(apply, x, method, n_samples, generator, chunk_size)
    return div


def laplacian(f: Callable, x: torch.Tensor, method: str = "exact", n_samples: int = 1,
              generator: torch.Generator | None = None, return_gradient: bool = False,
              chunk_size: int | None = None):
    """``Lap f(x) = tr Hess f(x)`` per batch row, shape ``(B,)``, by forward-over-reverse.

    ``f`` must be composable with ``torch.func`` (no in-place ops on inputs, no ``.item()``).
    ``return_gradient=True`` also returns ``grad f(x)`` (shape of ``x``), which the
    forward-over-reverse pass computes anyway. Exact: ``D`` Hessian-vector products;
    Hutchinson: ``n_samples`` of them (unbiased, variance ``2 ||H||_F^2 - 2 sum_i H_ii^2`` per probe).
    """
    _check_batched(x)
    _check_method(method, n_samples)
    grad_f = tfunc.grad(lambda y: f(y).sum())

    def apply(tangent):
        return tfunc.jvp(grad_f, (x,), (tangent,))

    lap, grad = _trace_of_linear_map(apply, x, method, n_samples, generator, chunk_size)
    return (lap, grad) if return_gradient else lap


def jacobian(f: Callable, x: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """Per-sample Jacobian of a batched map ``(B, *event) -> (B, *out)``: shape ``(B, *out, *event)``."""
    _check_batched(x)

    def single(row):
        return f(row.unsqueeze(0)).squeeze(0)

    return tfunc.vmap(tfunc.jacrev(single), chunk_size=chunk_size)(x)
