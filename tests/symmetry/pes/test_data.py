"""Datasets: labels from ASE, random frames, the NPZ cache and its parameters, splits, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dlpde.symmetry.pes import SYSTEMS, generate_dataset, split_dataset
from dlpde.symmetry.studies.pes import LJ13_MINIMUM, lennard_jones


def test_lj13_reference_is_the_known_minimum(cache_dir):
    data = generate_dataset("lj13", 2, 0.0, seed=0, cache_dir=cache_dir)
    # Cambridge Cluster Database value; the generated frames do not change the energy
    np.testing.assert_allclose(data.energies.numpy(), LJ13_MINIMUM, atol=1e-6)
    assert data.forces.abs().max() < 1e-3  # the reference is relaxed to fmax = 1e-3


def test_labels_agree_with_an_independent_lennard_jones(lj13):
    for k in range(5):
        energy, gradient = lennard_jones(lj13.positions[k].numpy())
        assert abs(energy - float(lj13.energies[k])) < 1e-8
        np.testing.assert_allclose(-gradient, lj13.forces[k].numpy(), atol=1e-8)


def test_random_frames_and_orders(lj13):
    # translations: centroids spread; rotations and orders: the same atom is not where it was
    centroids = lj13.positions.mean(1)
    assert centroids.std(0).min() > 1.0
    # total force and torque vanish in every frame (isolated cluster)
    assert lj13.forces.sum(1).abs().max() < 1e-8
    torque = torch.linalg.cross(lj13.positions - centroids[:, None], lj13.forces, dim=-1).sum(1)
    assert torque.abs().max() < 1e-8
    first_atom_distances = (lj13.positions[:, 0] - centroids).norm(dim=-1)
    assert first_atom_distances.std() > 0.1  # sometimes the centre atom, sometimes a surface one


def test_cache_round_trip_and_parameters(cache_dir):
    first = generate_dataset("lj13", 5, 0.05, seed=3, cache_dir=cache_dir)
    files = sorted(cache_dir.glob("lj13-5-*.npz"))
    with np.load(files[-1]) as stored:
        parameters = json.loads(str(stored["parameters"]))
    assert parameters["perturbation"] == 0.05 and parameters["seed"] == 3 and parameters["system"] == "lj13"
    again = generate_dataset("lj13", 5, 0.05, seed=3, cache_dir=cache_dir)
    torch.testing.assert_close(first.positions, again.positions, rtol=0, atol=0)
    other = generate_dataset("lj13", 5, 0.05, seed=4, cache_dir=cache_dir)
    assert not torch.equal(first.positions, other.positions)
    # the first configurations of a seed do not depend on how many are generated
    longer = generate_dataset("lj13", 7, 0.05, seed=3, cache_dir=cache_dir)
    torch.testing.assert_close(longer.energies[:5], first.energies, rtol=0, atol=0)


def test_default_cache_dir_follows_environment(monkeypatch, tmp_path):
    from dlpde.symmetry.pes import default_cache_dir

    monkeypatch.setenv("DLPDE_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "pes"


def test_periodic_and_alloy_systems(cu_fcc, cache_dir):
    assert cu_fcc.cells is not None and cu_fcc.cells.shape == (2, 3, 3)
    # rotated cubic cells: orthogonal rows of length 7.2 Angstrom, positions wrapped inside
    gram = cu_fcc.cells @ cu_fcc.cells.transpose(1, 2)
    torch.testing.assert_close(gram, 7.2**2 * torch.eye(3, dtype=torch.float64).expand(2, 3, 3))
    fractional = cu_fcc.positions @ torch.linalg.inv(cu_fcc.cells)
    assert fractional.min() >= -1e-9 and fractional.max() < 1 + 1e-9
    assert cu_fcc.forces.sum(1).abs().max() < 1e-8  # momentum conservation in the crystal
    alloy = generate_dataset("ptau38", 2, 0.05, seed=0, cache_dir=cache_dir)
    assert alloy.elements == (78, 79) and (alloy.species == 78).sum(1).tolist() == [19, 19]
    assert not torch.equal(alloy.species[0], alloy.species[1])


def test_splits_are_disjoint_and_seeded(lj13):
    train, validation, test = split_dataset(lj13, (20, 5, 10), seed=1)
    keys = [tuple(np.round(d.energies.numpy(), 12)) for d in (train, validation, test)]
    assert len(set(keys[0]) | set(keys[1]) | set(keys[2])) == 35
    again = split_dataset(lj13, (20, 5, 10), seed=1)[0]
    torch.testing.assert_close(again.positions, train.positions)
    assert not torch.equal(split_dataset(lj13, (20, 5, 10), seed=2)[0].energies, train.energies)
    with pytest.raises(ValueError, match="sizes"):
        split_dataset(lj13, (30, 20, 10))


@pytest.mark.parametrize("arguments, message", [
    (("argon", 3, 0.1, 0), "system"), (("lj13", 0, 0.1, 0), "n_configs"),
    (("lj13", 3, -0.1, 0), "perturbation"), (("lj13", 3, 0.1, -1), "seed")])
def test_bad_arguments(arguments, message, cache_dir):
    with pytest.raises(ValueError, match=message):
        generate_dataset(*arguments, cache_dir=cache_dir)


def test_every_system_is_described():
    assert set(SYSTEMS) == {"lj13", "lj38", "cu13", "ptau38", "cu_fcc"}
