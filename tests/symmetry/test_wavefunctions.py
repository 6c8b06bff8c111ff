"""Antisymmetry of every ansatz (swap two same-spin particles: sign flips, log|psi| unchanged;
float64, 1e-9), a broken ansatz failing the check, the explicit antisymmetriser against a
determinant, the Hermite basis against its closed form, gradients against finite differences."""

import math

import pytest
import torch
from torch import nn

from dlpde.shared import make_generator
from dlpde.shared.testing import (
    assert_antisymmetric,
    assert_gradcheck,
    assert_matches_finite_differences,
    assert_permutation_invariant,
)
from dlpde.symmetry import (
    BackflowDeterminant,
    ExplicitAntisymmetrizer,
    HermiteFunctions,
    SlaterJastrow,
    VandermondeAnsatz,
    atom,
)

DT = torch.float64
ANSATZE = [SlaterJastrow, BackflowDeterminant, VandermondeAnsatz, ExplicitAntisymmetrizer]
SYSTEMS = [  # n_up, n_down, dim, envelope, cusp
    (4, 0, 1, "gaussian", None),
    (3, 2, 2, "gaussian", None),
    (2, 2, 3, "exponential", (0.25, 0.5)),
    (1, 1, 3, "exponential", (0.25, 0.5)),
]


def positions(batch, n, d, seed=0):
    return 1.5 * torch.randn(batch, n, d, generator=make_generator(seed), dtype=DT)


def build(cls, n_up, n_down, dim, envelope, cusp, **kwargs):
    options = dict(envelope=envelope, cusp=cusp, generator=3, **kwargs)
    if cls in (SlaterJastrow, BackflowDeterminant) and "n_determinants" not in kwargs:
        options["n_determinants"] = 2
    return cls(n_up, n_down, dim, **options)


@pytest.mark.parametrize("cls", ANSATZE)
@pytest.mark.parametrize("system", SYSTEMS, ids=lambda s: f"{s[0]}up{s[1]}down{s[2]}d")
def test_antisymmetric_within_each_spin(cls, system):
    n_up, n_down, dim = system[:3]
    wf = build(cls, *system)
    x = positions(6, n_up + n_down, dim)
    if n_up >= 2 or n_down >= 2:
        assert_antisymmetric(wf, x, groups=wf.spin_groups)
    sign, log_abs = wf(x)
    assert sign.shape == log_abs.shape == (6,)
    assert bool(torch.isfinite(log_abs).all()) and bool((sign.abs() == 1).all())


class SpinBlind(nn.Module):
    """Permutes the particles by a fixed non-trivial permutation across spins before evaluating:
    still antisymmetric within the new groups but not within the true spin groups (a bug)."""

    def __init__(self, inner, order):
        super().__init__()
        self.inner, self.order = inner, order

    def forward(self, x):
        return self.inner(x[:, self.order])


