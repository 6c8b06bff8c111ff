"""Core kernels of ``dlpde.symmetry.pes`` for ``benchmarks/gpu_check.py``: energies and forces
(forward and autograd force pass) of each symmetric potential, on open clusters and on a
periodic cell. Inputs: jittered simple-cubic arrangements (spacing 2.5 Angstrom) from fixed
seeds, float64, built on the CPU and moved to the device."""

from __future__ import annotations

import torch

from dlpde.shared import KernelCheck, make_generator

from ._equivariant import EquivariantPotential
from ._moment_tensor import MomentTensorPotential
from ._symmetry_functions import SymmetryFunctionPotential


def _configurations(batch: int, side: int, periodic: bool, seed: int):
    grid = torch.stack(torch.meshgrid(*[torch.arange(side, dtype=torch.float64)] * 3, indexing="ij"), -1)
    lattice = 2.5 * grid.reshape(-1, 3)
    noise = 0.15 * torch.randn(batch, lattice.shape[0], 3, generator=make_generator(seed),
                               dtype=torch.float64)
    positions = lattice + noise
    cells = (2.5 * side * torch.eye(3, dtype=torch.float64)).expand(batch, 3, 3).clone() if periodic else None
    species = torch.full((lattice.shape[0],), 29, dtype=torch.long)
    return positions, species, cells


def _energy_and_forces(build_model, periodic: bool):
    def build(device, tiny):
        batch, side = (2, 3) if tiny else (8, 4)
        positions, species, cells = _configurations(batch, side, periodic, seed=11)
        model = build_model().to(device)
        positions, species = positions.to(device), species.to(device)
        cells = None if cells is None else cells.to(device)
        return lambda: model.energy_and_forces(positions, species, cells)

    return build


def _equivariant():
    return EquivariantPotential((29,), cutoff=4.0, l_max=2, channels=8, n_layers=2, seed=3)


def _moment_tensor():
    model = MomentTensorPotential((29,), cutoff=5.0, min_distance=2.0, level_max=16)
    with torch.no_grad():
        model.weights.copy_(torch.randn(model.weights.shape, generator=make_generator(4),
                                        dtype=torch.float64))
    return model


def _symmetry_function():
    return SymmetryFunctionPotential((29,), cutoff=5.0, min_distance=2.0, seed=5)


KERNELS = [
    KernelCheck("symmetry.pes.equivariant_energy_forces", _energy_and_forces(_equivariant, False)),
    KernelCheck("symmetry.pes.equivariant_energy_forces_periodic", _energy_and_forces(_equivariant, True)),
    KernelCheck("symmetry.pes.moment_tensor_energy_forces", _energy_and_forces(_moment_tensor, False)),
    KernelCheck("symmetry.pes.symmetry_function_energy_forces_periodic",
                _energy_and_forces(_symmetry_function, True)),
]
