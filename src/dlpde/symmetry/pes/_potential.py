"""The common frame of every potential: atomic energies summed to a total, forces by autograd.

``E(x) = sum_i [ s * eps_theta(i; x) + e_{z_i} ]`` where ``eps_theta(i; x)`` is the model's
atomic energy of atom ``i`` (a function of its environment), ``s`` an energy scale and ``e_z``
a per-species reference energy, both fitted to the training set by ``fit_normalisation``
(NequIP's scheme: ``e_z`` by least squares of the energies on the species counts, ``s`` the
root-mean-square force). Forces are ``F = -dE/dx`` by reverse-mode autodiff.

Inputs of every model: ``positions (B, N, 3)``, ``species (B, N)`` or ``(N,)`` atomic numbers,
``cells (B, 3, 3)`` or ``(3, 3)`` lattice vectors as rows for periodic configurations, or
``None`` for open clusters.
"""

from __future__ import annotations

import torch

from dlpde.shared import check_bool, check_callable, check_positive, check_tensor, gradient

from ._checks import check_elements
from ._neighbours import NeighbourList, edge_vectors, neighbour_list

__all__ = ["AtomicPotential", "energy_and_forces"]


class AtomicPotential(torch.nn.Module):
    """Base class: species bookkeeping, input checks, normalisation, energy and forces.

    Subclasses implement ``atomic_energies(positions, species_index, cells) -> (B, N)`` in
    normalised units; ``species_index`` holds indices into ``elements`` (0..S-1).
    """

    def __init__(self, elements, cutoff: float | None):
        super().__init__()
        elements = check_elements(elements)
        if cutoff is not None:
            cutoff = check_positive(cutoff, "cutoff")
        self.elements = elements
        self.cutoff = None if cutoff is None else float(cutoff)
        table = torch.full((119,), -1, dtype=torch.long)
        table[list(elements)] = torch.arange(len(elements))
        self.register_buffer("species_table", table, persistent=False)
        self.register_buffer("atomic_energy_shift", torch.zeros(len(elements), dtype=torch.float64))
        self.register_buffer("energy_scale", torch.ones((), dtype=torch.float64))

    @property
    def n_species(self) -> int:
        return len(self.elements)

    # -- inputs ------------------------------------------------------------------------------
    def _inputs(self, positions, species, cells):
        if not isinstance(positions, torch.Tensor) or not positions.is_floating_point():
            raise TypeError("positions must be a floating-point tensor of shape (B, N, 3)")
        if positions.dim() != 3 or positions.shape[-1] != 3:
            raise ValueError(f"positions must have shape (B, N, 3), got {tuple(positions.shape)}")
        b, n, _ = positions.shape
        if not isinstance(species, torch.Tensor) or species.is_floating_point():
            raise TypeError("species must be an integer tensor of atomic numbers, shape (N,) or (B, N)")
        if species.dim() == 1:
            species = species.expand(b, -1)
        if species.shape != (b, n):
            raise ValueError(f"species must have shape (N,) or (B, N) = ({b}, {n}), "
                             f"got {tuple(species.shape)}")
        if species.device != positions.device:
            raise ValueError(f"species are on {species.device} but positions on {positions.device}")
        if species.min() < 0 or species.max() > 118:
            raise ValueError("species must be atomic numbers in 1..118")
        index = self.species_table[species]
        if (index < 0).any():
            unknown = sorted(set(species[index < 0].tolist()))
            raise ValueError(f"species {unknown} are not among the model's elements {self.elements}")
        if cells is not None:
            if not isinstance(cells, torch.Tensor) or cells.shape not in ((3, 3), (b, 3, 3)):
                raise ValueError(f"cells must be a tensor of shape (3, 3) or (B, 3, 3) = ({b}, 3, 3), got "
                                 f"{tuple(getattr(cells, 'shape', ()))}")
            cells = cells.expand(b, 3, 3).to(positions.dtype)
        if not torch.isfinite(positions).all():
            raise ValueError("positions contain NaN or Inf")
        return positions, index, cells

    def pairs(self, positions: torch.Tensor, cells: torch.Tensor | None
              ) -> tuple[NeighbourList, torch.Tensor]:
        """Neighbour list within ``self.cutoff`` and the differentiable pair vectors ``(E, 3)``."""
        pairs = neighbour_list(positions, self.cutoff, cells)
        return pairs, edge_vectors(positions, pairs, cells)

    # -- the model ---------------------------------------------------------------------------
    def atomic_energies(self, positions, species_index, cells) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, positions: torch.Tensor, species: torch.Tensor,
                cells: torch.Tensor | None = None) -> torch.Tensor:
        """Total energies ``(B,)``."""
        positions, index, cells = self._inputs(positions, species, cells)
        atomic = self.atomic_energies(positions, index, cells)
        shift = self.atomic_energy_shift.to(atomic.dtype)[index]
        return (atomic * self.energy_scale.to(atomic.dtype) + shift).sum(dim=1)

    def energy_and_forces(self, positions, species, cells=None, create_graph: bool = False):
        """``(E (B,), F (B, N, 3))`` with ``F = -dE/dx``; ``create_graph=True`` to train on F."""
        return energy_and_forces(self, positions, species, cells, create_graph)

    # -- normalisation -----------------------------------------------------------------------
    def _species_counts(self, dataset) -> torch.Tensor:
        index = self.species_table[dataset.species.to(self.species_table.device)]
        if (index < 0).any():
            raise ValueError(f"the dataset holds species {dataset.elements}, the model {self.elements}")
        return torch.nn.functional.one_hot(index, self.n_species).sum(1).to(torch.float64).cpu()

    @torch.no_grad()
    def fit_normalisation(self, dataset) -> None:
        """Fit ``e_z`` (least squares of energies on species counts) and ``s`` (RMS force)."""
        counts = self._species_counts(dataset)
        energies = dataset.energies.to(torch.float64).cpu()
        shift = torch.linalg.lstsq(counts, energies[:, None], driver="gelsd").solution[:, 0]
        scale = dataset.forces.to(torch.float64).pow(2).mean().sqrt()
        if not scale > 0:  # no forces: the spread of the per-atom energies
            scale = ((energies - counts @ shift) / dataset.n_atoms).std().clamp_min(1e-12)
        self.atomic_energy_shift.copy_(shift)
        self.energy_scale.copy_(scale)

    @torch.no_grad()
    def refit_energy_shift(self, dataset, batch_size: int = 64) -> None:
        """Set ``e_z`` to its least-squares optimum for the current model on ``dataset``.

        The reference energies do not change forces, so this minimises the energy part of the
        training loss exactly (removing a constant offset left by force-dominated training).
        """
        counts = self._species_counts(dataset)
        device = self.atomic_energy_shift.device
        dtype = next((p.dtype for p in self.parameters() if p.is_floating_point()), torch.float64)
        predicted = []
        for start in range(0, len(dataset), batch_size):
            part = dataset.subset(range(start, min(start + batch_size, len(dataset)))).to(device, dtype)
            predicted.append(self(part.positions, part.species, part.cells).to(torch.float64).cpu())
        residual = dataset.energies.to(torch.float64).cpu() - torch.cat(predicted)
        correction = torch.linalg.lstsq(counts, residual[:, None], driver="gelsd").solution[:, 0]
        self.atomic_energy_shift.add_(correction.to(device))


def energy_and_forces(model, positions, species, cells=None, create_graph: bool = False):
    """Energies ``(B,)`` and forces ``-dE/dx`` ``(B, N, 3)`` of any potential ``model``."""
    check_callable(model, "model")
    check_tensor(positions, "positions", dim=3, shape=(None, None, 3))
    check_bool(create_graph, "create_graph")
    holder = {}

    def energy(x):
        holder["energy"] = model(x, species, cells)
        return holder["energy"]

    forces = -gradient(energy, positions, create_graph=create_graph)
    energies = holder["energy"]
    if not create_graph:
        energies, forces = energies.detach(), forces.detach()
    return energies, forces
