"""Local energies against exact answers: the 1-D trap ground state (E_L constant to 1e-8 and equal
to omega N^2 / 2), finite differences of psi, Hutchinson's estimate (unbiased, 5 sigma), the
potentials against their formulas."""

import math

import pytest
import torch

from dlpde.shared import make_generator
from dlpde.shared.testing import assert_monte_carlo_close
from dlpde.symmetry import (
    BackflowDeterminant,
    ManyBodyHamiltonian,
    SlaterJastrow,
    VandermondeAnsatz,
    atom,
    contact_pair,
    coulomb_pair,
    harmonic_trap,
    local_energy,
    soft_coulomb_pair,
)

DT = torch.float64


def positions(batch, n, d, seed=0, scale=1.5):
    return scale * torch.randn(batch, n, d, generator=make_generator(seed), dtype=DT)


@pytest.mark.parametrize("n", range(2, 9))
def test_exact_trap_ground_state_has_constant_local_energy(n):
    """psi = prod_{i<j}(x_j - x_i) exp(-sum x^2/2): E_L = N^2/2 everywhere, to 1e-8."""
    hamiltonian = ManyBodyHamiltonian(n, 0, 1, harmonic_trap(1.0))
    energies = local_energy(hamiltonian, VandermondeAnsatz.exact_harmonic_trap(n), positions(256, n, 1, n))
    assert float((energies - n**2 / 2).abs().max()) < 1e-8


def test_exact_trap_state_other_frequency_and_wrong_state_is_detected():
    omega, n = 0.7, 5
    hamiltonian = ManyBodyHamiltonian(n, 0, 1, harmonic_trap(omega))
    x = positions(128, n, 1, 1)
    energies = local_energy(hamiltonian, VandermondeAnsatz.exact_harmonic_trap(n, omega), x)
    assert float((energies - omega * n**2 / 2).abs().max()) < 1e-8
    wrong = local_energy(hamiltonian, VandermondeAnsatz.exact_harmonic_trap(n, 1.0), x)
    assert float(wrong.max() - wrong.min()) > 1.0  # not an eigenstate: E_L varies


def test_contact_interaction_vanishes_on_the_spin_polarised_ground_state():
    """E_L of the exact state with a narrow contact term differs from N^2/2 only by
    g delta_s(x_i - x_j), which is ~0 because the density vanishes at coincidence."""
    n = 3
    hamiltonian = ManyBodyHamiltonian(n, 0, 1, harmonic_trap(1.0), contact_pair(2.0, width=0.05))
    x = positions(512, n, 1, 2)
    energies = local_energy(hamiltonian, VandermondeAnsatz.exact_harmonic_trap(n), x)
    i, j = torch.triu_indices(n, n, 1)
    r = (x[:, i, 0] - x[:, j, 0]).abs()
    gaussian = 2.0 / math.sqrt(2 * math.pi * 0.05**2) * torch.exp(-(r**2) / (2 * 0.05**2))
    expected = n**2 / 2 + gaussian.sum(-1)
    torch.testing.assert_close(energies, expected, rtol=1e-10, atol=1e-8)


@pytest.mark.parametrize("cls", [SlaterJastrow, BackflowDeterminant])
def test_local_energy_matches_finite_differences_of_psi(cls):
    """E_L = -1/2 Lap psi / psi + V with Lap psi by central differences (h = 1e-3, relative 1e-4)."""
    hamiltonian = atom(2)
    wf = cls.from_hamiltonian(hamiltonian, generator=1)
    x = positions(4, 2, 3, 3, scale=1.0)
    exact = local_energy(hamiltonian, wf, x)

    def psi(y):
        sign, log_abs = wf(y)
        return sign * torch.exp(log_abs)

    h = 1e-3
    with torch.no_grad():
        center = psi(x)
        lap = torch.zeros(4, dtype=DT)
        for i in range(2):
            for k in range(3):
                step = torch.zeros_like(x)
                step[:, i, k] = h
                lap += (psi(x + step) - 2 * center + psi(x - step)) / h**2
    reference = -0.5 * lap / center + hamiltonian.potential(x)
    torch.testing.assert_close(exact, reference, rtol=1e-4, atol=1e-6)


