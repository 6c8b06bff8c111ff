"""Exact Hopf-Lax for a minimum of convex pieces (closed form and convex solver) against
independent closed forms and brute force; the multi-start path's self-reported hit rate.

Tolerances (float64): the convex solver stops at a relative step of 1e-10, which puts smooth
values within ~1e-12 of the optimum; pieces with a kink (cones) converge linearly to ~1e-9.
"""

import pytest
import torch

from dlpde.hjb import (
    NormHamiltonian,
    QuadraticHamiltonian,
    QuadraticPieces,
    hopf_lax_min_of_convex,
    hopf_lax_value,
    hopf_value,
)
from dlpde.shared import make_generator


def _random_pieces(dim, count=8, seed=1):
    generator = make_generator(seed)
    centres = 0.5 * torch.randn(count, dim, generator=generator, dtype=torch.float64)
    precisions = 0.5 + 1.5 * torch.rand(count, generator=generator, dtype=torch.float64)
    offsets = 0.5 * torch.rand(count, generator=generator, dtype=torch.float64)
    return centres, precisions, offsets


def _points(n, dim, seed=2, horizon=1.0):
    generator = make_generator(seed)
    x = 2 * torch.rand(n, dim, generator=generator, dtype=torch.float64) - 1
    t = horizon * (1 - torch.rand(n, generator=generator, dtype=torch.float64))
    return x, t


def _brute_force_isotropic(x, t, centres, precisions, offsets):
    """``min_k q_k |x - a_k|^2 / (2 (1 + t q_k)) + c_k`` written directly on a (B, K, d) tensor."""
    distance_sq = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
    return (0.5 * precisions / (1 + t[:, None] * precisions) * distance_sq + offsets).min(-1).values


def test_d100_min_of_quadratics_is_exact_at_every_point():
    dim = 100
    centres, precisions, offsets = _random_pieces(dim)
    pieces = QuadraticPieces(centres, precisions, offsets)
    hamiltonian = QuadraticHamiltonian.identity(dim)
    x, t = _points(400, dim)
    reference = _brute_force_isotropic(x, t, centres, precisions, offsets)
    closed, closed_y = hopf_lax_min_of_convex(hamiltonian, pieces, x, t)
    solved, solved_y, info = hopf_lax_min_of_convex(
        hamiltonian, pieces, x, t, method="convex_solver", return_info=True
    )
    assert (closed - reference).abs().max() < 1e-10
    assert bool(((solved - reference).abs() < 1e-8).all())  # 100 % of the points
    assert info["converged"] == 1.0
    assert (solved_y - closed_y).abs().max() < 1e-6
    # the minimiser attains the value: g(y) + |x - y|^2 / (2t)
    attained = pieces(closed_y) + ((x - closed_y) ** 2).sum(-1) / (2 * t)
    assert (attained - reference).abs().max() < 1e-10
    value_only, nothing = hopf_lax_min_of_convex(hamiltonian, pieces, x, t, minimiser=False)
    assert nothing is None and torch.equal(value_only, closed)


def test_anisotropic_pieces_with_a_mass_matrix_closed_form_equals_solver():
    dim, count = 10, 4
    generator = make_generator(5)
    centres = torch.randn(count, dim, generator=generator, dtype=torch.float64)
    factors = torch.randn(count, dim, dim, generator=generator, dtype=torch.float64) / dim**0.5
    precisions = factors @ factors.transpose(1, 2) + 0.3 * torch.eye(dim, dtype=torch.float64)
    root = torch.randn(dim, dim, generator=generator, dtype=torch.float64) / dim**0.5
    mass = root @ root.T + 0.5 * torch.eye(dim, dtype=torch.float64)
    pieces = QuadraticPieces(centres, precisions, torch.rand(count, generator=generator, dtype=torch.float64))
    hamiltonian = QuadraticHamiltonian(mass)
    x, t = _points(200, dim, seed=6)
    closed, _ = hopf_lax_min_of_convex(hamiltonian, pieces, x, t)
    solved, _ = hopf_lax_min_of_convex(hamiltonian, pieces, x, t, method="convex_solver")
    assert (closed - solved).abs().max() < 1e-9
    # brute force: (Q^-1 + t M)^-1 for every point and piece
    brute = torch.stack(
        [
            torch.stack(
                [
                    0.5
                    * (x[b] - centres[k])
                    @ torch.linalg.solve(torch.linalg.inv(precisions[k]) + t[b] * mass, x[b] - centres[k])
                    + pieces.offsets[k]
                    for k in range(count)
                ]
            ).min()
            for b in range(20)
        ]
    )
    assert (closed[:20] - brute).abs().max() < 1e-10


