"""Neighbour lists of batched configurations, open or periodic, and smooth cutoff functions.

Atoms of a batch ``positions (B, N, 3)`` are numbered ``b * N + i``. A neighbour list holds the
directed pairs ``(i, j, n)`` with ``|x_j + n^T L - x_i| < r_c``, where ``L`` holds the lattice
vectors as rows and ``n`` is an integer image shift (zero for open clusters). The search runs
without gradients; ``edge_vectors`` then recomputes ``x_j - x_i + n^T L`` differentiably, so that
forces ``-dE/dx`` flow through every pair, including the pairs of an atom with its own images.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import torch

from dlpde.shared import check_int, check_positive, check_tensor

__all__ = ["NeighbourList", "neighbour_list", "edge_vectors", "neighbour_table", "cosine_cutoff",
           "polynomial_cutoff"]


@dataclasses.dataclass(frozen=True)
class NeighbourList:
    """Directed pairs of a batch: ``centers (E,)``, ``neighbours (E,)`` (flat atom indices),
    ``shifts (E, 3)`` integer image shifts (as floats), ``configuration (E,)`` index of the
    configuration of each pair, and the number of atoms ``n_atoms = B * N``."""

    centers: torch.Tensor
    neighbours: torch.Tensor
    shifts: torch.Tensor
    configuration: torch.Tensor
    n_atoms: int


def _image_shifts(cell: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Integer shifts ``n`` (S, 3) covering every image within ``cutoff`` of a wrapped cell.

    The planes of lattice direction ``k`` are ``1 / |b_k|`` apart (``b_k`` the columns of
    ``L^{-1}``), so ``|n_k| <= ceil(r_c |b_k|)`` images suffice for positions inside the cell.
    """
    reach = torch.ceil(cutoff * torch.linalg.inv(cell).norm(dim=0)).long().tolist()
    ranges = [range(-k, k + 1) for k in reach]
    return torch.tensor(list(itertools.product(*ranges)), dtype=cell.dtype, device=cell.device)


def neighbour_list(positions: torch.Tensor, cutoff: float, cells: torch.Tensor | None = None
                   ) -> NeighbourList:
    """All directed pairs closer than ``cutoff``.

    Args:
        positions: ``(B, N, 3)``.
        cutoff: radius r_c (same length unit).
        cells: ``(B, 3, 3)`` lattice vectors as rows (periodic in all three directions), or
            ``None`` for open clusters.
    """
    check_tensor(positions, "positions", dim=3, shape=(None, None, 3))
    cutoff = check_positive(cutoff, "cutoff")
    if cells is not None:
        check_tensor(cells, "cells", dim=3, shape=(positions.shape[0], 3, 3))
        if bool((torch.linalg.det(cells.detach().double()).abs() < 1e-12).any()):
            raise ValueError("cells must be invertible (three independent lattice vectors)")
    b, n, _ = positions.shape
    with torch.no_grad():
        x = positions.detach()
        if cells is None:
            difference = x[:, None, :, :] - x[:, :, None, :]  # [b, i, j] = x_j - x_i
            inside = (difference.norm(dim=-1) < cutoff) & ~torch.eye(n, dtype=torch.bool,
                                                                       device=x.device)
            config, i, j = inside.nonzero(as_tuple=True)
            shifts = torch.zeros(config.shape[0], 3, dtype=x.dtype, device=x.device)
        else:
            parts = []
            for k in range(b):  # one configuration at a time keeps memory at N^2 S
                cell = cells[k].detach()
                fractional = x[k] @ torch.linalg.inv(cell)
                wrap = torch.floor(fractional)
                wrapped = x[k] - wrap @ cell
                images = _image_shifts(cell, cutoff)
                # [i, j, s] = x_j + n_s^T L - x_i for wrapped positions
                difference = (wrapped[None, :, None, :] + (images @ cell)[None, None, :, :]
                              - wrapped[:, None, None, :])
                inside = difference.norm(dim=-1) < cutoff
                zero = int((images.abs().sum(-1) == 0).nonzero())
                inside[torch.arange(n), torch.arange(n), zero] = False
                i, j, s = inside.nonzero(as_tuple=True)
                # shift for the unwrapped positions: x_j - x_i + (n_s - w_j + w_i)^T L
                parts.append((torch.full_like(i, k), i, j, images[s] - wrap[j] + wrap[i]))
            config = torch.cat([p[0] for p in parts])
            i = torch.cat([p[1] for p in parts])
            j = torch.cat([p[2] for p in parts])
            shifts = torch.cat([p[3] for p in parts])
    return NeighbourList(config * n + i, config * n + j, shifts, config, b * n)


