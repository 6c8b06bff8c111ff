"""``EquivariantPotential``: an E(3)-equivariant message-passing potential in the style of NequIP.

Batzner et al., "E(3)-equivariant graph neural networks for data-efficient and accurate
interatomic potentials", Nat. Commun. 13, 2453 (2022); built with e3nn (Geiger and Smidt 2022).

Node features ``h_i`` are direct sums of irreducible representations of O(3): ``C`` copies of
each ``l = 0..l_max`` with parity ``(-1)^l`` (``C x 0e + C x 1o + C x 2e + ...``). One
interaction layer is

    m_i = (1 / sqrt(<n>)) sum_{j in N(i)} W(r_ij) (Lin_1 h_j (x) Y(r_ij / |r_ij|)),
    h_i <- h_i + Gate( Lin_2 m_i + SelfInteraction(h_i (x) onehot(z_i)) ),

where ``Y`` are the real spherical harmonics up to ``l_max``, ``(x)`` the Clebsch-Gordan tensor
product restricted to the paths ``l_1 (x) l_2 -> l_out`` with ``l_out <= l_max`` and natural
parity, its weights ``W(r) = MLP(B(r) u(r))`` depend on the distance through ``n_radial``
Bessel functions ``B_n(r) = sqrt(2/r_c) sin(n pi r / r_c) / r`` times the polynomial envelope
``u`` (smooth at ``r_c``), ``<n>`` is the average number of neighbours in the training set, and
the gate multiplies each ``l > 0`` channel by ``sigmoid`` of a learned scalar while the scalars
go through SiLU. The atomic energy is a linear readout of the ``0e`` channels of the last layer.
Every operation is equivariant under rotations, reflections and translations, and the sum over
neighbours makes the model invariant under permutations of the atoms.
"""

from __future__ import annotations

import math

import torch

from dlpde.shared import check_positive, check_positive_int, check_tensor, make_generator
from dlpde.shared.checks import check_dtype

from ._checks import check_seed
from ._neighbours import polynomial_cutoff
from ._potential import AtomicPotential

__all__ = ["EquivariantPotential", "bessel_basis"]


def bessel_basis(distance: torch.Tensor, cutoff: float, n_basis: int) -> torch.Tensor:
    """``B_n(r) = sqrt(2 / r_c) sin(n pi r / r_c) / r`` for ``n = 1..n_basis``; ``(E, n_basis)``."""
    check_tensor(distance, "distance", dim=1, nonempty=False)
    cutoff = check_positive(cutoff, "cutoff")
    n_basis = check_positive_int(n_basis, "n_basis")
    if bool((distance <= 0).any()):
        raise ValueError("distance must be positive (B_n(r) is singular at r = 0)")
    n = torch.arange(1, n_basis + 1, dtype=distance.dtype, device=distance.device)
    r = distance[:, None]
    return math.sqrt(2.0 / cutoff) * torch.sin(n * math.pi * r / cutoff) / r


class _Interaction(torch.nn.Module):
    """One NequIP interaction block (convolution, self-interaction, gate, residual)."""

    def __init__(self, irreps_in, irreps_hidden, irreps_edge, irreps_species, n_radial,
                 radial_hidden):
        from e3nn import nn as e3nn_nn
        from e3nn import o3

        super().__init__()
        self.linear_in = o3.Linear(irreps_in, irreps_in)
        mid, instructions = [], []
        for i, (mul, ir_in) in enumerate(irreps_in):
            for j, (_, ir_edge) in enumerate(irreps_edge):
                for ir_out in ir_in * ir_edge:
                    if ir_out in irreps_hidden:
                        instructions.append((i, j, len(mid), "uvu", True))
                        mid.append((mul, ir_out))
        self.convolution = o3.TensorProduct(irreps_in, irreps_edge, o3.Irreps(mid), instructions,
                                            shared_weights=False, internal_weights=False)
        self.radial = e3nn_nn.FullyConnectedNet(
            [n_radial, radial_hidden, radial_hidden, self.convolution.weight_numel], torch.nn.functional.silu)
        scalars = o3.Irreps([(mul, ir) for mul, ir in irreps_hidden if ir.l == 0])
        gated = o3.Irreps([(mul, ir) for mul, ir in irreps_hidden if ir.l > 0])
        gates = o3.Irreps(f"{gated.num_irreps}x0e") if gated.num_irreps else o3.Irreps("")
        self.gate = e3nn_nn.Gate(scalars, [torch.nn.functional.silu], gates, [torch.sigmoid], gated)
        self.linear_out = o3.Linear(self.convolution.irreps_out.simplify(), self.gate.irreps_in)
        self.self_interaction = o3.FullyConnectedTensorProduct(irreps_in, irreps_species,
                                                               self.gate.irreps_in)
        self.residual = o3.Irreps(irreps_in) == self.gate.irreps_out
        self.irreps_out = self.gate.irreps_out

    def forward(self, h, species_one_hot, edge_attributes, edge_embedding, centers, neighbours,
                inverse_sqrt_neighbours):
        x = self.linear_in(h)
        messages = self.convolution(x[neighbours], edge_attributes, self.radial(edge_embedding))
        aggregated = torch.zeros(h.shape[0], messages.shape[1], dtype=h.dtype, device=h.device)
        aggregated = aggregated.index_add(0, centers, messages) * inverse_sqrt_neighbours
        out = self.gate(self.linear_out(aggregated) + self.self_interaction(h, species_one_hot))
        return h + out if self.residual else out


