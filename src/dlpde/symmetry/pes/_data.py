"""Potential-energy-surface data generated offline with ASE calculators.

Every configuration is a reference structure (a relaxed cluster, or a perfect crystal) with
independent Gaussian displacements of standard deviation ``perturbation`` on every Cartesian
coordinate, labelled with the energy and the forces of an ASE calculator (``EMT`` for metals,
Jacobsen, Stoltze and Norskov 1996; ``LennardJones`` in reduced units, epsilon = sigma = 1), and
then presented in a random frame: a Haar-random rotation, a random translation and a random
order of its atoms. A model that respects the symmetries sees the same problem in every frame; a
model that does not must learn them from the data.

Datasets are cached as NPZ files holding their generating parameters, in ``cache_dir``
(default ``$DLPDE_CACHE``, else ``~/.cache/dlpde``), never inside the package.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from dlpde.shared import check_int, check_tensor, make_generator
from dlpde.shared.runs import atomic_write_bytes
from dlpde.shared.testing import random_rotation

__all__ = ["PESDataset", "SYSTEMS", "generate_dataset", "default_cache_dir", "split_dataset"]

# Bump when the generating procedure changes: cached files of other versions are regenerated.
_FORMAT_VERSION = 2


@dataclasses.dataclass(frozen=True)
class _System:
    description: str
    calculator: str  # "emt" or "lennard_jones"
    energy_unit: str
    length_unit: str
    periodic: bool = False


SYSTEMS: dict[str, _System] = {
    "lj13": _System("13-atom Lennard-Jones cluster around its icosahedral minimum "
                    "(-44.326801 epsilon)", "lennard_jones", "epsilon", "sigma"),
    "lj38": _System("38-atom Lennard-Jones cluster around its truncated-octahedron minimum "
                    "(-173.928427 epsilon)", "lennard_jones", "epsilon", "sigma"),
    "cu13": _System("13-atom copper cluster (EMT) around its relaxed icosahedron", "emt", "eV",
                    "Angstrom"),
    "ptau38": _System("38-atom Pt19Au19 truncated octahedron (EMT), a random chemical order per "
                      "configuration", "emt", "eV", "Angstrom"),
    "cu_fcc": _System("periodic 2x2x2 cubic supercell of fcc copper, 32 atoms (EMT)", "emt", "eV",
                      "Angstrom", periodic=True),
}

# The Lennard-Jones calculator shifts each pair energy by its value at the cutoff ``rc``; with
# rc = 100 sigma the shift (4e-12 epsilon per pair) is negligible and the energies are those of
# the plain 12-6 potential (the LJ13 minimum is then -44.326801 epsilon).
_LENNARD_JONES_CUTOFF = 100.0


@dataclasses.dataclass(frozen=True)
class PESDataset:
    """Labelled configurations of one system, as float64 CPU tensors.

    Attributes:
        positions: ``(M, N, 3)`` Cartesian coordinates.
        species: ``(M, N)`` atomic numbers (int64).
        energies: ``(M,)`` total energies.
        forces: ``(M, N, 3)`` forces ``-dE/dx``.
        cells: ``(M, 3, 3)`` lattice vectors as rows for periodic systems, else ``None``.
        parameters: the generating parameters (system, n_configs, perturbation, seed, ...).
    """

    positions: torch.Tensor
    species: torch.Tensor
    energies: torch.Tensor
    forces: torch.Tensor
    cells: torch.Tensor | None
    parameters: dict

    def __post_init__(self):
        check_tensor(self.positions, "positions", dim=3, shape=(None, None, 3), nonempty=False)
        check_tensor(self.forces, "forces", dim=3, shape=(None, None, 3), nonempty=False)
        check_tensor(self.energies, "energies", dim=1, nonempty=False)
        check_tensor(self.species, "species", dim=2, dtype=(torch.int64, torch.int32), nonempty=False)
        if self.cells is not None:
            check_tensor(self.cells, "cells", dim=3, shape=(None, 3, 3), nonempty=False)
        if not isinstance(self.parameters, dict):
            raise TypeError(f"parameters must be a dict, got {type(self.parameters).__name__}")
        m, n = self.positions.shape[:2]
        if self.positions.shape != (m, n, 3) or self.forces.shape != (m, n, 3):
            raise ValueError("positions and forces must have shape (M, N, 3)")
        if self.species.shape != (m, n) or self.energies.shape != (m,):
            raise ValueError("species must have shape (M, N) and energies (M,)")
        if self.cells is not None and self.cells.shape != (m, 3, 3):
            raise ValueError("cells must have shape (M, 3, 3) or be None")

    def __len__(self) -> int:
        return self.positions.shape[0]

    @property
    def n_atoms(self) -> int:
        return self.positions.shape[1]

    @property
    def system(self) -> str:
        return self.parameters["system"]

    @property
    def energy_unit(self) -> str:
        return SYSTEMS[self.system].energy_unit

    @property
    def length_unit(self) -> str:
        return SYSTEMS[self.system].length_unit

    @property
    def elements(self) -> tuple[int, ...]:
        """The atomic numbers present, sorted."""
        return tuple(int(z) for z in torch.unique(self.species))

    def subset(self, indices) -> PESDataset:
        """The configurations ``indices`` (a sequence or tensor of ints), in that order."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return PESDataset(self.positions[index], self.species[index], self.energies[index],
                          self.forces[index], None if self.cells is None else self.cells[index],
                          dict(self.parameters))

    def to(self, device=None, dtype=None) -> PESDataset:
        """A copy with floating-point tensors on ``device`` in ``dtype`` (species stay int64)."""
        def move(t):
            return None if t is None else t.to(device=device, dtype=dtype)

        return PESDataset(move(self.positions), self.species.to(device), move(self.energies),
                          move(self.forces), move(self.cells), dict(self.parameters))