@pytest.mark.parametrize("dim", [1, 10])
def test_union_of_balls_cones_against_their_closed_form(dim):
    """``g = min_k |x - a_k| - r_k``, ``H = |p|^2/2``: ``u_k = |x - a_k|^2/(2t) - r_k`` inside
    ``|x - a_k| < t`` and ``|x - a_k| - t/2 - r_k`` outside (each piece has a kink at its centre)."""
    generator = make_generator(3)
    centres = torch.randn(3, dim, generator=generator, dtype=torch.float64)
    radii = torch.tensor([0.2, 0.4, 0.3], dtype=torch.float64)
    pieces = [lambda y, a=a, r=r: torch.linalg.vector_norm(y - a, dim=-1) - r for a, r in zip(centres, radii)]
    x, t = _points(150, dim, seed=4)
    value, minimiser, info = hopf_lax_min_of_convex(
        QuadraticHamiltonian.identity(dim), pieces, x, t, return_info=True
    )
    distance = torch.linalg.vector_norm(x[:, None] - centres, dim=-1)
    exact = (
        torch.where(distance < t[:, None], distance**2 / (2 * t[:, None]), distance - t[:, None] / 2) - radii
    )
    assert (value - exact.min(1).values).abs().max() < 1e-8
    assert torch.equal(info["branch"], exact.argmin(1))


def test_norm_hamiltonian_projected_solver_against_closed_form():
    """``H = c |p|_2``: ``u = min_{|x - y| <= c t} g(y)``; for quadratic pieces
    ``u_k = q_k max(|x - a_k| - c t, 0)^2 / 2 + c_k``."""
    dim, speed = 10, 0.7
    centres, precisions, offsets = _random_pieces(dim, count=3, seed=7)
    pieces = QuadraticPieces(centres, precisions, offsets)
    x, t = _points(200, dim, seed=8)
    value, _ = hopf_lax_min_of_convex(NormHamiltonian(2, speed), pieces, x, t)
    distance = torch.linalg.vector_norm(x[:, None] - centres, dim=-1)
    exact = (0.5 * precisions * (distance - speed * t[:, None]).clamp_min(0) ** 2 + offsets).min(1).values
    assert (value - exact).abs().max() < 1e-9


def test_time_zero_gives_the_initial_data_and_inputs_are_checked():
    centres, precisions, offsets = _random_pieces(3, count=2)
    pieces = QuadraticPieces(centres, precisions, offsets)
    hamiltonian = QuadraticHamiltonian.identity(3)
    x, _ = _points(5, 3)
    for method in ("closed_form", "convex_solver"):
        value, minimiser = hopf_lax_min_of_convex(hamiltonian, pieces, x, 0.0, method=method)
        assert torch.allclose(value, pieces(x), atol=1e-14, rtol=0) and torch.allclose(minimiser, x)
    with pytest.raises(ValueError, match="method"):
        hopf_lax_min_of_convex(hamiltonian, pieces, x, 1.0, method="newton")
    with pytest.raises(ValueError, match="closed_form"):
        hopf_lax_min_of_convex(hamiltonian, pieces.pieces(), x, 1.0, method="closed_form")
    with pytest.raises(TypeError, match="pieces"):
        hopf_lax_min_of_convex(hamiltonian, pieces(x), x, 1.0)
    with pytest.raises(ValueError, match="finite"):
        hopf_lax_min_of_convex(hamiltonian, pieces, x.clone().fill_(float("nan")), 1.0)
    with pytest.raises(ValueError, match="columns"):
        hopf_lax_min_of_convex(hamiltonian, pieces, torch.zeros(4, 2, dtype=torch.float64), 1.0)


def test_multi_start_reports_its_hit_rate():
    dim = 20
    centres, precisions, offsets = _random_pieces(dim)
    pieces = QuadraticPieces(centres, precisions, offsets)
    hamiltonian = QuadraticHamiltonian.identity(dim)
    x, t = _points(100, dim)
    exact, _ = hopf_lax_min_of_convex(hamiltonian, pieces, x, t)
    value, _, info = hopf_lax_value(hamiltonian, pieces, x, t, generator=0, return_info=True)
    assert bool((value >= exact - 1e-9).all())  # an upper bound everywhere
    assert 0.0 <= info["hit_rate"] <= 1.0 and 0.0 < info["start_agreement"] <= 1.0
    # one convex piece: every start reaches the same minimum
    single = QuadraticPieces(centres[:1], precisions[:1], offsets[:1])
    _, _, info = hopf_lax_value(hamiltonian, single, x, t, n_starts=3, generator=0, return_info=True)
    assert info["hit_rate"] == 1.0 and info["start_agreement"] == 1.0


