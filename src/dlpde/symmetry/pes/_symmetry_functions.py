"""``SymmetryFunctionPotential``: Behler-Parrinello atom-centred symmetry functions + per-species MLPs.

J. Behler and M. Parrinello, "Generalized neural-network representation of high-dimensional
potential-energy surfaces", Phys. Rev. Lett. 98, 146401 (2007); the functions as in J. Behler,
J. Chem. Phys. 134, 074106 (2011). With the cosine cutoff ``f_c`` (``cosine_cutoff``):

    G2_s(i; eta, R_s) = sum_{j: z_j = s} exp(-eta (r_ij - R_s)^2) f_c(r_ij),
    G4_{s s'}(i; eta, zeta, lambda) = 2^{1 - zeta} sum_{j < k: {z_j, z_k} = {s, s'}}
        (1 + lambda cos theta_ijk)^zeta exp(-eta (r_ij^2 + r_ik^2 + r_jk^2)) f_c(r_ij) f_c(r_ik) f_c(r_jk),

with ``cos theta_ijk = r_ij . r_ik / (|r_ij| |r_ik|)``, for every neighbour species ``s`` (radial)
and unordered species pair ``{s, s'}`` (angular). The radial centres ``R_s`` are evenly spaced on
``[min_distance, cutoff]`` with ``eta = 1 / (2 spacing^2)``; the angular ``eta`` values are given
in units of ``1 / cutoff^2``.
"""

from __future__ import annotations

import torch

from dlpde.shared import check_int, check_positive, check_real
from dlpde.shared.checks import check_dtype

from ._checks import check_elements, check_reals, check_seed, check_widths
from ._descriptor import DescriptorPotential
from ._neighbours import cosine_cutoff, neighbour_table

__all__ = ["SymmetryFunctionPotential", "angle_triplets"]


def angle_triplets(centers: torch.Tensor, n_atoms: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs of pairs ``(e, f)``, ``e < f``, sharing their centre atom (the angles ``j-i-k``).

    ``centers (E,)`` must be sorted (as ``neighbour_list`` returns them). Returns two index
    tensors ``(T,)`` into the pair list.
    """
    with torch.no_grad():
        table = neighbour_table(centers, n_atoms)  # checks centers and n_atoms
        p, q = torch.triu_indices(table.shape[1], table.shape[1], 1, device=centers.device)
        first, second = table[:, p].reshape(-1), table[:, q].reshape(-1)
        valid = (first >= 0) & (second >= 0)
        return first[valid], second[valid]


class SymmetryFunctionPotential(DescriptorPotential):
    """Behler-Parrinello neural-network potential.

    Args:
        elements: atomic numbers the model knows.
        cutoff: r_c of the cosine cutoff; min_distance: the first radial centre.
        n_radial: number of radial centres per neighbour species.
        angular_eta: eta values of G4 in units of ``1 / cutoff^2``; zetas: the zeta values of
            G4 (each with lambda = +1 and -1).
        hidden: widths of each species' MLP; seed: initial weights; dtype: parameter dtype.
    """

    def __init__(self, elements, cutoff: float = 5.0, min_distance: float = 1.5, n_radial: int = 12,
                 angular_eta=(0.0, 2.0, 8.0), zetas=(1.0, 2.0, 4.0, 8.0), hidden=(64, 64), seed: int = 0,
                 dtype=torch.float64):
        n_species = len(check_elements(elements))
        cutoff = check_positive(cutoff, "cutoff")
        min_distance = check_real(min_distance, "min_distance", 0.0)
        n_radial = check_int(n_radial, "n_radial", minimum=2)
        angular_eta = check_reals(angular_eta, "angular_eta", 0.0)
        zetas = check_reals(zetas, "zetas", 1.0)
        check_widths(hidden)
        check_seed(seed)
        check_dtype(dtype)
        if not 0 <= min_distance < cutoff:
            raise ValueError(f"min_distance must lie in [0, cutoff), got {min_distance}")
        n_angular = len(angular_eta) * len(zetas) * 2
        n_descriptors = n_radial * n_species + n_angular * n_species * (n_species + 1) // 2
        super().__init__(elements, cutoff, n_descriptors, hidden, seed, dtype)
        centres = torch.linspace(min_distance, cutoff, n_radial, dtype=torch.float64)
        self.register_buffer("radial_centres", centres.to(dtype))
        self.radial_eta = 1.0 / (2.0 * float(centres[1] - centres[0]) ** 2)
        self.register_buffer("angular_eta", torch.tensor(angular_eta, dtype=dtype) / cutoff**2)
        zeta = torch.tensor(zetas, dtype=dtype).repeat_interleave(2)
        self.register_buffer("zeta", zeta)
        self.register_buffer("lam", torch.tensor([1.0, -1.0], dtype=dtype).repeat(len(zetas)))
        pair = torch.full((n_species, n_species), -1, dtype=torch.long)
        k = 0
        for s in range(n_species):
            for t in range(s, n_species):
                pair[s, t] = pair[t, s] = k
                k += 1
        self.register_buffer("species_pair", pair, persistent=False)

    def descriptors(self, positions, species_index, cells):
        pairs, vectors = self.pairs(positions, cells)
        n_atoms, n_species = pairs.n_atoms, self.n_species
        dtype = positions.dtype
        distance = vectors.norm(dim=-1)
        cut = cosine_cutoff(distance, self.cutoff)
        species = species_index.reshape(-1)
        # radial: (E, n_radial) scattered into the block of the neighbour's species
        gaussians = torch.exp(-self.radial_eta * (distance[:, None] - self.radial_centres.to(dtype)) ** 2)
        radial = (gaussians * cut[:, None])[:, None, :] * torch.nn.functional.one_hot(
            species[pairs.neighbours], n_species).to(dtype)[:, :, None]
        g2 = torch.zeros(n_atoms, radial.shape[1] * radial.shape[2], dtype=dtype, device=positions.device)
        g2 = g2.index_add(0, pairs.centers, radial.flatten(1))
        # angular: one term per angle j-i-k
        first, second = angle_triplets(pairs.centers, n_atoms)
        v1, v2 = vectors[first], vectors[second]
        r1, r2 = distance[first], distance[second]
        r3 = (v2 - v1).norm(dim=-1)
        cosine = (v1 * v2).sum(-1) / (r1 * r2)
        radial_part = torch.exp(-self.angular_eta.to(dtype) * (r1**2 + r2**2 + r3**2)[:, None])
        radial_part = radial_part * (cut[first] * cut[second] * cosine_cutoff(r3, self.cutoff))[:, None]
        zeta, lam = self.zeta.to(dtype), self.lam.to(dtype)
        angular_part = 2.0 ** (1.0 - zeta) * (1.0 + lam * cosine[:, None]).clamp_min(0.0) ** zeta
        terms = (radial_part[:, :, None] * angular_part[:, None, :]).flatten(1)
        channel = self.species_pair[species[pairs.neighbours[first]], species[pairs.neighbours[second]]]
        n_pairs = n_species * (n_species + 1) // 2
        blocks = terms[:, None, :] * torch.nn.functional.one_hot(channel, n_pairs).to(dtype)[:, :, None]
        g4 = torch.zeros(n_atoms, n_pairs * terms.shape[1], dtype=dtype, device=positions.device)
        g4 = g4.index_add(0, pairs.centers[first], blocks.flatten(1))
        return torch.cat([g2, g4], dim=-1).reshape(*positions.shape[:2], self.n_descriptors)