class IndexTagged(nn.Module):
    """Shifts each particle by an amount depending on its index: not antisymmetric at all."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        shift = 0.1 * torch.arange(x.shape[1], dtype=x.dtype).reshape(1, -1, 1)
        return self.inner(x + shift)


@pytest.mark.parametrize("cls", ANSATZE)
def test_antisymmetry_checker_fails_on_broken_ansatz(cls):
    wf = build(cls, 2, 2, 2, "gaussian", None)
    x = positions(4, 4, 2, seed=1)
    with pytest.raises(AssertionError, match="not antisymmetric"):
        assert_antisymmetric(IndexTagged(wf), x, groups=wf.spin_groups)
    with pytest.raises(AssertionError, match="not antisymmetric"):
        assert_antisymmetric(SpinBlind(wf, [0, 2, 1, 3]), x, groups=wf.spin_groups)


def test_explicit_antisymmetrizer_of_a_product_is_a_determinant():
    """sum_P sign(P) prod_i phi_i(x_{P i}) = det[phi_j(x_i)] (Leibniz), with n_up = 3, n_down = 2."""
    g = make_generator(4)
    weights = torch.randn(2, 5, generator=g, dtype=DT)

    def orbitals(x):  # (B, N, 2) -> (B, N, 5): orbital j at particle i
        return torch.tanh(x @ weights) + x[..., :1] ** 2

    def product(x):
        values = orbitals(x)
        return values.diagonal(dim1=1, dim2=2).prod(-1)

    wf = ExplicitAntisymmetrizer(3, 2, 2, network=product, decays=[1e-12])
    x = positions(5, 5, 2, seed=5)
    sign, log_abs = wf(x)
    values = orbitals(x)
    det_up = torch.linalg.det(values[:, :3, :3])
    det_down = torch.linalg.det(values[:, 3:, 3:])
    expected = det_up * det_down
    torch.testing.assert_close(sign * torch.exp(log_abs), expected, rtol=1e-9, atol=0)


def test_hermite_functions_match_closed_form_and_are_orthonormal():
    basis = HermiteFunctions(1, 4)
    t = torch.linspace(-9, 9, 4001, dtype=DT).reshape(-1, 1)
    values = basis(t)
    closed = {0: 1.0 + 0 * t, 1: 2 * t, 2: 4 * t**2 - 2, 3: 8 * t**3 - 12 * t, 4: 16 * t**4 - 48 * t**2 + 12}
    for n in range(5):
        norm = math.sqrt(2**n * math.factorial(n) * math.sqrt(math.pi))
        expected = closed[n] * torch.exp(-(t**2) / 2) / norm
        torch.testing.assert_close(values[:, n], expected[:, 0], rtol=1e-12, atol=1e-12)
    gram = torch.trapezoid(values.unsqueeze(-1) * values.unsqueeze(-2), t[:, 0], dim=0)
    torch.testing.assert_close(gram, torch.eye(5, dtype=DT), rtol=0, atol=1e-10)
    assert HermiteFunctions(3, 2).n_features == math.comb(5, 3)


def test_slater_jastrow_with_hermite_basis_is_exact_trap_determinant():
    """Coefficients = identity on h_0..h_{N-1}: psi = det[h_j(x_i)], proportional to the exact
    Vandermonde ground state; the log-ratio is constant over configurations."""
    n = 4
    wf = SlaterJastrow(n, 0, 1, orbitals=HermiteFunctions(1, n - 1), jastrow_hidden=())
    with torch.no_grad():
        wf.coefficients.copy_(torch.eye(n, dtype=DT))
    exact = VandermondeAnsatz.exact_harmonic_trap(n)
    x = positions(20, n, 1, seed=6)
    (s1, l1), (s2, l2) = wf(x), exact(x)
    ratio = l1 - l2
    assert float(ratio.max() - ratio.min()) < 1e-10
    assert bool(((s1 * s2) == (s1 * s2)[0]).all())


@pytest.mark.parametrize("cls", ANSATZE)
def test_position_gradient_matches_finite_differences(cls):
    wf = build(cls, 2, 1, 3, "exponential", (0.25, 0.5))
    x = positions(3, 3, 3, seed=7)

    def log_abs(y):
        return wf(y)[1]

    grad = torch.autograd.grad(log_abs(x.requires_grad_(True)).sum(), x)[0]
    assert_matches_finite_differences(log_abs, x.detach(), grad, eps=1e-6, rtol=1e-6, atol=1e-6)


def test_parameter_gradients_pass_gradcheck():
    """Through both streams, the orbitals and the envelope of a small FermiNet."""
    wf = BackflowDeterminant(2, 1, 2, one_body_width=3, two_body_width=2, generator=8)
    x = positions(2, 3, 2, seed=9)
    names = ["two_body_layers.0.weight", "one_body_layers.1.weight", "orbital_layer.weight",
             "orbital_envelope.decay"]
    params = dict(wf.named_parameters())

    def log_abs(*values):
        return torch.func.functional_call(wf, {**params, **dict(zip(names, values))}, (x,))[1]

    assert_gradcheck(log_abs, [params[n].detach().clone().requires_grad_(True) for n in names])


def test_from_hamiltonian_uses_the_system():
    helium = atom(2)
    wf = SlaterJastrow.from_hamiltonian(helium, hidden=(8,))
    assert wf.envelope == "exponential" and (wf.n_up, wf.n_down, wf.dim) == (1, 1, 3)
    torch.testing.assert_close(wf.orbital_envelope.decay.detach(), torch.full((2, 1), 2.0, dtype=DT))
    assert wf.cusp is not None and float(wf.cusp.slope[0]) == 0.5  # opposite spins: 1/(d - 1)


def test_jastrow_is_symmetric_and_cusp_has_the_kato_slope():
    """J alone is invariant under same-spin permutations; along r_12 -> 0 the pair factor has
    d log psi / d r = 1/2 (opposite spins, 3-D)."""
    wf = SlaterJastrow(3, 0, 2, generator=10)
    with torch.no_grad():
        wf.jastrow.readout[-1].weight.normal_(generator=make_generator(1))
    x = positions(4, 3, 2, seed=11)
    assert_permutation_invariant(lambda y: wf.jastrow(y, wf), x)
    helium = SlaterJastrow.from_hamiltonian(atom(2), jastrow_hidden=())
    r = torch.tensor([1e-7, 2e-7], dtype=DT)
    pair_positions = torch.zeros(2, 2, 3, dtype=DT)
    pair_positions[:, 1, 0] = r  # electrons r apart
    values = helium.cusp(pair_positions)
    assert float((values[1] - values[0]) / (r[1] - r[0])) == pytest.approx(0.5, rel=1e-5)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="envelope"):
        SlaterJastrow(2, 0, 1, envelope="lorentzian")
    with pytest.raises(ValueError, match="n_up"):
        BackflowDeterminant(-1, 0, 1)
    with pytest.raises(ValueError, match="permutations"):
        ExplicitAntisymmetrizer(7, 0, 1)
    with pytest.raises(ValueError, match="cusp"):
        SlaterJastrow(2, 1, 3, cusp=(0.25,))
    with pytest.raises(ValueError, match="decays"):
        VandermondeAnsatz(2, 0, 1, decays=[-1.0])
    wf = SlaterJastrow(2, 1, 3)
    with pytest.raises(ValueError, match=r"shape \(batch, 3, 3\)"):
        wf(torch.zeros(4, 3, 2, dtype=DT))
    with pytest.raises(TypeError, match="float32"):
        wf(torch.zeros(4, 3, 3, dtype=torch.float32))


@pytest.mark.parametrize("seed", range(8))
def test_vandermonde_in_1d_has_only_the_coincidence_nodes(seed):
    """In 1-D the nodes of the fermionic ground state are the coincidence planes x_i = x_j. The
    learned features must not fold (y_i = y_j at x_i != x_j: a spurious node, E_L ~ 1/distance,
    the heavy-tailed local energies of the trap study's N = 5 Vandermonde contact cell, whose
    seed gave features ordered like x at only 35% of configurations). So sign(psi) is
    +-sign(prod_{i<j}(x_j - x_i)) with one global sign, at the random initialisation of every
    seed and after any change of the parameters (here: all multiplied by random factors up to
    +-3), for one and for two species and two centres."""
    generator = make_generator(100 + seed)
    for n_up, n_down, centers in ((5, 0, None), (3, 2, [[-1.0], [1.5]])):
        psi = VandermondeAnsatz(n_up, n_down, 1, centers=centers, generator=seed, n_terms=2)
        x = positions(4000, n_up + n_down, 1, seed)
        for perturb in (False, True):
            if perturb:
                with torch.no_grad():
                    for p in psi.parameters():
                        p.mul_(3 * (2 * torch.rand(p.shape, generator=generator, dtype=DT) - 1))
            with torch.no_grad():
                sign, log_abs = psi(x)
            exact = torch.ones(x.shape[0], dtype=DT)
            for start, count in ((0, n_up), (n_up, n_down)):
                i, j = torch.triu_indices(count, count, 1)
                block = x[:, start:start + count, 0]
                exact = exact * torch.sign(block[:, j] - block[:, i]).prod(1)
            relative = sign * exact
            assert bool(torch.isfinite(log_abs).all())
            assert bool((relative == relative[0]).all()), (
                f"seed {seed}, {n_up}+{n_down}, perturbed={perturb}: sign differs from the Vandermonde "
                f"of x at {int((relative != relative[0]).sum())} of {x.shape[0]} configurations")
