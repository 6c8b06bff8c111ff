"""Each property checker passes on a function with the property and fails on one without it."""

import pytest
import torch

from dlpde.shared import make_generator
from dlpde.shared import testing as T

DT = torch.float64


@pytest.fixture
def points():
    return torch.randn(3, 5, 2, generator=make_generator(0), dtype=DT)


def test_permutation_invariance(points):
    assert T.assert_permutation_invariant(lambda x: torch.tanh(x).sum((1, 2)), points) < 1e-12
    weights = torch.arange(5, dtype=DT)[:, None]
    with pytest.raises(AssertionError, match="invariant"):
        T.assert_permutation_invariant(lambda x: (weights * x).sum((1, 2)), points)


def test_permutation_equivariance(points):
    def good(x):
        return x - x.mean(1, keepdim=True)

    assert T.assert_permutation_equivariant(good, points) < 1e-12
    with pytest.raises(AssertionError, match="equivariant"):
        T.assert_permutation_equivariant(lambda x: torch.cumsum(x, 1), points)


def vandermonde(x):  # (B, N, 1) -> prod_{i<j} (x_j - x_i)
    v = x[..., 0]
    diff = v[:, None, :] - v[:, :, None]
    iu = torch.triu_indices(v.shape[1], v.shape[1], 1)
    return diff[:, iu[0], iu[1]].prod(-1)


def test_antisymmetry_values_and_sign_log(points):
    x = points[..., :1]
    assert T.assert_antisymmetric(vandermonde, x) < 1e-12

    def sign_log(y):
        v = vandermonde(y)
        return torch.sign(v), torch.log(v.abs())

    T.assert_antisymmetric(sign_log, x)
    with pytest.raises(AssertionError, match="antisymmetric"):
        T.assert_antisymmetric(lambda y: vandermonde(y).abs(), x)
    # Antisymmetric only within spin groups {0,1,2} and {3,4}: a product of two Vandermondes.
    def spins(y):
        return vandermonde(y[:, :3]) * vandermonde(y[:, 3:])

    T.assert_antisymmetric(spins, x, groups=[range(3), range(3, 5)])
    with pytest.raises(AssertionError):
        T.assert_antisymmetric(spins, x)  # not antisymmetric across the groups


def test_rotation_invariance_and_equivariance():
    x = torch.randn(4, 6, 3, generator=make_generator(1), dtype=DT)

    def energy(pos):
        d = torch.cdist(pos, pos)
        return torch.exp(-d).sum((1, 2))

    def forces(pos):
        pos = pos.detach().requires_grad_(True)
        return -torch.autograd.grad(energy(pos).sum(), pos)[0]

    assert T.assert_rotation_invariant(energy, x) < 1e-10
    assert T.assert_rotation_equivariant(forces, x) < 1e-10
    with pytest.raises(AssertionError, match="invariant"):
        T.assert_rotation_invariant(lambda p: p[..., 0].sum(-1), x, translations=False)
    with pytest.raises(AssertionError, match="equivariant"):
        T.assert_rotation_equivariant(lambda p: p**2, x, translations=False)
    r = T.random_rotation(3, generator=make_generator(2))
    torch.testing.assert_close(r @ r.T, torch.eye(3, dtype=DT))
    assert abs(float(torch.det(r)) - 1) < 1e-12
    reflection = T.random_rotation(3, generator=make_generator(2), reflection=True)
    assert abs(float(torch.det(reflection)) + 1) < 1e-12


def test_adjoint():
    a = torch.randn(4, 6, generator=make_generator(3), dtype=DT)
    x, y = torch.zeros(2, 6, dtype=DT), torch.zeros(2, 4, dtype=DT)
    assert T.assert_adjoint(lambda u: u @ a.T, lambda v: v @ a, x, y) < 1e-14
    with pytest.raises(AssertionError, match="adjoint"):
        T.assert_adjoint(lambda u: u @ a.T, lambda v: (v @ a) * 1.01, x, y)


def test_convergence_order_and_monte_carlo():
    h = [0.1, 0.05, 0.025]
    assert abs(T.convergence_order(h, [x**2 for x in h]) - 2) < 1e-12
    with pytest.raises(AssertionError):
        T.assert_convergence_order(h, [x for x in h], expected=2)
    assert T.assert_monte_carlo_close(1.02, 0.01, 1.0) == pytest.approx(2.0)
    with pytest.raises(AssertionError, match="sigma"):
        T.assert_monte_carlo_close(1.1, 0.01, 1.0)


def test_gradcheck_and_finite_differences():
    x = torch.randn(3, 4, generator=make_generator(4), dtype=DT, requires_grad=True)
    T.assert_gradcheck(lambda y: torch.sin(y).sum(), (x,))

    class WrongGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, y):
            ctx.save_for_backward(y)
            return torch.sin(y)

        @staticmethod
        def backward(ctx, g):
            (y,) = ctx.saved_tensors
            return g * torch.cos(y) * 1.1

    with pytest.raises(AssertionError):
        T.assert_gradcheck(WrongGrad.apply, (x,))

    def f(y):
        return (y**3).sum(-1)

    T.assert_matches_finite_differences(f, x, 3 * x.detach() ** 2)
    with pytest.raises(AssertionError, match="finite differences"):
        T.assert_matches_finite_differences(f, x, 3.1 * x.detach() ** 2)
