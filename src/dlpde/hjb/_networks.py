"""Networks ``u(x, t; w)`` for the neural Hamilton-Jacobi solvers.

Both networks take ``x`` of shape ``(B, d)`` and ``t`` of shape ``(B,)`` and return ``(B,)``.
Inputs are rescaled to ``[-1, 1]`` from the problem's box ``|x_i| <= radius_i``, ``0 <= t <= T``.
Parameters are initialised from an explicit generator (Glorot-uniform weights, zero biases), so
the same seed gives the same network.

- ``ValueNetwork``: a multilayer perceptron with ``tanh`` (smooth, so that ``grad u`` and its
  parameter derivatives exist everywhere).
- ``MinOfHeadsNetwork``: ``u = min_k u_k`` over ``heads`` independent ``tanh`` perceptrons (each
  head smooth; the minimum carries kinks exactly where two heads tie, as the viscosity solution
  ``min_k u_k`` of min-of-convex data does).
- ``DGMNetwork``: the gated architecture of Sirignano & Spiliopoulos (2018),
  ``S_1 = s(W_1 z + b_1)`` and for each layer ``Z = s(U_z z + W_z S + b_z)``,
  ``G = s(U_g z + W_g S + b_g)``, ``R = s(U_r z + W_r S + b_r)``,
  ``H = s(U_h z + W_h (S * R) + b_h)``, ``S <- (1 - G) * H + Z * S``; output ``w^T S + b``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dlpde.shared.checks import check_choice, check_positive, check_positive_int, check_tensor
from dlpde.shared.device import resolve_device, resolve_dtype
from dlpde.shared.random import make_generator

__all__ = ["ValueNetwork", "MinOfHeadsNetwork", "DGMNetwork"]


def _glorot(fan_in: int, fan_out: int, generator, dtype, device) -> nn.Parameter:
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    weight = (2 * torch.rand(fan_out, fan_in, generator=generator, dtype=dtype) - 1) * bound
    return nn.Parameter(weight.to(device))


def _zeros(n: int, dtype, device) -> nn.Parameter:
    return nn.Parameter(torch.zeros(n, dtype=dtype, device=device))


def _dtype_and_device(dtype, device):
    """float32 or float64 (names or dtypes) and a CPU or CUDA device."""
    dtype = check_choice(resolve_dtype(dtype), "dtype", (torch.float32, torch.float64))
    return dtype, resolve_device(device)


class _ScaledInput(nn.Module):
    """Maps ``(x, t)`` to ``z = (x / radius, 2 t / T - 1)`` of shape ``(B, d + 1)``."""

    def __init__(self, dim: int, radius, horizon: float, dtype, device):
        super().__init__()
        if isinstance(radius, torch.Tensor) and radius.dim() == 1:
            radius = tuple(check_tensor(radius, "radius", dtype="any").tolist())
        values = radius if isinstance(radius, (tuple, list)) else (radius,)
        if len(values) not in (1, dim):
            raise ValueError(f"radius must be a positive number or {dim} positive numbers, got {radius!r}")
        radius = torch.tensor([check_positive(r, "radius") for r in values], dtype=torch.float64)
        self.dim = dim
        self.register_buffer("inverse_radius", (1.0 / radius.expand(dim)).to(dtype=dtype, device=device))
        self.horizon = check_positive(horizon, "horizon")

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # NaN passes (a hot path; NaN in gives NaN out); the dtype must be the network's
        dtype = self.inverse_radius.dtype
        check_tensor(x, "x", shape=(None, self.dim), dtype=dtype, finite=False, nonempty=False)
        check_tensor(t, "t", shape=(x.shape[0],), dtype=dtype, finite=False, nonempty=False)
        return torch.cat([x * self.inverse_radius, (2.0 / self.horizon * t - 1.0).unsqueeze(-1)], dim=-1)


class ValueNetwork(nn.Module):
    """``u(x, t) = w^T tanh(W_L tanh(W_1 z + b_1) + b_L) + b`` (shown for two layers) with ``depth``
    hidden layers."""

    def __init__(
        self,
        dim: int,
        width: int = 64,
        depth: int = 3,
        *,
        radius=1.0,
        horizon: float = 1.0,
        seed: int | torch.Generator = 0,
        dtype=torch.float32,
        device="cpu",
    ):
        super().__init__()
        dim, width, depth = (
            check_positive_int(v, n) for v, n in ((dim, "dim"), (width, "width"), (depth, "depth"))
        )
        dtype, device = _dtype_and_device(dtype, device)
        generator = make_generator(seed)
        self.inputs = _ScaledInput(dim, radius, horizon, dtype, device)
        sizes = [dim + 1] + [width] * depth
        self.weights = nn.ParameterList(
            _glorot(a, b, generator, dtype, device) for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.biases = nn.ParameterList(_zeros(b, dtype, device) for b in sizes[1:])
        self.output_weight = _glorot(width, 1, generator, dtype, device)
        self.output_bias = _zeros(1, dtype, device)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.inputs(x, t)
        for weight, bias in zip(self.weights, self.biases):
            h = torch.tanh(h @ weight.T + bias)
        return (h @ self.output_weight.T + self.output_bias).squeeze(-1)


class MinOfHeadsNetwork(nn.Module):
    """``u(x, t) = min_k u_k(x, t)`` over ``heads`` independent ``tanh`` perceptrons ``u_k`` (each a
    ``ValueNetwork`` of ``width`` and ``depth``, evaluated together by batched matrix products).

    For convex ``H`` and initial data ``g = min_k g_k`` the viscosity solution is ``min_k u_k`` with
    ``u_k`` the solution from ``g_k`` (the Hopf-Lax formula commutes with the minimum; Darbon & Osher
    2016): smooth heads and a kink exactly where two of them tie. ``heads_at(x, t)`` gives all heads
    at the same points, ``(B, K)``; ``each_head(x, t)`` evaluates head ``k`` on its own points
    ``x[k]``, ``t[k]`` (shapes ``(K, B, d)``, ``(K, B)`` -> ``(K, B)``), so that one backward pass
    gives every head's derivatives.
    """

    def __init__(
        self,
        dim: int,
        heads: int = 3,
        width: int = 32,
        depth: int = 2,
        *,
        radius=1.0,
        horizon: float = 1.0,
        seed: int | torch.Generator = 0,
        dtype=torch.float32,
        device="cpu",
    ):
        super().__init__()
        dim, heads, width, depth = (
            check_positive_int(v, n)
            for v, n in ((dim, "dim"), (heads, "heads"), (width, "width"), (depth, "depth"))
        )
        dtype, device = _dtype_and_device(dtype, device)
        generator = make_generator(seed)
        self.inputs = _ScaledInput(dim, radius, horizon, dtype, device)
        self.dim, self.heads = dim, heads
        sizes = [dim + 1] + [width] * depth + [1]
        # weights (K, fan_in, fan_out): one Glorot draw per head and layer
        self.weights = nn.ParameterList(
            nn.Parameter(
                torch.stack([_glorot(a, b, generator, dtype, device).data.T for _ in range(heads)])
            )
            for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.biases = nn.ParameterList(_zeros(heads * b, dtype, device) for b in sizes[1:])

    def each_head(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Head ``k`` at ``(x[k], t[k])``: ``x`` of shape ``(K, B, d)``, ``t`` ``(K, B)`` -> ``(K, B)``."""
        k = self.heads
        check_tensor(x, "x", shape=(k, None, self.dim), dtype="floating", finite=False, nonempty=False)
        check_tensor(t, "t", shape=(k, x.shape[1]), dtype="floating", finite=False, nonempty=False)
        b = x.shape[1]
        h = self.inputs(x.reshape(k * b, self.dim), t.reshape(k * b)).reshape(k, b, self.dim + 1)
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(bias.reshape(k, 1, -1), h, weight)
            if i < last:
                h = torch.tanh(h)
        return h.squeeze(-1)

    def heads_at(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Every head at the same points: ``(B, d)``, ``(B,)`` -> ``(B, K)``."""
        k = self.heads
        return self.each_head(x.expand(k, *x.shape), t.expand(k, *t.shape)).T

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.heads_at(x, t).min(-1).values


class DGMNetwork(nn.Module):
    """The DGM network (Sirignano & Spiliopoulos 2018) with ``layers`` gated layers of ``width``."""

    def __init__(
        self,
        dim: int,
        width: int = 50,
        layers: int = 3,
        *,
        radius=1.0,
        horizon: float = 1.0,
        seed: int | torch.Generator = 0,
        dtype=torch.float32,
        device="cpu",
    ):
        super().__init__()
        dim, width, layers = (
            check_positive_int(v, n) for v, n in ((dim, "dim"), (width, "width"), (layers, "layers"))
        )
        dtype, device = _dtype_and_device(dtype, device)
        generator = make_generator(seed)
        self.inputs = _ScaledInput(dim, radius, horizon, dtype, device)
        n_in = dim + 1
        self.first_weight = _glorot(n_in, width, generator, dtype, device)
        self.first_bias = _zeros(width, dtype, device)
        # per layer and gate (Z, G, R, H): input weights U (4 width x n_in), state weights W
        self.input_weights = nn.ParameterList(
            _glorot(n_in, 4 * width, generator, dtype, device) for _ in range(layers)
        )
        self.state_weights = nn.ParameterList(
            _glorot(width, 4 * width, generator, dtype, device) for _ in range(layers)
        )
        self.gate_biases = nn.ParameterList(_zeros(4 * width, dtype, device) for _ in range(layers))
        self.output_weight = _glorot(width, 1, generator, dtype, device)
        self.output_bias = _zeros(1, dtype, device)
        self.width = width

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        z = self.inputs(x, t)
        w = self.width
        state = torch.tanh(z @ self.first_weight.T + self.first_bias)
        for u_weight, w_weight, bias in zip(self.input_weights, self.state_weights, self.gate_biases):
            from_input = z @ u_weight.T + bias
            from_state = state @ w_weight[: 3 * w].T
            gate_z, gate_g, gate_r = torch.tanh(from_input[:, : 3 * w] + from_state).split(w, dim=-1)
            candidate = torch.tanh(from_input[:, 3 * w :] + (state * gate_r) @ w_weight[3 * w :].T)
            state = (1 - gate_g) * candidate + gate_z * state
        return (state @ self.output_weight.T + self.output_bias).squeeze(-1)