def edge_vectors(positions: torch.Tensor, pairs: NeighbourList, cells: torch.Tensor | None = None
                 ) -> torch.Tensor:
    """``x_j - x_i + n^T L`` for every pair, ``(E, 3)``, differentiable in the positions."""
    check_tensor(positions, "positions", dim=3, shape=(None, None, 3), finite=False)
    if not isinstance(pairs, NeighbourList):
        raise TypeError(f"pairs must be a NeighbourList, got {type(pairs).__name__}")
    if pairs.n_atoms != positions.shape[0] * positions.shape[1]:
        raise ValueError(f"pairs are for {pairs.n_atoms} atoms, positions hold "
                         f"{positions.shape[0] * positions.shape[1]}")
    if cells is not None:
        check_tensor(cells, "cells", dim=3, shape=(positions.shape[0], 3, 3), finite=False)
    flat = positions.reshape(-1, 3)
    vectors = flat[pairs.neighbours] - flat[pairs.centers]
    if cells is not None:
        vectors = vectors + torch.einsum("ek,ekl->el", pairs.shifts, cells[pairs.configuration])
    return vectors


def neighbour_table(centers: torch.Tensor, n_atoms: int) -> torch.Tensor:
    """The pairs of each atom as a padded table ``(n_atoms, max degree)`` of pair indices, -1
    where an atom has fewer pairs. ``centers`` must be sorted (as ``neighbour_list`` gives them)."""
    check_tensor(centers, "centers", dim=1, dtype=(torch.int64,), nonempty=False)
    n_atoms = check_int(n_atoms, "n_atoms", minimum=0)
    if centers.numel() and (int(centers.min()) < 0 or int(centers.max()) >= n_atoms):
        raise ValueError(f"centers must be atom indices in [0, {n_atoms})")
    if centers.numel() > 1 and bool((centers[1:] < centers[:-1]).any()):
        raise ValueError("centers must be sorted (as neighbour_list returns them)")
    with torch.no_grad():
        degree = torch.bincount(centers, minlength=n_atoms)
        width = int(degree.max()) if degree.numel() else 0
        offsets = torch.cumsum(degree, 0) - degree
        slot = torch.arange(centers.numel(), device=centers.device) - offsets[centers]
        table = torch.full((n_atoms, width), -1, dtype=torch.long, device=centers.device)
        table[centers, slot] = torch.arange(centers.numel(), device=centers.device)
    return table


def cosine_cutoff(distance: torch.Tensor, cutoff: float) -> torch.Tensor:
    """Behler's cutoff ``f_c(r) = (cos(pi r / r_c) + 1) / 2`` for ``r < r_c``, else 0 (C^1)."""
    check_tensor(distance, "distance", nonempty=False)
    cutoff = check_positive(cutoff, "cutoff")
    return torch.where(distance < cutoff, 0.5 * (torch.cos(math.pi * distance / cutoff) + 1.0),
                       torch.zeros_like(distance))


def polynomial_cutoff(distance: torch.Tensor, cutoff: float, degree: int = 6) -> torch.Tensor:
    """NequIP's envelope ``u(x) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^{p+1} - p(p+1)/2 x^{p+2}``,
    ``x = r / r_c``, zero beyond ``r_c``; its first ``p - 1`` derivatives vanish at ``r_c``."""
    check_tensor(distance, "distance", nonempty=False)
    cutoff = check_positive(cutoff, "cutoff")
    p = check_int(degree, "degree", minimum=2)
    x = distance / cutoff
    envelope = (1.0 - (p + 1) * (p + 2) / 2 * x**p + p * (p + 2) * x ** (p + 1)
                - p * (p + 1) / 2 * x ** (p + 2))
    return torch.where(x < 1.0, envelope, torch.zeros_like(x))
