"""Hamiltonians: closed-form derivatives against autograd and finite differences, Hessians
against torch.func, Lagrangians against the Fenchel-Young (in)equality. Float64 throughout;
tolerances are those of central differences with step 1e-6 (errors ~1e-9)."""

import math

import pytest
import torch

from dlpde.hjb import Hamiltonian, LQRHamiltonian, NormHamiltonian, QuadraticHamiltonian
from dlpde.shared import make_generator
from dlpde.shared.testing import assert_matches_finite_differences


def _random(shape, seed):
    return torch.randn(shape, generator=make_generator(seed), dtype=torch.float64)


def _spd(d, seed):
    a = _random((d, d), seed)
    return a @ a.T / d + 0.5 * torch.eye(d, dtype=torch.float64)


def _lqr(d, seed=0, m=2):
    return LQRHamiltonian(
        _random((d, d), seed) / d**0.5, _random((d, m), seed + 1), _spd(d, seed + 2), _spd(m, seed + 3)
    )


HAMILTONIANS = {
    "quadratic": lambda d: QuadraticHamiltonian(_spd(d, 5)),
    "norm1": lambda d: NormHamiltonian(1, speed=0.7),
    "norm2": lambda d: NormHamiltonian(2, speed=1.3),
    "norminf": lambda d: NormHamiltonian(float("inf"), speed=0.9),
    "lqr": lambda d: _lqr(d),
}


@pytest.mark.parametrize("name", sorted(HAMILTONIANS))
@pytest.mark.parametrize("d", [1, 2, 10])
def test_derivatives_match_finite_differences(name, d):
    h = HAMILTONIANS[name](d)
    x, p = _random((6, d), 10), _random((6, d), 11)
    assert_matches_finite_differences(lambda q: h.value(x, q), p, h.grad_p(x, p), rtol=1e-6, atol=1e-7)
    assert_matches_finite_differences(lambda y: h.value(y, p), x, h.grad_x(x, p), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["quadratic", "lqr"])
def test_closed_forms_match_the_autograd_defaults(name):
    h = HAMILTONIANS[name](4)
    generic = Hamiltonian.from_function(h.value, convex=True)
    x, p = _random((5, 4), 1), _random((5, 4), 2)
    torch.testing.assert_close(generic.grad_p(x, p), h.grad_p(x, p), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(generic.grad_x(x, p), h.grad_x(x, p), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(generic.hessian(x, p), h.hessian(x, p), rtol=1e-12, atol=1e-12)


def test_finite_difference_checker_fails_on_a_wrong_gradient():
    h = QuadraticHamiltonian(_spd(3, 0))
    x, p = _random((4, 3), 1), _random((4, 3), 2)
    with pytest.raises(AssertionError):
        assert_matches_finite_differences(lambda q: h.value(x, q), p, 1.01 * h.grad_p(x, p))


@pytest.mark.parametrize("name", ["quadratic", "lqr"])
def test_lagrangian_is_the_legendre_transform(name):
    """Fenchel-Young: L(x, q) >= p.q - H(x, p) for all p, with equality at q = H_p(x, p)."""
    h = HAMILTONIANS[name](3)
    if name == "lqr":
        h = LQRHamiltonian(h.A, _random((3, 3), 9), h.Q, _spd(3, 4))  # B R^-1 B^T invertible
    x, p = _random((50, 3), 3), _random((50, 3), 4)
    q = h.grad_p(x, p)
    torch.testing.assert_close(h.lagrangian(x, q), (p * q).sum(-1) - h.value(x, p), rtol=1e-10, atol=1e-10)
    other = _random((50, 3), 5)
    assert bool((h.lagrangian(x, q) >= (other * q).sum(-1) - h.value(x, other) - 1e-10).all())


@pytest.mark.parametrize("order", [1, 2, float("inf")])
def test_norm_lagrangian_is_the_dual_ball_indicator(order):
    h = NormHamiltonian(order, speed=0.8)
    x, p = _random((40, 5), 1), _random((40, 5), 2)
    q = h.grad_p(x, p)  # a subgradient: on the dual sphere, with p.q = H(p)
    torch.testing.assert_close((p * q).sum(-1), h.value(x, p), rtol=1e-12, atol=1e-12)
    assert bool((h.lagrangian(x, q) == 0).all())
    assert bool(torch.isinf(h.lagrangian(x, 1.01 * q)).all())
    far = 10 * _random((40, 5), 3)
    projected = h.project_velocity(far)
    assert bool((h.lagrangian(x, projected) == 0).all())
    assert bool((h.lagrangian(x, 0.5 * projected) == 0).all())


def test_l1_projection_is_the_nearest_point_of_the_ball():
    """Projection onto the l1 ball (used for H = c|p|_inf) against a brute-force search in 2-D."""
    h = NormHamiltonian(float("inf"), speed=1.0)
    q = 3 * _random((20, 2), 7)
    projected = h.project_velocity(q)
    angle = torch.linspace(0, 2 * math.pi, 20001, dtype=torch.float64)
    boundary = torch.stack([angle.cos(), angle.sin()], -1)
    boundary = boundary / boundary.abs().sum(-1, keepdim=True)
    brute = boundary[torch.cdist(q, boundary).argmin(1)]
    inside = q.abs().sum(-1) <= 1
    brute[inside] = q[inside]
    torch.testing.assert_close(projected, brute, atol=1e-3, rtol=0)


def test_from_function_and_bad_inputs():
    h = Hamiltonian.from_function(lambda x, p: 0.5 * (p**2).sum(-1) + torch.cos(x).sum(-1))
    x, p = _random((3, 2), 0), _random((3, 2), 1)
    torch.testing.assert_close(h.grad_x(x, p), -torch.sin(x))
    with pytest.raises(ValueError, match="same shape"):
        h.value(x, p[:, :1])
    with pytest.raises(TypeError):
        Hamiltonian.from_function(3.0)
    with pytest.raises(ValueError, match="shape"):
        Hamiltonian.from_function(lambda x, p: p).value(x, p)
    with pytest.raises(ValueError, match="order"):
        NormHamiltonian(3)
    with pytest.raises(ValueError, match="positive semidefinite"):
        QuadraticHamiltonian(-torch.eye(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="symmetric"):
        QuadraticHamiltonian(torch.tensor([[1.0, 0.5], [0.0, 1.0]], dtype=torch.float64))
    with pytest.raises(NotImplementedError):
        QuadraticHamiltonian(torch.zeros(2, 2, dtype=torch.float64)).lagrangian(x, p)
    with pytest.raises(ValueError, match="positive definite"):
        LQRHamiltonian(torch.eye(2), torch.eye(2), torch.eye(2), torch.zeros(2, 2))
