"""Fused, particle-blocked squared loss of a two-layer mean-field network and its gradient.

``R = (1/B) sum_b (y_b - f(x_b))^2`` with ``f(x) = (1/n) sum_i a_i sigma(<w_i, x> + b_i)``. Autograd
keeps the ``(B, n)`` pre-activations and activations of the whole layer and walks them several
times; here the loss and its closed-form gradient are computed together from two ``(B, block)``
arrays per block of particles, ``G = g(u)`` and ``S = g'``-like slopes, with ``u = <w_i, x_b> + b_i``
and ``sigma(u) = alpha g(c u) + beta``, ``sigma'(u) = gamma S``:

    f = (1/n) (alpha G a + beta sum_i a_i),       r = y - f,
    grad_i = (-2 / (n B)) [ alpha sum_b r_b G_bi + beta sum_b r_b ,  gamma a_i sum_b r_b S_bi (x_b, 1) ],

so the whole gradient of a block is one GEMM ``[G; S]^T Z`` with ``Z = [[alpha r, 0], [0, gamma r (x, 1)]]``
(``r`` folded into ``Z``, so ``[G; S]`` does not depend on it and is computed in pass 1). ``tanh``
runs as ``2 sigmoid(2u) - 1`` (``alpha = 2, beta = -1, c = 2``, ``S = G - G^2``, ``gamma = 4``):
torch's vectorised sigmoid costs about a third of its tanh in float64; the absolute error is that
of rounding (about 3e-16). The blocks' ``[G; S]`` are kept in a workspace of the model reused across
steps (``2 B n`` numbers, up to ``_KEPT_BYTES`` = 512 MiB), beyond which pass 2 recomputes them. The slope is
in closed form for the named activations and the ``GaussianWellActivation``; any other elementwise
callable is differentiated by autograd one block at a time. Value and gradient are those of
autograd through ``model(x)`` to rounding (tested to 1e-12 in float64).
"""

from __future__ import annotations

import contextlib
import math

import torch

from ._activations import GaussianWellActivation, _erf_unit, _identity

__all__: list[str] = []

# 2^15 elements per (B, block) array: 256 KiB in float64, in L2 cache, and below the size at which
# torch splits an elementwise op over threads
_BLOCK_ELEMENTS = 1 << 15
# the blocks' [G; S] (2 B n numbers) are kept for pass 2 up to this many bytes, else recomputed
_KEPT_BYTES = 1 << 29


def _sigmoid_slope(u, g, s):
    torch.addcmul(g, g, g, value=-1.0, out=s)  # g - g^2


def _unit(activation):
    """``(c, alpha, beta, gamma, needs_pre, values, slope)`` of ``activation``: ``values(G)`` turns the
    pre-activations ``c u`` held in ``G`` into ``G`` in place, ``slope(u, G, S)`` writes ``S``
    (``u`` is the pre-activation when ``needs_pre``, then ``slope`` runs before ``values``)."""
    if activation is torch.tanh:
        return 2.0, 2.0, -1.0, 4.0, False, torch.sigmoid_, _sigmoid_slope
    if activation is torch.sigmoid:
        return 1.0, 1.0, 0.0, 1.0, False, torch.sigmoid_, _sigmoid_slope
    if activation is torch.relu:
        return 1.0, 1.0, 0.0, 1.0, False, torch.relu_, lambda u, g, s: torch.sign(g, out=s)
    if activation is _identity:
        return 1.0, 1.0, 0.0, 1.0, False, lambda g: g, lambda u, g, s: s.fill_(1.0)
    if activation is _erf_unit:
        def erf_slope(u, g, s):
            torch.mul(u, u, out=s).mul_(-0.5).exp_().mul_(math.sqrt(2.0 / math.pi))

        return 1.0, 1.0, 0.0, 1.0, True, lambda g: g.mul_(1.0 / math.sqrt(2.0)).erf_(), erf_slope
    if isinstance(activation, GaussianWellActivation):
        width2, amplitude = activation.width**2, activation.amplitude

        def well_slope(u, g, s):
            torch.mul(u, u, out=s).mul_(-0.5 / width2).exp_().mul_(u).mul_(amplitude / width2)

        def well_values(g):
            return g.copy_(activation(g))

        return 1.0, 1.0, 0.0, 1.0, True, well_values, well_slope

    def generic_slope(u, g, s):
        with torch.enable_grad():
            u = u.detach().requires_grad_(True)
            (slope,) = torch.autograd.grad(activation(u), u, torch.ones_like(u))
        s.copy_(slope)

    return 1.0, 1.0, 0.0, 1.0, True, lambda g: g.copy_(activation(g)), generic_slope


@contextlib.contextmanager
def _one_intra_op_thread():
    """Run the blocks on one intra-op thread (restored afterwards): every GEMM of a block has an inner
    dimension of ``d + 1`` or ``2 B`` and every elementwise op fewer than 2^15 elements, too little
    work for a thread team to pay; on a loaded machine a team of spinning threads made the step 8x
    slower."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _buffer(workspace, name, numel, like):
    """A flat buffer of at least ``numel`` numbers of ``like``'s dtype and device, reused across calls."""
    buffer = workspace.get(name)
    if buffer is None or buffer.numel() < numel or buffer.dtype != like.dtype or buffer.device != like.device:
        buffer = workspace[name] = torch.empty(numel, dtype=like.dtype, device=like.device)
    return buffer


