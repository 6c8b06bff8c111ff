"""Fused, particle-blocked squared loss of a two-layer mean-field network and its gradient.

``R = (1/B) sum_b (y_b - f(x_b))^2`` with ``f(x) = (1/n) sum_i a_i sigma(<w_i, x> + b_i)``. Autograd
keeps the ``(B, n)`` pre-activations and activations of the whole layer and walks them several
times; here the loss and its gradient are computed together in two passes over blocks of
particles, so every temporary is ``(B, block)`` and stays in cache:

    pass 1:  f = (1/n) sum_i a_i h_i,            h_i = sigma(<w_i, x> + b_i)       (per block)
    pass 2:  r = y - f,   s_bi = r_b sigma'(<w_i, x_b> + b_i),
             dR/da_i = -(2 / (n B)) sum_b r_b h_bi,
             dR/dw_i = -(2 / (n B)) a_i sum_b s_bi x_b,   dR/db_i = -(2 / (n B)) a_i sum_b s_bi

(pass 2 reuses the blocks of pass 1 while ``B n`` is small, and recomputes them beyond).
The activation's derivative is in closed form for the named activations and the
``GaussianWellActivation``; any other elementwise callable is differentiated by autograd on one
block at a time. The value and the gradient are those of autograd through ``model(x)`` (to
rounding: the sums are ordered differently).
"""

from __future__ import annotations

import contextlib
import math

import torch

from ._activations import GaussianWellActivation, _erf_unit, _identity

__all__: list[str] = []

# 2^15 elements per (B, block) temporary: 256 KiB in float64, in L2 cache, and below the size
# at which torch splits an elementwise op over threads
_BLOCK_ELEMENTS = 1 << 15
# below this many elements of (B, n) the blocks' pre-activations and activations are kept for pass 2
_KEPT_ELEMENTS = 1 << 21


def _values(activation, pre, keep_pre):
    """``sigma(pre)``, in place (``pre`` is then lost) unless ``keep_pre`` or the slope needs ``pre``."""
    if activation is torch.tanh or activation is torch.sigmoid:
        return activation(pre) if keep_pre else activation(pre, out=pre)
    if activation is torch.relu:
        return torch.relu(pre)
    return activation(pre)


def _slope(activation, pre, h, r):
    """``r[:, None] * sigma'(pre)`` (``h = sigma(pre)``)."""
    r = r[:, None]
    if activation is torch.tanh:
        return torch.mul(h, h).sub_(1.0).mul_(-r)
    if activation is torch.sigmoid:
        return torch.sub(1.0, h).mul_(h).mul_(r)
    if activation is torch.relu:
        return (pre > 0).to(pre.dtype).mul_(r)
    if activation is _identity:
        return r.expand_as(pre)
    if activation is _erf_unit:
        return torch.mul(pre, pre).mul_(-0.5).exp_().mul_(r * math.sqrt(2.0 / math.pi))
    if isinstance(activation, GaussianWellActivation):
        scale = r * (activation.amplitude / activation.width**2)
        return torch.mul(pre, pre).mul_(-0.5 / activation.width**2).exp_().mul_(pre).mul_(scale)
    with torch.enable_grad():
        pre = pre.detach().requires_grad_(True)
        (slope,) = torch.autograd.grad(activation(pre), pre, r.expand_as(pre))
    return slope


def _pre_activation(x, particles, rows, d, bias):
    w = particles[rows, 1 : 1 + d]
    if bias:
        return torch.addmm(particles[rows, -1], x, w.T)
    return x @ w.T


@contextlib.contextmanager
def _one_intra_op_thread():
    """Run the blocks on one intra-op thread (restored afterwards): every GEMM of a block has an inner
    dimension of ``d`` or ``B`` and every elementwise op fewer than 2^15 elements, too little work for
    a thread team to pay; on a loaded machine a team of spinning threads made the step 8x slower."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def fused_squared_loss(activation, particles, x, y, d, bias, block, with_gradient):
    """``(loss, gradient)``: the loss ``(1/B) sum_b (y_b - f(x_b))^2`` (a 0-d tensor) and its gradient
    with respect to ``particles`` (``None`` unless ``with_gradient``); see the module docstring."""
    n, batch = particles.shape[0], x.shape[0]
    a = particles[:, 0]
    if block is None:  # on a GPU one block: the whole layer
        block = max(64, _BLOCK_ELEMENTS // batch) if particles.device.type == "cpu" else n
    starts = range(0, n, block)
    keep = with_gradient and n * batch <= _KEPT_ELEMENTS
    f = x.new_zeros(batch)
    kept = []
    for start in starts:
        rows = slice(start, min(start + block, n))
        pre = _pre_activation(x, particles, rows, d, bias)
        h = _values(activation, pre, keep_pre=keep)
        if keep:
            kept.append((pre, h))
        f.addmv_(h, a[rows], alpha=1.0 / n)
    r = y - f
    loss = (r @ r) / batch
    if not with_gradient:
        return loss, None
    grad = torch.empty_like(particles)
    scale = -2.0 / (n * batch)
    for index, start in enumerate(starts):
        rows = slice(start, min(start + block, n))
        if keep:
            pre, h = kept[index]
        else:
            pre = _pre_activation(x, particles, rows, d, bias)
            h = _values(activation, pre, keep_pre=True)
        slope = _slope(activation, pre, h, r)
        out = grad[rows]
        out[:, 0] = torch.mv(h.T, r).mul_(scale)
        a_rows = (a[rows] * scale)[:, None]
        out[:, 1 : 1 + d] = torch.mm(x.T, slope).T.mul_(a_rows)  # x^T s: the fast GEMM layout
        if bias:
            out[:, -1] = slope.sum(0).mul_(a_rows[:, 0])
    return loss, grad


class FusedSquaredLoss(torch.autograd.Function):
    """The loss as a scalar whose backward returns the gradient computed in the same pass."""

    @staticmethod
    def forward(ctx, particles, x, y, activation, d, bias, block):
        with_gradient = particles.requires_grad
        with _one_intra_op_thread():
            loss, grad = fused_squared_loss(
                activation, particles.detach(), x, y, d, bias, block, with_gradient
            )
        if with_gradient:
            ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        return grad * grad_output, None, None, None, None, None, None
