"""symmetry.atoms: the smoke preset runs and resumes; the local energy of hydrogen-like determinants
without electron-electron repulsion is the exact constant -Z^2/2 sum 1/n^2; the Slater-Jastrow-
backflow wavefunctions of Li and Be are antisymmetric under same-spin exchange; pretraining fits
the orbital matrix to the hydrogen-like orbitals."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from dlpde._registry import discover_studies
from dlpde.shared import execute
from dlpde.shared.testing import assert_antisymmetric
from dlpde.symmetry import ManyBodyHamiltonian, coulomb_nuclei, local_energy
from dlpde.symmetry.studies import atoms


@pytest.mark.filterwarnings("ignore:the energy series:RuntimeWarning")  # smoke chains are short
def test_smoke_preset_runs(tmp_path):
    study = discover_studies()["symmetry.atoms"]
    run, metrics = execute(study, "smoke", out=tmp_path, device="cpu")
    for file in ("report.md", "metrics.json", "results.csv", "references.bib", "convergence.png"):
        assert (run.path / file).exists()
    for name in ("li", "be"):
        assert math.isfinite(metrics[name]["energy"]) and metrics[name]["standard_error"] > 0
        assert 0 < metrics[name]["pretrain_residual"] < 10
    assert "met_5mha" in metrics["li"]
    headline = atoms.headline(metrics)
    assert headline["numbers"][0]["value"] == pytest.approx(metrics["li"]["error_mha"])


@pytest.mark.filterwarnings("ignore:the energy series:RuntimeWarning")
def test_resume_reuses_pretraining_and_vmc_checkpoints(tmp_path):
    """A resumed task (pretrained orbitals and VMC checkpoint on disk) gives the same numbers."""
    config = atoms.STUDY.presets["smoke"]
    checkpoint = str(tmp_path / "li.pt")
    first = atoms._task((config, "li", checkpoint, False))
    assert (tmp_path / "li.pt.pretrained").exists() and (tmp_path / "li.pt.walkers").exists()
    again = atoms._task((config, "li", checkpoint, True))
    np.testing.assert_array_equal(first["pretrain_residuals"], again["pretrain_residuals"])
    assert again["energy"] == first["energy"] and again["standard_error"] == first["standard_error"]


@pytest.mark.parametrize(("charge", "n_up", "n_down", "exact"), [(3, 2, 1, -10.125), (4, 2, 2, -20.0),
                                                                  (2, 1, 1, -4.0)])
@pytest.mark.parametrize("method", ["forward", "exact"])
def test_noninteracting_hydrogenic_determinant_has_constant_local_energy(charge, n_up, n_down, exact, method):
    """Without e-e repulsion, det[1s, 2s](Z) is an eigenstate: E = -Z^2/2 (n_1s + n_2s / 4)."""
    hamiltonian = ManyBodyHamiltonian(n_up, n_down, 3, coulomb_nuclei([float(charge)], [[0.0, 0.0, 0.0]]))
    wavefunction = atoms.HydrogenicDeterminant(n_up, n_down, charge, charge)
    generator = torch.Generator().manual_seed(charge)
    x = 2.0 / charge * torch.randn(64, n_up + n_down, 3, generator=generator, dtype=torch.float64)
    energies = local_energy(hamiltonian, wavefunction, x, method=method)
    assert float((energies - exact).abs().max()) < 1e-10 * abs(exact)


def test_hydrogenic_determinant_is_normalised_per_orbital():
    """Each orbital has unit norm (radial quadrature) and 1s, 2s(Z) are orthogonal at equal Z."""
    wavefunction = atoms.HydrogenicDeterminant(1, 0, 2.5, 2.5)
    r = torch.linspace(0, 40, 200001, dtype=torch.float64)
    x = torch.stack([r, torch.zeros_like(r), torch.zeros_like(r)], -1).unsqueeze(1)
    phi = wavefunction.orbitals(x)[:, 0]
    products = torch.stack([phi[:, 0] ** 2, phi[:, 1] ** 2, phi[:, 0] * phi[:, 1]], 1)
    radial = (4 * math.pi * r**2)[:, None] * products
    integrals = torch.trapezoid(radial, r, dim=0)
    expected = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(integrals, expected, atol=1e-8, rtol=0)


def test_slater_effective_charges():
    """Slater's rules, against the textbook values (1s: 0.30 per other 1s; 2s: 0.85 per 1s, 0.35 per 2s)."""
    assert atoms.slater_effective_charges(3, 2, 1) == pytest.approx((2.70, 1.30))
    assert atoms.slater_effective_charges(4, 2, 2) == pytest.approx((3.70, 1.95))
    assert atoms.slater_effective_charges(1, 1, 0) == pytest.approx((1.0, 0.15))
    with pytest.raises(ValueError, match="n_up"):
        atoms.slater_effective_charges(5, 3, 2)