def test_hutchinson_is_unbiased_and_exact_in_one_dimension():
    hamiltonian = ManyBodyHamiltonian(2, 1, 2, harmonic_trap(1.0), soft_coulomb_pair(1.0, 0.5))
    wf = BackflowDeterminant.from_hamiltonian(hamiltonian, generator=2)
    x = positions(3, 3, 2, 4, scale=1.0)
    exact = local_energy(hamiltonian, wf, x)
    g = make_generator(5)
    estimates = torch.stack([local_energy(hamiltonian, wf, x, method="hutchinson", n_samples=8, generator=g)
                             for _ in range(60)])
    for b in range(3):
        error = float(estimates[:, b].std() / math.sqrt(estimates.shape[0]))
        assert_monte_carlo_close(float(estimates[:, b].mean()), error, float(exact[b]), n_sigma=5)
    assert float(estimates.std(0).min()) > 0  # an estimate, not the exact value
    single = ManyBodyHamiltonian(1, 0, 1, harmonic_trap(1.0))
    wf1 = SlaterJastrow.from_hamiltonian(single, generator=3)
    y = positions(5, 1, 1, 6)
    torch.testing.assert_close(local_energy(single, wf1, y, method="hutchinson", generator=g),
                               local_energy(single, wf1, y), rtol=1e-12, atol=1e-12)


def test_potentials_match_their_formulas():
    x = positions(3, 3, 3, 7)
    hamiltonian = ManyBodyHamiltonian(2, 1, 3, harmonic_trap(0.5, center=[0.1, 0.0, -0.2]),
                                      soft_coulomb_pair(2.0, 0.3))
    c = torch.tensor([0.1, 0.0, -0.2], dtype=DT)
    expected = 0.5 * 0.25 * ((x - c) ** 2).sum((1, 2))
    for i in range(3):
        for j in range(i + 1, 3):
            r = torch.linalg.vector_norm(x[:, i] - x[:, j], dim=-1)
            expected = expected + 2.0 / torch.sqrt(r**2 + 0.09)
    torch.testing.assert_close(hamiltonian.potential(x), expected, rtol=1e-14, atol=1e-14)
    helium = atom(2)
    y = x[:, :2]
    r1, r2 = torch.linalg.vector_norm(y, dim=-1).unbind(-1)
    r12 = torch.linalg.vector_norm(y[:, 0] - y[:, 1], dim=-1)
    torch.testing.assert_close(helium.potential(y), -2 / r1 - 2 / r2 + 1 / r12, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("dim", [1, 3])
def test_contact_pair_integrates_to_its_strength(dim):
    pair = contact_pair(1.7, width=0.2, dim=dim)
    r = torch.linspace(0, 3, 30001, dtype=DT)
    shell = 2.0 if dim == 1 else 4 * math.pi * r**2  # the "surface" of radius r in R^dim
    assert float(torch.trapezoid(shell * pair(r), r)) == pytest.approx(1.7, rel=1e-8)


def test_coulomb_cusps_and_bad_arguments():
    assert coulomb_pair(1.0).cusp(3) == (0.25, 0.5)
    assert coulomb_pair(1.0).cusp(2) == (1 / 3, 1.0)
    with pytest.raises(ValueError, match="dim >= 2"):
        ManyBodyHamiltonian(2, 0, 1, harmonic_trap(), coulomb_pair())
    with pytest.raises(ValueError, match="omega"):
        harmonic_trap(-1.0)
    with pytest.raises(ValueError, match="normalised in 1-D"):
        ManyBodyHamiltonian(2, 0, 2, harmonic_trap(), contact_pair(1.0))
    with pytest.raises(ValueError, match="charge"):
        atom(0)
    hamiltonian = ManyBodyHamiltonian(2, 0, 1, harmonic_trap())
    with pytest.raises(ValueError, match=r"shape \(batch, 2, 1\)"):
        local_energy(hamiltonian, VandermondeAnsatz.exact_harmonic_trap(2), torch.zeros(4, 3, 1, dtype=DT))
    with pytest.raises(ValueError, match="method"):
        local_energy(hamiltonian, VandermondeAnsatz.exact_harmonic_trap(2), torch.ones(4, 2, 1, dtype=DT),
                     method="stochastic")
