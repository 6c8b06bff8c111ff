"""Permutation-invariant and -equivariant networks on sets of points ``(batch, N, d)``.

- ``DeepSets``: ``f(X) = rho(pool_i phi(x_i))`` (Zaheer et al. 2017).
- ``PowerSumEmbedding``: the multisymmetric power sums, monomials ``x^alpha`` with
  ``1 <= |alpha| <= N``, which make the sum decomposition exact and universal for ``d > 1``
  (Han, Li, Lin, Lu, Zhang, Zhang, arXiv:1912.01765; Wagstaff et al. 2019 for the dimension bound).
- ``EquivariantLayer``: ``Y = X Lambda + pool(X) Gamma + 1 b^T`` (Zaheer et al. 2017).
- ``AttentionPooling``: pooling by multi-head attention from learned seed vectors (Set
  Transformer's PMA, Lee et al. 2019).
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from dlpde.shared.checks import check_dtype, check_positive_int

from ._layers import as_generator, linear, mlp, random_tensor

__all__ = ["DeepSets", "PowerSumEmbedding", "EquivariantLayer", "AttentionPooling"]

_POOLINGS = ("sum", "mean", "max")


def _check_set(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"{name} must have shape (batch, N, features), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")


def pool(x: torch.Tensor, kind: str) -> torch.Tensor:
    """Pool ``(batch, N, k)`` over the set dimension: ``sum``, ``mean`` or ``max`` -> ``(batch, k)``."""
    if kind == "sum":
        return x.sum(1)
    if kind == "mean":
        return x.mean(1)
    return x.amax(1)


class DeepSets(nn.Module):
    """``f(X) = rho(pool_{i=1..N} phi(x_i))``, invariant under permutations of the points.

    Args:
        phi: applied to every point, ``(batch, N, d) -> (batch, N, k)`` (e.g. an MLP on the last
            dimension, or ``PowerSumEmbedding``).
        rho: ``(batch, k') -> (batch, *out)``.
        pooling: ``"sum"``, ``"mean"``, ``"max"``, or a module ``(batch, N, k) -> (batch, k')``
            that is itself permutation invariant (e.g. ``AttentionPooling``).

    With ``phi = PowerSumEmbedding(d, N)`` and sum pooling, ``pool phi`` is the vector of
    multisymmetric power sums, which determines the multiset ``{x_i}``; any continuous invariant
    ``f`` is then ``rho`` of it (Zaheer et al. 2017 for d = 1; Han et al. 2019 for d > 1).
    """

    def __init__(self, phi: nn.Module, rho: nn.Module, pooling: str | nn.Module = "sum"):
        super().__init__()
        if not callable(phi) or not callable(rho):
            raise TypeError("phi and rho must be callables (modules)")
        if isinstance(pooling, str):
            if pooling not in _POOLINGS:
                raise ValueError(f"pooling must be one of {_POOLINGS} or a module, got {pooling!r}")
        elif not callable(pooling):
            raise TypeError(f"pooling must be a string or a module, got {type(pooling).__name__}")
        self.phi, self.rho, self.pooling = phi, rho, pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_set(x)
        features = self.phi(x)
        if features.dim() != 3 or features.shape[:2] != x.shape[:2]:
            raise ValueError(f"phi must map (batch, N, d) to (batch, N, k), got {tuple(features.shape)}")
        pooled = pool(features, self.pooling) if isinstance(self.pooling, str) else self.pooling(features)
        return self.rho(pooled)


def _exponents(dim: int, degree: int) -> torch.Tensor:
    """All multi-indices ``alpha`` in N^dim with ``1 <= |alpha| <= degree``, graded order: (K, dim)."""
    rows = []
    for total in range(1, degree + 1):
        for combo in itertools.combinations_with_replacement(range(dim), total):
            alpha = [0] * dim
            for k in combo:
                alpha[k] += 1
            rows.append(alpha)
    return torch.tensor(rows, dtype=torch.long)


class PowerSumEmbedding(nn.Module):
    """The monomials ``x^alpha = prod_k x_k^alpha_k`` with ``1 <= |alpha| <= N`` of a point in R^d.

    Maps ``(..., d) -> (..., K)`` with ``K = C(N + d, d) - 1``. Summed over a set of ``N`` points
    these are the multisymmetric power sums ``p_alpha(X) = sum_i x_i^alpha``, which separate
    multisets of ``N`` points (so ``DeepSets(PowerSumEmbedding(d, N), rho)`` can represent every
    continuous permutation-invariant function; in d = 1 they are ``x, x^2, ..., x^N``). Fixed,
    no parameters. ``exponents`` (K, d) lists the multi-indices.
    """

    def __init__(self, dim: int, n_points: int):
        super().__init__()
        self.dim = check_positive_int(dim, "dim")
        self.n_points = check_positive_int(n_points, "n_points")
        self.register_buffer("exponents", _exponents(self.dim, self.n_points), persistent=False)

    @property
    def n_features(self) -> int:
        return math.comb(self.n_points + self.dim, self.dim) - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.shape[-1:] != (self.dim,):
            raise ValueError(f"x must be a floating-point tensor of shape (..., {self.dim})")
        powers = torch.stack([x**k for k in range(self.n_points + 1)], dim=-1)  # (..., d, N+1)
        coordinate = torch.arange(self.dim, device=x.device)
        selected = powers[..., coordinate, self.exponents]  # (..., K, d)
        return selected.prod(-1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, n_points={self.n_points}, n_features={self.n_features}"


class EquivariantLayer(nn.Module):
    """``Y = X Lambda + pool(X) Gamma + 1 b^T``: permutation equivariant, ``(B, N, C_in) -> (B, N, C_out)``.

    ``pool`` is the mean (Zaheer et al.'s ``1 1^T X / N``), sum or max over the set. Stack with
    pointwise nonlinearities (``nn.Tanh()``) for a deep equivariant network.
    """

    def __init__(self, in_channels: int, out_channels: int, pooling: str = "mean", generator=0,
                 dtype: torch.dtype = torch.float64):
        super().__init__()
        if pooling not in _POOLINGS:
            raise ValueError(f"pooling must be one of {_POOLINGS}, got {pooling!r}")
        check_positive_int(in_channels, "in_channels")
        check_positive_int(out_channels, "out_channels")
        generator, dtype = as_generator(generator), check_dtype(dtype)
        self.pooling = pooling
        self.individual = linear(in_channels, out_channels, generator, dtype)  # Lambda and b
        self.pooled = linear(in_channels, out_channels, generator, dtype, bias=False)  # Gamma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_set(x)
        return self.individual(x) + self.pooled(pool(x, self.pooling)).unsqueeze(1)


class AttentionPooling(nn.Module):
    """Pooling by multi-head attention (PMA of the Set Transformer), ``(B, N, k) -> (B, S k)``.

    ``S`` learned seed vectors ``s_m`` attend to the set ``Z``:
    ``H = LayerNorm(S + Multihead(S, Z, Z))``, ``out = LayerNorm(H + rFF(H))`` with
    ``Multihead = concat_h softmax(Q_h K_h^T / sqrt(k/h)) V_h W_O``. Invariant under permutations of
    the ``N`` points (attention is a weighted sum over keys). Lee et al., ICML 2019.
    """

    def __init__(self, features: int, n_heads: int = 4, n_seeds: int = 1, generator=0,
                 dtype: torch.dtype = torch.float64):
        super().__init__()
        check_positive_int(features, "features")
        check_positive_int(n_heads, "n_heads")
        check_positive_int(n_seeds, "n_seeds")
        if features % n_heads:
            raise ValueError(f"features ({features}) must be divisible by n_heads ({n_heads})")
        generator, dtype = as_generator(generator), check_dtype(dtype)
        self.features, self.n_heads, self.n_seeds = features, n_heads, n_seeds
        self.seeds = nn.Parameter(random_tensor((n_seeds, features), generator, dtype))
        self.query = linear(features, features, generator, dtype)
        self.key = linear(features, features, generator, dtype)
        self.value = linear(features, features, generator, dtype)
        self.output = linear(features, features, generator, dtype)
        self.feed_forward = mlp([features, features, features], generator, dtype, "gelu")
        self.norm_attention = nn.LayerNorm(features, dtype=dtype)
        self.norm_output = nn.LayerNorm(features, dtype=dtype)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        batch, length, _ = t.shape
        return t.reshape(batch, length, self.n_heads, -1).transpose(1, 2)  # (B, h, L, k/h)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        _check_set(z, "z")
        if z.shape[-1] != self.features:
            raise ValueError(f"z must have {self.features} features, got {z.shape[-1]}")
        batch = z.shape[0]
        seeds = self.seeds.unsqueeze(0).expand(batch, -1, -1)
        q, k, v = self._heads(self.query(seeds)), self._heads(self.key(z)), self._heads(self.value(z))
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
        attended = (weights @ v).transpose(1, 2).reshape(batch, self.n_seeds, self.features)
        h = self.norm_attention(seeds + self.output(attended))
        out = self.norm_output(h + self.feed_forward(h))
        return out.reshape(batch, self.n_seeds * self.features)
