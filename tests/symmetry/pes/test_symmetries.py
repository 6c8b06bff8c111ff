"""Energies invariant and forces equivariant under rotations, reflections, translations and
permutations (float64), through dlpde.shared.testing and e3nn's assert_equivariant; forces
equal to central finite differences of the energy. Each check is also shown to fail on a
deliberately broken model.

Tolerances: symmetric models are exact up to rounding (about 1e-13 relative to energies of
order 1-100), so 1e-9 absolute/relative leaves four orders of margin; the breaks below change
energies by about 1e-3 or more.
"""

from __future__ import annotations

import pytest
import torch

from dlpde.shared import testing
from dlpde.symmetry.pes import AtomicPotential

from .conftest import SYMMETRIC, make_models


class Broken(AtomicPotential):
    """A symmetric model plus a deliberate defect:

    - ``"direction"``: ``+ 1e-2 (a . (x_i - c))^2``, ``a`` a fixed vector, ``c`` the centroid
      (breaks rotations, not translations),
    - ``"origin"``: ``+ 1e-2 |x_i|^2`` (rotation invariant about the origin; breaks translations),
    - ``"order"``: ``+ 1e-2 i |x_i - c|^2`` (depends on the atom's index: breaks permutations only),
    - ``"detached"``: ``+ |x_i - c|^2`` of detached positions (autograd forces miss it).
    """

    def __init__(self, model, defect):
        super().__init__(model.elements, model.cutoff)
        self.model, self.defect = model, defect

    def atomic_energies(self, positions, species_index, cells):
        energies = self.model.atomic_energies(positions, species_index, cells)
        centred = positions - positions.mean(1, keepdim=True)
        if self.defect == "direction":
            return energies + 1e-2 * (centred @ torch.tensor([0.3, -0.5, 0.8], dtype=positions.dtype)) ** 2
        if self.defect == "origin":
            return energies + 1e-2 * positions.pow(2).sum(-1)
        if self.defect == "order":
            index = torch.arange(positions.shape[1], dtype=positions.dtype)
            return energies + 1e-2 * index * centred.pow(2).sum(-1)
        return energies + centred.detach().pow(2).sum(-1)


@pytest.fixture(scope="module")
def models(cu13):
    return make_models(cu13.elements, cu13.n_atoms)


@pytest.fixture(scope="module")
def alloy(cu13):
    """Cu13 geometries with a random Cu/Au assignment (two species)."""
    species = cu13.species[:2].clone()
    species[:, ::3] = 79
    return cu13.positions[:2], species


@pytest.fixture(scope="module")
def alloy_models(alloy):
    return make_models((29, 79), alloy[0].shape[1], seed=2)


def _energy(model, species, cells=None):
    return lambda x: model(x, species, cells).detach()


def _forces(model, species, cells=None):
    return lambda x: model.energy_and_forces(x, species, cells)[1]


@pytest.mark.parametrize("name", SYMMETRIC)
def test_rotations_reflections_translations(models, alloy_models, cu13, alloy, name):
    for model, (positions, species) in ((models[name], (cu13.positions[:2], cu13.species[:2])),
                                        (alloy_models[name], alloy)):
        testing.assert_rotation_invariant(_energy(model, species), positions, n_trials=4)
        testing.assert_rotation_equivariant(_forces(model, species), positions, n_trials=4)


@pytest.mark.parametrize("name", SYMMETRIC)
def test_permutations(models, alloy_models, cu13, alloy, name):
    for model, (positions, species) in ((models[name], (cu13.positions[:2], cu13.species[:2])),
                                        (alloy_models[name], alloy)):
        # species travel with the atoms: permute (x, y, z, Z) rows together
        joined = torch.cat([positions, species[..., None].to(positions.dtype)], dim=-1)

        def energy(rows, model=model):
            return model(rows[..., :3], rows[..., 3].long()).detach()

        def forces(rows, model=model):
            return model.energy_and_forces(rows[..., :3], rows[..., 3].long())[1]

        testing.assert_permutation_invariant(energy, joined, dim=1)
        testing.assert_permutation_equivariant(forces, joined, dim=1, out_dim=1)


@pytest.mark.parametrize("name", [*SYMMETRIC, "coordinate_mlp"])
def test_forces_match_finite_differences(models, cu13, name):
    model, positions, species = models[name], cu13.positions[:2], cu13.species[:2]
    forces = model.energy_and_forces(positions, species)[1]
    # energies are O(1-100); central differences with eps 1e-5 have errors ~1e-9
    testing.assert_matches_finite_differences(_energy(model, species), positions, -forces, eps=1e-5,
                                              rtol=1e-6, atol=1e-6)


