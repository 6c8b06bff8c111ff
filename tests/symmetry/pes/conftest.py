"""Shared fixtures: small datasets in a temporary cache, and small float64 models."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("pes_cache")


@pytest.fixture(scope="session")
def cu13(cache_dir):
    from dlpde.symmetry.pes import generate_dataset

    return generate_dataset("cu13", 6, 0.1, seed=0, cache_dir=cache_dir)


@pytest.fixture(scope="session")
def lj13(cache_dir):
    from dlpde.symmetry.pes import generate_dataset

    return generate_dataset("lj13", 40, 0.03, seed=0, cache_dir=cache_dir)


@pytest.fixture(scope="session")
def cu_fcc(cache_dir):
    from dlpde.symmetry.pes import generate_dataset

    return generate_dataset("cu_fcc", 2, 0.1, seed=0, cache_dir=cache_dir)


def make_models(elements, n_atoms: int, seed: int = 1) -> dict:
    """One small float64 instance of each potential (the linear MTP with random weights)."""
    from dlpde.symmetry.pes import (
        CoordinateMLP,
        EquivariantPotential,
        MomentTensorPotential,
        SymmetryFunctionPotential,
    )

    linear = MomentTensorPotential(elements, cutoff=5.0, min_distance=2.0, level_max=12)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(seed)
        linear.weights.copy_(torch.randn(linear.weights.shape, generator=generator, dtype=torch.float64))
    return {
        "equivariant": EquivariantPotential(elements, cutoff=4.0, l_max=2, channels=4, n_layers=2, seed=seed),
        "moment_tensor_linear": linear,
        "moment_tensor_mlp": MomentTensorPotential(elements, cutoff=5.0, min_distance=2.0, level_max=10,
                                                   readout="mlp", hidden=(8,), seed=seed),
        "symmetry_function": SymmetryFunctionPotential(elements, cutoff=5.0, min_distance=2.0, n_radial=4,
                                                       angular_eta=(0.0, 2.0), zetas=(1.0, 4.0), hidden=(8,),
                                                       seed=seed),
        "coordinate_mlp": CoordinateMLP(elements, n_atoms, hidden=(16,), seed=seed),
    }


SYMMETRIC = ("equivariant", "moment_tensor_linear", "moment_tensor_mlp", "symmetry_function")