# --------------------------------------------------------------------------------------------
# Hopf formula u = -min_p { g*(p) + t H(p) - x.p }


@pytest.mark.parametrize("dim", [1, 10, 100])
def test_hopf_formula_quadratic_data_equals_hopf_lax_closed_form(dim):
    """``g(x) = q |x - a|^2/2 + c``, ``g*(p) = a.p + |p|^2/(2q) - c``, ``H = |p|^2/2``."""
    generator = make_generator(11)
    a = torch.randn(1, dim, generator=generator, dtype=torch.float64)
    q, c = 1.7, 0.3
    x, t = _points(200, dim, seed=12)
    value, momentum = hopf_value(
        QuadraticHamiltonian.identity(dim), lambda p: p @ a[0] + (p * p).sum(-1) / (2 * q) - c, x, t
    )
    exact, _ = hopf_lax_min_of_convex(QuadraticHamiltonian.identity(dim), QuadraticPieces(a, [q], [c]), x, t)
    assert (value - exact).abs().max() < 1e-10
    assert (momentum - q / (1 + t[:, None] * q) * (x - a)).abs().max() < 1e-7  # p* = grad u


@pytest.mark.parametrize("dim", [1, 10, 100])
def test_hopf_formula_l1_hamiltonian_against_closed_form_and_hopf_lax(dim):
    """``H = |p|_1``, ``g = |x|^2/2`` (``g* = |p|^2/2``): ``u = sum_i max(|x_i| - t, 0)^2/2``; the
    Hopf-Lax side minimises ``g`` over the max-norm ball of radius ``t`` (projected descent)."""
    x, t = _points(200, dim, seed=13, horizon=0.8)
    hamiltonian = NormHamiltonian(1)
    value, _ = hopf_value(hamiltonian, lambda p: 0.5 * (p * p).sum(-1), x, t)
    exact = 0.5 * ((x.abs() - t[:, None]).clamp_min(0) ** 2).sum(-1)
    assert (value - exact).abs().max() < 1e-10
    lax, _ = hopf_lax_min_of_convex(hamiltonian, [lambda y: 0.5 * (y * y).sum(-1)], x, t)
    assert (value - lax).abs().max() < 1e-9


@pytest.mark.parametrize("order", [2, float("inf")])
def test_hopf_formula_other_norms_against_hopf_lax(order):
    dim = 10
    generator = make_generator(14)
    a = torch.randn(dim, generator=generator, dtype=torch.float64)
    x, t = _points(100, dim, seed=15)
    hamiltonian = NormHamiltonian(order, speed=0.6)
    value, _ = hopf_value(hamiltonian, lambda p: p @ a + (p * p).sum(-1) / 2, x, t)
    lax, _ = hopf_lax_min_of_convex(hamiltonian, [lambda y: 0.5 * ((y - a) ** 2).sum(-1)], x, t)
    assert (value - lax).abs().max() < 1e-9


def test_hopf_formula_anisotropic_data_and_mass():
    dim = 10
    generator = make_generator(16)
    factor = torch.randn(dim, dim, generator=generator, dtype=torch.float64) / dim**0.5
    precision = factor @ factor.T + 0.5 * torch.eye(dim, dtype=torch.float64)
    mass = torch.diag(0.5 + torch.rand(dim, generator=generator, dtype=torch.float64))
    a = torch.randn(1, dim, generator=generator, dtype=torch.float64)
    inverse = torch.linalg.inv(precision)
    x, t = _points(100, dim, seed=17)
    value, _, info = hopf_value(
        QuadraticHamiltonian(mass),
        lambda p: p @ a[0] + 0.5 * ((p @ inverse) * p).sum(-1),
        x,
        t,
        return_info=True,
    )
    exact, _ = hopf_lax_min_of_convex(QuadraticHamiltonian(mass), QuadraticPieces(a, precision[None]), x, t)
    assert (value - exact).abs().max() < 1e-10 and info["converged"] == 1.0
    with pytest.raises(ValueError, match="state-independent"):
        from dlpde.hjb import LQRHamiltonian

        eye = torch.eye(2, dtype=torch.float64)
        hopf_value(LQRHamiltonian(eye, eye, eye, eye), lambda p: (p * p).sum(-1), x[:, :2], t)
