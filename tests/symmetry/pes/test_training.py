"""Training, evaluation, symmetry measurement and geometry optimisation."""

from __future__ import annotations

import pytest
import torch

from dlpde.symmetry.pes import (
    CoordinateMLP,
    MomentTensorPotential,
    SymmetryFunctionPotential,
    equivariance_errors,
    evaluate_potential,
    fit_potential,
    relax_geometry,
    split_dataset,
)
from dlpde.symmetry.studies.pes import LJ13_MINIMUM, lennard_jones


def test_normalisation_fits_reference_energies(lj13):
    model = CoordinateMLP(lj13.elements, 13, hidden=(4,))
    model.fit_normalisation(lj13)
    # one species, fixed N: e_z is the mean energy per atom, s the RMS force component
    assert abs(float(model.atomic_energy_shift[0]) * 13 - float(lj13.energies.mean())) < 1e-10
    assert abs(float(model.energy_scale) - float(lj13.forces.pow(2).mean().sqrt())) < 1e-12


def test_adam_fit_learns_and_is_reproducible(lj13, tmp_path):
    train, test = split_dataset(lj13, (30, 10), seed=0)

    def fitted(seed, steps=60, **kwargs):
        model = SymmetryFunctionPotential(lj13.elements, cutoff=2.2, min_distance=0.8, n_radial=6,
                                          angular_eta=(0.0,), zetas=(1.0, 4.0), hidden=(16,), seed=seed)
        history = fit_potential(model, train, steps=steps, batch_size=8, lr=1e-2, seed=seed, progress=False,
                                **kwargs)
        return model, history

    model, history = fitted(0)
    before = SymmetryFunctionPotential(lj13.elements, cutoff=2.2, min_distance=0.8, n_radial=6,
                                       angular_eta=(0.0,), zetas=(1.0, 4.0), hidden=(16,), seed=0)
    before.fit_normalisation(train)
    assert evaluate_potential(model, test)["force_mae"] < 0.5 * evaluate_potential(before, test)["force_mae"]
    assert history[-1]["loss"] < history[0]["loss"]
    again = fitted(0)[1]
    assert [h["loss"] for h in again] == [h["loss"] for h in history]
    # a checkpointed run resumed half way ends where the uninterrupted one does (constant rate:
    # the cosine schedule depends on the total number of steps)
    straight = fitted(0, schedule=None)[1]
    path = tmp_path / "fit.pt"
    fitted(0, steps=30, checkpoint=path, schedule=None)
    resumed = fitted(0, steps=60, checkpoint=path, resume=True, schedule=None)[1]
    assert resumed[-1]["loss"] == pytest.approx(straight[-1]["loss"], rel=1e-12)


def test_augmentation_presents_random_frames(lj13):
    model = CoordinateMLP(lj13.elements, 13, hidden=(8,))
    plain = fit_potential(model, lj13, steps=3, batch_size=4, seed=1, progress=False)
    augmented = fit_potential(CoordinateMLP(lj13.elements, 13, hidden=(8,)), lj13, steps=3, batch_size=4,
                              seed=1, progress=False, augment=True)
    assert plain[0]["loss"] != augmented[0]["loss"]


def test_equivariance_errors_separate_symmetric_from_baseline(lj13):
    symmetric = MomentTensorPotential(lj13.elements, cutoff=2.2, min_distance=0.8, level_max=12,
                                      readout="mlp", hidden=(8,))
    baseline = CoordinateMLP(lj13.elements, 13, hidden=(8,))
    for model in (symmetric, baseline):
        model.fit_normalisation(lj13)
    assert max(equivariance_errors(symmetric, lj13).values()) < 1e-10
    assert min(equivariance_errors(baseline, lj13).values()) > 1e-3


def test_relaxation_on_a_learned_surface_finds_the_lj13_minimum(lj13):
    """A linear MTP fitted to 30 LJ13 configurations; L-BFGS on it from held-out configurations
    ends within 0.02 epsilon (true energy) of the known minimum."""
    train, test = split_dataset(lj13, (30, 10), seed=0)
    model = MomentTensorPotential(lj13.elements, cutoff=2.2, min_distance=0.8, level_max=16)
    fit_potential(model, train)
    result = relax_geometry(model, test.positions[:3], test.species[:3], steps=30)
    assert result["max_force"].max() < 1e-4
    for positions in result["positions"]:
        true_energy = lennard_jones(positions.numpy())[0]
        assert abs(true_energy - LJ13_MINIMUM) < 0.02
    assert (result["energies"] - LJ13_MINIMUM).abs().max() < 0.2
    assert all(p.requires_grad for p in model.parameters())  # parameters handed back unfrozen


def test_fit_rejects_bad_arguments(lj13):
    model = CoordinateMLP(lj13.elements, 13, hidden=(4,))
    with pytest.raises(ValueError, match="energy_weight"):
        fit_potential(model, lj13, energy_weight=0.0, force_weight=0.0)
    with pytest.raises(ValueError, match="batch_size"):
        fit_potential(model, lj13, batch_size=0)
    with pytest.raises(ValueError, match="species"):
        other = CoordinateMLP((79,), 13, hidden=(4,))
        fit_potential(other, lj13, steps=1)


def test_float32_training_data_conversion(lj13):
    model = CoordinateMLP(lj13.elements, 13, hidden=(4,), dtype=torch.float32)
    fit_potential(model, lj13, steps=2, batch_size=4, progress=False)
    assert evaluate_potential(model, lj13)["energies"].dtype == torch.float64


def test_refit_energy_shift_is_the_least_squares_offset(lj13):
    model = CoordinateMLP(lj13.elements, 13, hidden=(8,))
    model.fit_normalisation(lj13)
    forces_before = model.energy_and_forces(lj13.positions, lj13.species)[1]
    with torch.no_grad():
        model.atomic_energy_shift.add_(0.37)  # a deliberate offset
    model.refit_energy_shift(lj13, batch_size=7)
    energies, forces = model.energy_and_forces(lj13.positions, lj13.species)
    # one species, fixed N: the optimal offset makes the mean residual vanish; forces unchanged
    assert abs(float((lj13.energies - energies).mean())) < 1e-10
    torch.testing.assert_close(forces, forces_before)