@pytest.mark.parametrize("name", ["li", "be"])
@pytest.mark.parametrize("ansatz", ["backflow", "slater_jastrow"])
def test_atom_wavefunctions_are_antisymmetric_in_same_spin_electrons(name, ansatz):
    config = dataclasses.replace(atoms.STUDY.presets["smoke"], ansatz=ansatz, device="cpu")
    hamiltonian, wavefunction = atoms.build_wavefunction(config, name, seed=3)
    x = torch.randn(8, hamiltonian.n_particles, 3, generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64)
    with torch.no_grad():
        assert_antisymmetric(wavefunction, x, groups=hamiltonian.spin_groups, rtol=1e-10, atol=1e-10)
        # exchanging an up and a down electron is no symmetry: log|psi| changes
        swapped = x[:, [hamiltonian.n_up, *range(1, hamiltonian.n_up), 0, *range(hamiltonian.n_up + 1,
                                                                                  hamiltonian.n_particles)]]
        assert float((wavefunction(swapped)[1] - wavefunction(x)[1]).abs().max()) > 1e-3


def test_pretraining_fits_the_hydrogenic_orbitals():
    """After pretraining, the orbital matrix on fresh samples of |target|^2 is within 10 % (RMS,
    relative) of the hydrogen-like orbitals, from over 50 % at random initialisation."""
    config = dataclasses.replace(atoms.STUDY.presets["smoke"], device="cpu")
    hamiltonian, wavefunction = atoms.build_wavefunction(config, "li", seed=0)
    target = atoms.HydrogenicDeterminant(2, 1, *atoms.slater_effective_charges(3, 2, 1))
    assert atoms.pretrain_orbitals(wavefunction, target, 0).size == 0  # only the envelopes set
    decay = wavefunction.orbital_envelope.decay[:, 0].detach()  # columns: up 1s, up 2s, down 1s
    torch.testing.assert_close(decay, torch.tensor([2.70, 0.65, 2.70], dtype=torch.float64))
    residuals = atoms.pretrain_orbitals(wavefunction, target, 300, n_walkers=64, lr=1e-2, generator=1)
    from dlpde.shared import MetropolisWalkers

    walkers = MetropolisWalkers(lambda y: 2 * target(y)[1], torch.randn(512, 3, 3, dtype=torch.float64,
                                generator=torch.Generator().manual_seed(7)), step_size=0.3, generator=7)
    walkers.step(200)
    with torch.no_grad():
        reference = target.orbitals(walkers.x)
        up, down = atoms._orbital_blocks(wavefunction, walkers.x)
        misfit = ((up[:, :, 0] - reference[:, :2, :2]) ** 2).sum() \
            + ((down[:, :, 0] - reference[:, 2:, :1]) ** 2).sum()
        scale = (reference[:, :2, :2] ** 2).sum() + (reference[:, 2:, :1] ** 2).sum()
    assert residuals[0] > 0.5
    assert math.sqrt(float(misfit / scale)) < 0.1


def test_pretraining_and_config_refuse_bad_arguments():
    config = dataclasses.replace(atoms.STUDY.presets["smoke"], device="cpu")
    _, wavefunction = atoms.build_wavefunction(config, "be", seed=0)
    with pytest.raises(ValueError, match="particles"):
        atoms.pretrain_orbitals(wavefunction, atoms.HydrogenicDeterminant(2, 1, 3.0, 1.0), 1)
    with pytest.raises(TypeError, match="target"):
        atoms.pretrain_orbitals(wavefunction, None, 1)
    with pytest.raises(ValueError, match="atoms"):
        atoms.Config(atoms=("c",))
    with pytest.raises(ValueError, match="final_lr_factor"):
        atoms.Config(final_lr_factor=0.0)
    with pytest.raises(ValueError, match="ansatz"):
        atoms.Config(ansatz="vandermonde")
