"""``CoordinateMLP``: the non-symmetric baseline, an MLP on the flattened coordinates.

    (eps_1, ..., eps_N) = MLP(x_1 - c, ..., x_N - c, onehot(z_1), ..., onehot(z_N)),
    E = sum_i (s eps_i + e_{z_i}),

with ``c`` the centroid (so that only translations are built in). Rotations, reflections and
permutations of the atoms change the input and must be learned from data, e.g. with
``fit_potential(..., augment=True)``, which shows each training batch in a random orthogonal
frame and atom order. There is no cutoff, and the number of atoms N is fixed at construction.
"""

from __future__ import annotations

import math

import torch

from dlpde.shared import make_generator
from dlpde.shared.checks import check_dtype

from ._checks import check_seed, check_widths
from ._potential import AtomicPotential

__all__ = ["CoordinateMLP"]


class CoordinateMLP(AtomicPotential):
    """MLP on centred flattened coordinates (and species one-hots) -> N atomic energies.

    Args:
        elements: atomic numbers the model knows; n_atoms: N.
        hidden: widths of the SiLU hidden layers; seed: initial weights; dtype: parameter dtype.
    """

    def __init__(self, elements, n_atoms: int, hidden=(256, 256, 256), seed: int = 0, dtype=torch.float64):
        super().__init__(elements, cutoff=None)
        if isinstance(n_atoms, bool) or not isinstance(n_atoms, int) or n_atoms < 1:
            raise ValueError(f"n_atoms must be a positive int, got {n_atoms!r}")
        self.n_atoms = n_atoms
        hidden = check_widths(hidden)
        check_seed(seed)
        check_dtype(dtype)
        generator = make_generator(seed)
        widths = [n_atoms * (3 + (self.n_species if self.n_species > 1 else 0)), *hidden, n_atoms]
        layers = []
        for k, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
            linear = torch.nn.Linear(fan_in, fan_out, dtype=dtype)
            with torch.no_grad():
                linear.weight.copy_(torch.randn(fan_out, fan_in, generator=generator) / math.sqrt(fan_in))
                linear.bias.zero_()
            layers.append(linear)
            if k < len(widths) - 2:
                layers.append(torch.nn.SiLU())
        self.network = torch.nn.Sequential(*layers)

    def atomic_energies(self, positions, species_index, cells):
        if positions.shape[1] != self.n_atoms:
            raise ValueError(f"CoordinateMLP was built for {self.n_atoms} atoms, got {positions.shape[1]}")
        centred = positions - positions.mean(dim=1, keepdim=True)
        inputs = [centred]
        if self.n_species > 1:
            inputs.append(torch.nn.functional.one_hot(species_index, self.n_species).to(positions.dtype))
        return self.network(torch.cat(inputs, dim=-1).reshape(positions.shape[0], -1))