def default_cache_dir() -> Path:
    """``$DLPDE_CACHE/pes`` if set, else ``~/.cache/dlpde/pes``."""
    root = os.environ.get("DLPDE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "dlpde")
    return Path(root) / "pes"


def _reference_structure(system: str):
    """The relaxed (or perfect periodic) reference ``ase.Atoms`` of ``system``."""
    from ase import Atoms
    from ase.build import bulk
    from ase.cluster import Icosahedron, Octahedron
    from ase.optimize import BFGS

    if system in ("lj13", "lj38"):
        atoms = Icosahedron("Ar", 2) if system == "lj13" else Octahedron("Ar", length=4, cutoff=1)
        distances = atoms.get_all_distances()
        nearest = distances[distances > 0].min()
        atoms.set_positions(atoms.get_positions() * 2 ** (1 / 6) / nearest)
    elif system == "cu13":
        atoms = Icosahedron("Cu", 2)
    elif system == "ptau38":
        atoms = Octahedron("Pt", length=4, cutoff=1, latticeconstant=4.0)
        atoms.set_chemical_symbols(["Pt"] * 19 + ["Au"] * 19)
    else:  # cu_fcc: the perfect crystal is the reference
        return bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    atoms = Atoms(atoms.get_chemical_symbols(), positions=atoms.get_positions())  # a plain Atoms
    atoms.calc = _calculator(system)
    BFGS(atoms, logfile=None).run(fmax=1e-3, steps=1000)
    atoms.calc = None
    return atoms


def _calculator(system: str):
    if SYSTEMS[system].calculator == "emt":
        from ase.calculators.emt import EMT

        return EMT()
    from ase.calculators.lj import LennardJones

    return LennardJones(epsilon=1.0, sigma=1.0, rc=_LENNARD_JONES_CUTOFF)


def _generate(system: str, n_configs: int, perturbation: float, seed: int) -> dict:
    reference = _reference_structure(system)
    calculator = _calculator(system)
    generator = make_generator(seed)
    n = len(reference)
    base = torch.as_tensor(reference.get_positions(), dtype=torch.float64)
    symbols = list(reference.get_chemical_symbols())
    periodic = SYSTEMS[system].periodic
    positions = np.empty((n_configs, n, 3))
    forces = np.empty((n_configs, n, 3))
    species = np.empty((n_configs, n), dtype=np.int64)
    energies = np.empty(n_configs)
    cells = np.empty((n_configs, 3, 3)) if periodic else None
    from tqdm.auto import tqdm

    for m in tqdm(range(n_configs), desc=f"{system} labels", disable=None, leave=False):
        atoms = reference.copy()
        if system == "ptau38":  # a random chemical order with the fixed composition
            order = torch.randperm(n, generator=generator).tolist()
            atoms.set_chemical_symbols([symbols[k] for k in order])
        displaced = base + perturbation * torch.randn(n, 3, generator=generator, dtype=torch.float64)
        atoms.set_positions(displaced.numpy())
        # A random frame: rotation R (x -> R x), translation, atom order. For the periodic
        # cell the lattice vectors rotate with the atoms and positions are wrapped into it.
        rotation = random_rotation(3, generator=generator)
        translation = 5.0 * torch.randn(3, generator=generator, dtype=torch.float64)
        permutation = torch.randperm(n, generator=generator).numpy()
        atoms = atoms[permutation]
        atoms.set_positions(atoms.get_positions() @ rotation.numpy().T + translation.numpy())
        if periodic:
            atoms.set_cell(np.asarray(atoms.get_cell()) @ rotation.numpy().T, scale_atoms=False)
            atoms.wrap()
        atoms.calc = calculator
        energies[m] = atoms.get_potential_energy()
        forces[m] = atoms.get_forces()
        positions[m] = atoms.get_positions()
        species[m] = atoms.get_atomic_numbers()
        if periodic:
            cells[m] = np.asarray(atoms.get_cell())
    arrays = {"positions": positions, "species": species, "energies": energies, "forces": forces}
    if periodic:
        arrays["cells"] = cells
    return arrays


def _validate(system, n_configs, perturbation, seed):
    if system not in SYSTEMS:
        raise ValueError(f"system must be one of {sorted(SYSTEMS)}, got {system!r}")
    if isinstance(n_configs, bool) or not isinstance(n_configs, int) or n_configs < 1:
        raise ValueError(f"n_configs must be a positive int, got {n_configs!r}")
    if not (isinstance(perturbation, (int, float)) and 0 <= perturbation < 1):
        raise ValueError(f"perturbation (displacement standard deviation, in {SYSTEMS[system].length_unit})"
                         f" must be a number in [0, 1), got {perturbation!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")


def generate_dataset(system: str, n_configs: int, perturbation: float, seed: int = 0,
                     cache_dir: str | os.PathLike | None = None) -> PESDataset:
    """Labelled configurations of ``system``, generated with ASE (or read from the cache).

    Args:
        system: one of ``SYSTEMS``: ``"lj13"``, ``"lj38"``, ``"cu13"``, ``"ptau38"``, ``"cu_fcc"``.
        n_configs: number of configurations M.
        perturbation: standard deviation of the Gaussian displacement of every coordinate from
            the reference structure (Angstrom for EMT systems, sigma for Lennard-Jones). For
            Cu13, 0.1 Angstrom gives an energy standard deviation of about 0.48 eV; for LJ13,
            0.03 sigma gives about 0.9 epsilon.
        seed: seed of the displacements, frames, atom orders (and chemical orders for ptau38).
        cache_dir: folder of the NPZ cache (default ``default_cache_dir()``).

    Returns:
        A ``PESDataset``; the first ``k`` configurations of a seed do not depend on ``n_configs``.
    """
    _validate(system, n_configs, perturbation, seed)
    parameters = {"system": system, "n_configs": n_configs, "perturbation": float(perturbation),
                  "seed": seed, "format_version": _FORMAT_VERSION,
                  "calculator": SYSTEMS[system].calculator,
                  "energy_unit": SYSTEMS[system].energy_unit,
                  "length_unit": SYSTEMS[system].length_unit}
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    digest = hashlib.sha256(json.dumps(parameters, sort_keys=True).encode()).hexdigest()[:12]
    path = folder / f"{system}-{n_configs}-{digest}.npz"
    arrays = None
    if path.exists():
        with np.load(path, allow_pickle=False) as stored:
            if json.loads(str(stored["parameters"])) == parameters:
                arrays = {k: stored[k] for k in stored.files if k != "parameters"}
    if arrays is None:
        arrays = _generate(system, n_configs, float(perturbation), seed)
        import io

        buffer = io.BytesIO()
        np.savez_compressed(buffer, parameters=json.dumps(parameters, sort_keys=True), **arrays)
        atomic_write_bytes(buffer.getvalue(), path)
    return PESDataset(
        positions=torch.as_tensor(arrays["positions"], dtype=torch.float64),
        species=torch.as_tensor(arrays["species"], dtype=torch.long),
        energies=torch.as_tensor(arrays["energies"], dtype=torch.float64),
        forces=torch.as_tensor(arrays["forces"], dtype=torch.float64),
        cells=torch.as_tensor(arrays["cells"], dtype=torch.float64) if "cells" in arrays else None,
        parameters=parameters)


def split_dataset(dataset: PESDataset, sizes, seed: int = 0) -> tuple[PESDataset, ...]:
    """Disjoint random subsets of the given ``sizes`` (e.g. train, validation, test).

    The configurations are shuffled by ``seed`` and cut in order. Nested training sets for a
    learning curve are ``train.subset(range(k))`` for growing ``k``.
    """
    if not isinstance(dataset, PESDataset):
        raise TypeError(f"dataset must be a PESDataset, got {type(dataset).__name__}")
    if isinstance(sizes, (str, bytes, torch.Tensor)) or not isinstance(sizes, (list, tuple, range)):
        raise TypeError(f"sizes must be a sequence of ints, got {type(sizes).__name__}")
    sizes = [check_int(s, "each size", minimum=0) for s in sizes]
    check_int(seed, "seed", minimum=0)
    if any(s < 0 for s in sizes) or sum(sizes) > len(dataset):
        raise ValueError(f"sizes {sizes} must be non-negative and sum to at most {len(dataset)}")
    order = torch.randperm(len(dataset), generator=make_generator(seed))
    splits, start = [], 0
    for size in sizes:
        splits.append(dataset.subset(order[start:start + size]))
        start += size
    return tuple(splits)
