"""Invariance and equivariance of the set networks under random permutations (float64, 1e-10),
each checker shown to fail on a deliberately broken network; the power-sum embedding against
its closed form and its separation property."""

import math

import pytest
import torch
from torch import nn

from dlpde.shared import make_generator
from dlpde.shared.testing import assert_permutation_equivariant, assert_permutation_invariant
from dlpde.symmetry import AttentionPooling, DeepSets, EquivariantLayer, PowerSumEmbedding
from dlpde.symmetry._layers import mlp

DT = torch.float64


def points(batch, n, d, seed=0):
    return torch.randn(batch, n, d, generator=make_generator(seed), dtype=DT)


class PositionTagged(nn.Module):
    """Adds the index of each point to its features: breaks permutation symmetry on purpose."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        index = torch.arange(x.shape[1], dtype=x.dtype).reshape(1, -1, 1) / x.shape[1]
        return self.inner(x + 0.1 * index)


@pytest.mark.parametrize("pooling", ["sum", "mean", "max", "attention"])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_deep_sets_invariant(pooling, d):
    g = make_generator(1)
    phi = mlp([d, 16, 8], g, DT)
    if pooling == "attention":
        pooling, rho_in = AttentionPooling(8, n_heads=2, n_seeds=2, generator=g), 16
    else:
        rho_in = 8
    model = DeepSets(phi, mlp([rho_in, 16, 3], g, DT), pooling)
    x = points(6, 5, d)
    assert_permutation_invariant(model, x)
    with pytest.raises(AssertionError, match="not permutation invariant"):
        assert_permutation_invariant(DeepSets(PositionTagged(phi), model.rho, model.pooling), x)


@pytest.mark.parametrize("d,n", [(1, 4), (2, 3), (3, 4)])
def test_power_sum_deep_sets_invariant_and_embedding_equivariant(d, n):
    embedding = PowerSumEmbedding(d, n)
    x = points(5, n, d, seed=2)
    assert embedding.n_features == math.comb(n + d, d) - 1 == embedding(x).shape[-1]
    assert_permutation_equivariant(embedding, x)
    model = DeepSets(embedding, mlp([embedding.n_features, 16, 1], make_generator(3), DT))
    assert_permutation_invariant(model, x)
    with pytest.raises(AssertionError, match="not permutation equivariant"):
        assert_permutation_equivariant(PositionTagged(embedding), x)


def test_power_sums_match_closed_form():
    """Every monomial x^alpha, 1 <= |alpha| <= N, appears exactly once (d = 2, N = 3)."""
    embedding = PowerSumEmbedding(2, 3)
    x = torch.tensor([[0.3, -1.7]], dtype=DT)
    expected = {(a, b): 0.3**a * (-1.7) ** b for a in range(4) for b in range(4) if 1 <= a + b <= 3}
    got = {tuple(alpha.tolist()): float(v) for alpha, v in zip(embedding.exponents, embedding(x)[0])}
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-14)


@pytest.mark.parametrize("d,n", [(2, 3), (3, 3), (2, 4)])
def test_power_sums_are_locally_injective_modulo_permutations(d, n):
    """The Jacobian of X -> sum_i phi(x_i) has full rank N d at generic X: the multiset is
    recovered locally (the separation property behind the universality for d > 1). With a
    truncated embedding (degree N - 1 in d = 1, too few features) the rank drops."""
    x = points(1, n, d, seed=4)[0]
    embedding = PowerSumEmbedding(d, n)
    jac = torch.autograd.functional.jacobian(lambda y: embedding(y).sum(0), x).reshape(-1, n * d)
    assert int(torch.linalg.matrix_rank(jac)) == n * d
    short = PowerSumEmbedding(1, n - 1)
    y = points(1, n, 1, seed=5)[0]
    jac = torch.autograd.functional.jacobian(lambda z: short(z).sum(0), y).reshape(-1, n)
    assert int(torch.linalg.matrix_rank(jac)) == n - 1


@pytest.mark.parametrize("pooling", ["sum", "mean", "max"])
def test_equivariant_layer(pooling):
    g = make_generator(6)
    network = nn.Sequential(EquivariantLayer(3, 8, pooling, generator=g), nn.Tanh(),
                            EquivariantLayer(8, 2, pooling, generator=g))
    x = points(4, 7, 3, seed=7)
    assert_permutation_equivariant(network, x)
    assert_permutation_invariant(lambda y: network(y).sum(1), x)
    with pytest.raises(AssertionError, match="not permutation equivariant"):
        assert_permutation_equivariant(PositionTagged(network), x)


def test_equivariant_layer_formula():
    """Y = X Lambda + mean(X) Gamma + b, checked against the explicit matrices."""
    layer = EquivariantLayer(3, 2, "mean", generator=8)
    x = points(2, 5, 3, seed=9)
    lam, b, gamma = layer.individual.weight.T, layer.individual.bias, layer.pooled.weight.T
    expected = x @ lam + x.mean(1, keepdim=True) @ gamma + b
    torch.testing.assert_close(layer(x), expected, rtol=1e-14, atol=1e-14)


def test_attention_pooling_invariant_and_broken_copy_fails():
    pooling = AttentionPooling(8, n_heads=4, n_seeds=3, generator=10)
    z = points(5, 6, 8, seed=11)
    assert pooling(z).shape == (5, 24)
    assert_permutation_invariant(pooling, z)
    with pytest.raises(AssertionError, match="not permutation invariant"):
        assert_permutation_invariant(PositionTagged(pooling), z)


def test_same_seed_same_network_and_bad_inputs():
    a, b = EquivariantLayer(2, 3, generator=5), EquivariantLayer(2, 3, generator=5)
    torch.testing.assert_close(a.individual.weight, b.individual.weight, rtol=0, atol=0)
    with pytest.raises(ValueError, match="pooling"):
        EquivariantLayer(2, 3, pooling="median")
    with pytest.raises(ValueError, match="divisible"):
        AttentionPooling(6, n_heads=4)
    with pytest.raises(ValueError, match="shape"):
        a(torch.zeros(3, 2, dtype=DT))
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        PowerSumEmbedding(2, 3)(torch.zeros(4, 3, dtype=DT))
    with pytest.raises(ValueError, match="pooling"):
        DeepSets(nn.Identity(), nn.Identity(), pooling="median")