def fused_squared_loss(activation, particles, x, y, d, bias, block, with_gradient, workspace=None):
    """``(loss, gradient)``: the loss ``(1/B) sum_b (y_b - f(x_b))^2`` (a 0-d tensor) and its gradient
    with respect to ``particles`` (``None`` unless ``with_gradient``); see the module docstring.
    ``workspace``: a dict that keeps the buffers between calls (a fresh one when ``None``)."""
    workspace = {} if workspace is None else workspace
    n, batch, width = particles.shape[0], x.shape[0], particles.shape[1]
    c, alpha, beta, gamma, needs_pre, values, slope = _unit(activation)
    if block is None:  # on a GPU one block: the whole layer
        block = max(64, _BLOCK_ELEMENTS // batch) if particles.device.type == "cpu" else n
    block = min(block, n)
    keep = with_gradient and 2 * batch * n * particles.element_size() <= _KEPT_BYTES
    a = particles[:, 0]
    weights = particles[:, 1:] if bias else particles[:, 1 : 1 + d]  # (n, d (+1))
    columns = width - 1
    inputs = _buffer(workspace, "inputs", batch * columns, x)[: batch * columns].view(batch, columns)
    torch.mul(x, c, out=inputs[:, :d])  # c (x, 1)
    if bias and workspace.get("inputs_shape") != (inputs.data_ptr(), batch, columns, c):
        inputs[:, d].fill_(c)  # the column of ones stays
        workspace["inputs_shape"] = (inputs.data_ptr(), batch, columns, c)
    stacked = _buffer(workspace, "stacked", 2 * batch * (n if keep else block), x)
    pre = _buffer(workspace, "pre", batch * block, x) if needs_pre else None

    def block_values(start, stop, offset, with_slope):
        """``[G; S]`` of particles ``start:stop`` in ``stacked[offset:]``, shape ``(2 B, stop - start)``."""
        m = stop - start
        hs = stacked[offset : offset + 2 * batch * m].view(2 * batch, m)
        g, s = hs[:batch], hs[batch:]
        torch.mm(inputs, (weights if m == n else weights[start:stop]).T, out=g)  # c u
        if needs_pre and with_slope:
            u = pre[: batch * m].view(batch, m)
            u.copy_(g)
            slope(u, g, s)
            values(g)
        else:
            values(g)
            if with_slope:
                slope(None, g, s)
        return hs, g

    if block == n:  # one block (small n, GPU): fewer, larger ops
        hs, g = block_values(0, n, 0, with_gradient)
        f = torch.mv(g, a)
    else:
        f = x.new_zeros(batch)
        for start in range(0, n, block):
            stop = min(start + block, n)
            _, g = block_values(start, stop, 2 * batch * start if keep else 0, keep)
            f.addmv_(g, a[start:stop])
    r = torch.sub(y, f, alpha=alpha / n)
    if beta != 0.0:
        r.sub_(a.sum(), alpha=beta / n)
    loss = torch.dot(r, r).div_(batch)
    if not with_gradient:
        return loss, None
    scale = -2.0 / (n * batch)
    z = _buffer(workspace, "z", 2 * batch * width, x)[: 2 * batch * width].view(2 * batch, width)
    if workspace.get("z_shape") != (z.data_ptr(), batch, width):  # its zero blocks stay zero
        z.zero_()
        workspace["z_shape"] = (z.data_ptr(), batch, width)
    torch.mul(r, alpha * scale, out=z[:batch, 0])
    torch.mul(inputs, (r * (gamma * scale / c))[:, None], out=z[batch:, 1:])
    grad = torch.empty_like(particles)
    if block == n:
        torch.mm(hs.T, z, out=grad)
    for start in range(0, n if block < n else 0, block):
        stop = min(start + block, n)
        if keep:
            m = stop - start
            hs = stacked[2 * batch * start : 2 * batch * stop].view(2 * batch, m)
        else:
            hs, _ = block_values(start, stop, 0, True)
        torch.mm(hs.T, z, out=grad[start:stop])
    if beta != 0.0:
        grad[:, 0].add_(r.sum(), alpha=beta * scale)
    grad[:, 1:].mul_(a[:, None])
    return loss, grad


class FusedSquaredLoss(torch.autograd.Function):
    """The loss as a scalar whose backward returns the gradient computed in the same pass."""

    @staticmethod
    def forward(ctx, particles, x, y, activation, d, bias, block, workspace):
        with_gradient = particles.requires_grad
        with _one_intra_op_thread():
            loss, grad = fused_squared_loss(
                activation, particles.detach(), x, y, d, bias, block, with_gradient, workspace
            )
        ctx.grad = grad
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        grad, ctx.grad = ctx.grad, None
        return grad.mul_(grad_output), None, None, None, None, None, None, None