class EquivariantPotential(AtomicPotential):
    """NequIP-style E(3)-equivariant message-passing potential (e3nn).

    Args:
        elements: atomic numbers the model knows.
        cutoff: radius r_c of the neighbourhoods (the receptive field is ``n_layers * r_c``).
        l_max: highest degree of the spherical harmonics and of the hidden features.
        channels: multiplicity C of each irrep in the hidden features.
        n_layers: number of interaction blocks.
        n_radial: number of Bessel functions; radial_hidden: width of the radial MLPs.
        envelope_degree: p of the polynomial cutoff envelope.
        seed: initial weights (drawn from N(0, 1) as e3nn does, by an explicit generator).
        dtype: parameter dtype.

    ``forward(positions (B, N, 3), species, cells=None) -> (B,)``; see ``AtomicPotential``.
    """

    def __init__(self, elements, cutoff: float = 5.0, l_max: int = 2, channels: int = 16,
                 n_layers: int = 3, n_radial: int = 8, radial_hidden: int = 32,
                 envelope_degree: int = 6, seed: int = 0, dtype=torch.float64):
        from e3nn import o3

        super().__init__(elements, cutoff)
        check_seed(seed)
        check_dtype(dtype)
        for name, value, low in (("l_max", l_max, 0), ("channels", channels, 1), ("n_layers", n_layers, 1),
                                 ("n_radial", n_radial, 1), ("radial_hidden", radial_hidden, 1),
                                 ("envelope_degree", envelope_degree, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        self.l_max, self.n_radial, self.envelope_degree = l_max, n_radial, envelope_degree
        irreps_species = o3.Irreps(f"{self.n_species}x0e")
        irreps_hidden = o3.Irreps([(channels, (l, (-1) ** l)) for l in range(l_max + 1)])
        self.irreps_edge = o3.Irreps.spherical_harmonics(l_max)
        self.spherical_harmonics = o3.SphericalHarmonics(self.irreps_edge, normalize=True,
                                                         normalization="component")
        self.embedding = o3.Linear(irreps_species, o3.Irreps(f"{channels}x0e"))
        layers, irreps = [], self.embedding.irreps_out
        for _ in range(n_layers):
            layer = _Interaction(irreps, irreps_hidden, self.irreps_edge, irreps_species, n_radial,
                                 radial_hidden)
            layers.append(layer)
            irreps = layer.irreps_out
        self.layers = torch.nn.ModuleList(layers)
        self.readout = o3.Linear(irreps, o3.Irreps("0e"))
        self.register_buffer("average_neighbours", torch.ones((), dtype=torch.float64))
        generator = make_generator(seed)
        with torch.no_grad():  # e3nn's initialisation (weights N(0, 1), biases 0), seeded
            for name, parameter in self.named_parameters():
                if name.endswith("bias"):
                    parameter.zero_()
                else:
                    parameter.copy_(torch.randn(parameter.shape, generator=generator))
        self.to(dtype)

    @torch.no_grad()
    def fit_normalisation(self, dataset) -> None:
        """Also sets ``<n>``, the mean number of neighbours within ``r_c``."""
        super().fit_normalisation(dataset)
        first = dataset.subset(range(min(len(dataset), 256)))
        pairs, _ = self.pairs(first.positions, first.cells)
        self.average_neighbours.fill_(max(pairs.centers.numel() / pairs.n_atoms, 1.0))

    def atomic_energies(self, positions, species_index, cells):
        pairs, vectors = self.pairs(positions, cells)
        distance = vectors.norm(dim=-1)
        edge_attributes = self.spherical_harmonics(vectors)
        edge_embedding = (bessel_basis(distance, self.cutoff, self.n_radial)
                          * polynomial_cutoff(distance, self.cutoff, self.envelope_degree)[:, None])
        one_hot = torch.nn.functional.one_hot(species_index.reshape(-1), self.n_species).to(positions.dtype)
        h = self.embedding(one_hot)
        inverse_sqrt = self.average_neighbours.to(positions.dtype).rsqrt()
        for layer in self.layers:
            h = layer(h, one_hot, edge_attributes, edge_embedding, pairs.centers, pairs.neighbours,
                      inverse_sqrt)
        return self.readout(h).reshape(positions.shape[:2])