@pytest.fixture(scope="module")
def float64_default():
    """e3nn builds its rotation matrices in torch's default dtype: float64 for exact checks."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.mark.parametrize("name", SYMMETRIC)
def test_e3nn_assert_equivariant(models, cu13, float64_default, name):
    from e3nn.util.test import assert_equivariant

    model, species = models[name], cu13.species[0]

    def energy_and_forces(positions):  # (N, 3) cartesian points -> (0e energy, 1o forces)
        energies, forces = model.energy_and_forces(positions[None], species)
        return energies, forces[0]

    # e3nn's tolerance is absolute: scale it by the outputs (the linear MTP with random weights
    # has energies ~1e3 and forces ~4e2, where rounding alone reaches ~1e-8)
    energies, forces = energy_and_forces(cu13.positions[0])
    tolerance = 1e-9 * max(1.0, float(energies.abs().max()), float(forces.abs().max()))
    with torch.random.fork_rng():  # e3nn draws its rotations from the global generator
        torch.manual_seed(0)
        errors = assert_equivariant(energy_and_forces, [cu13.positions[0]], irreps_in=["cartesian_points"],
                                    irreps_out=["0e", "1o"], tolerance=tolerance)
    assert max(float(e.max()) for e in errors.values()) < tolerance


# -- each check fails on a deliberately broken model ---------------------------------------------
def test_checks_fail_on_broken_models(models, cu13, float64_default):
    from e3nn.util.test import assert_equivariant

    positions, species = cu13.positions[:2], cu13.species[:2]
    direction, origin = Broken(models["equivariant"], "direction"), Broken(models["equivariant"], "origin")
    order, detached = Broken(models["equivariant"], "order"), Broken(models["equivariant"], "detached")
    with pytest.raises(AssertionError):
        testing.assert_rotation_invariant(_energy(direction, species), positions, translations=False)
    with pytest.raises(AssertionError):
        testing.assert_rotation_equivariant(_forces(direction, species), positions, translations=False)
    testing.assert_rotation_invariant(_energy(origin, species), positions, translations=False)
    with pytest.raises(AssertionError):  # caught by the translations alone
        testing.assert_rotation_invariant(_energy(origin, species), positions)
    with pytest.raises(AssertionError):
        testing.assert_rotation_equivariant(_forces(origin, species), positions)
    joined = torch.cat([positions, species[..., None].to(positions.dtype)], dim=-1)
    with pytest.raises(AssertionError):
        testing.assert_permutation_invariant(lambda r: order(r[..., :3], r[..., 3].long()).detach(), joined,
                                             dim=1)
    with pytest.raises(AssertionError):
        testing.assert_permutation_equivariant(
            lambda r: order.energy_and_forces(r[..., :3], r[..., 3].long())[1], joined, dim=1, out_dim=1)
    # the index-dependent defect is still rotation invariant: the checks are specific
    testing.assert_rotation_invariant(_energy(order, species), positions)
    forces = detached.energy_and_forces(positions, species)[1]
    with pytest.raises(AssertionError):
        testing.assert_matches_finite_differences(_energy(detached, species), positions, -forces, eps=1e-5,
                                                  rtol=1e-6, atol=1e-6)
    for broken in (direction, origin, models["coordinate_mlp"]):
        def energy_and_forces(x, broken=broken):
            energies, forces = broken.energy_and_forces(x[None], species[0])
            return energies, forces[0]

        with pytest.raises(AssertionError):
            assert_equivariant(energy_and_forces, [positions[0]], irreps_in=["cartesian_points"],
                               irreps_out=["0e", "1o"], tolerance=1e-9)
    with pytest.raises(AssertionError):  # the non-symmetric baseline is caught too
        testing.assert_rotation_invariant(_energy(models["coordinate_mlp"], species), positions)


# -- periodic cells ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SYMMETRIC)
def test_periodic_symmetries(cu_fcc, name):
    model = make_models(cu_fcc.elements, cu_fcc.n_atoms, seed=3)[name]
    positions, species, cells = cu_fcc.positions, cu_fcc.species, cu_fcc.cells
    n = positions.shape[1]
    reference = model(positions, species, cells)
    # rotating atoms and lattice vectors together (rows of one tensor) changes nothing
    joined = torch.cat([positions, cells], dim=1)

    def energy(rows):
        return model(rows[:, :n], species, rows[:, n:]).detach()

    def forces(rows):
        return torch.cat([model.energy_and_forces(rows[:, :n], species, rows[:, n:])[1],
                          torch.zeros_like(rows[:, n:])], dim=1)

    testing.assert_rotation_invariant(energy, joined, translations=False)
    testing.assert_rotation_equivariant(forces, joined, translations=False)
    # translations, and moving single atoms by lattice vectors (its periodic images)
    shift = torch.tensor([0.7, -1.3, 2.1], dtype=torch.float64)
    moved = positions.clone()
    moved[:, :5] += cells[:, 0:1] - 2 * cells[:, 2:3]
    for other in (positions + shift, moved):
        torch.testing.assert_close(model(other, species, cells), reference, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(model.energy_and_forces(moved, species, cells)[1],
                               model.energy_and_forces(positions, species, cells)[1], rtol=1e-9, atol=1e-9)
    # ... which an open-cluster treatment of the same atoms fails
    assert (model(moved, species) - model(positions, species)).abs().max() > 1e-3
    forces_now = model.energy_and_forces(positions[:1], species[:1], cells[:1])[1]
    testing.assert_matches_finite_differences(lambda x: model(x, species[:1], cells[:1]), positions[:1],
                                              -forces_now, eps=1e-5, rtol=1e-6, atol=1e-6)
