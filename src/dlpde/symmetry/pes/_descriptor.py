"""Potentials of the form ``eps(i) = MLP_{z_i}((D(i) - mean) / std)``: an invariant descriptor
``D(i)`` of the environment of atom ``i`` fed to a network of its species (Behler and
Parrinello 2007), the descriptor standardised over the training set."""

from __future__ import annotations

import math

import torch

from dlpde.shared import check_positive_int, make_generator
from dlpde.shared.checks import check_dtype

from ._checks import check_seed, check_widths
from ._potential import AtomicPotential

__all__ = ["PerSpeciesMLP", "DescriptorPotential"]


class PerSpeciesMLP(torch.nn.Module):
    """One fully connected SiLU network per species, evaluated together.

    ``forward(features (B, N, F), species_index (B, N)) -> (B, N)``: the output of network
    ``species_index[b, n]`` on ``features[b, n]``. Weights ``N(0, 1/fan_in)``, biases 0, drawn
    from ``seed``.
    """

    def __init__(self, n_species: int, n_in: int, hidden=(64, 64), seed: int = 0, dtype=torch.float64):
        super().__init__()
        check_positive_int(n_species, "n_species")
        widths = [check_positive_int(n_in, "n_in"), *check_widths(hidden), 1]
        check_seed(seed)
        check_dtype(dtype)
        generator = make_generator(seed)
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            w = torch.randn(n_species, fan_in, fan_out, generator=generator, dtype=torch.float64)
            self.weights.append(torch.nn.Parameter((w / math.sqrt(fan_in)).to(dtype)))
            self.biases.append(torch.nn.Parameter(torch.zeros(n_species, 1, fan_out, dtype=dtype)))

    def forward(self, features: torch.Tensor, species_index: torch.Tensor) -> torch.Tensor:
        shape = features.shape[:-1]
        x = features.reshape(1, -1, features.shape[-1])  # every species' network on every atom
        for k, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x.expand(w.shape[0], -1, -1) if k == 0 else x, w)
            if k < len(self.weights) - 1:
                x = torch.nn.functional.silu(x)
        out = x[..., 0]  # (S, atoms)
        return out.gather(0, species_index.reshape(1, -1)).reshape(shape)


class DescriptorPotential(AtomicPotential):
    """Base of descriptor + per-species-MLP potentials; subclasses define ``descriptors``."""

    def __init__(self, elements, cutoff, n_descriptors: int, hidden, seed: int, dtype):
        super().__init__(elements, cutoff)
        check_positive_int(n_descriptors, "n_descriptors")
        if hidden is not None:
            check_widths(hidden)
        check_seed(seed)
        check_dtype(dtype)
        self.n_descriptors = n_descriptors
        self.network = None if hidden is None else PerSpeciesMLP(self.n_species, n_descriptors, hidden,
                                                                 seed, dtype)
        self.register_buffer("descriptor_mean", torch.zeros(n_descriptors, dtype=dtype))
        self.register_buffer("descriptor_std", torch.ones(n_descriptors, dtype=dtype))

    def descriptors(self, positions, species_index, cells) -> torch.Tensor:
        """Invariant descriptors of every atom, ``(B, N, n_descriptors)``."""
        raise NotImplementedError

    def atomic_energies(self, positions, species_index, cells):
        features = self.descriptors(positions, species_index, cells)
        return self.network((features - self.descriptor_mean) / self.descriptor_std, species_index)

    @torch.no_grad()
    def fit_normalisation(self, dataset) -> None:
        """Also standardises the descriptors over (up to 256 configurations of) the dataset."""
        super().fit_normalisation(dataset)
        data = dataset.subset(range(min(len(dataset), 256))).to(dtype=self.descriptor_mean.dtype)
        positions, index, cells = self._inputs(data.positions, data.species, data.cells)
        features = self.descriptors(positions, index, cells).reshape(-1, self.n_descriptors)
        self.descriptor_mean.copy_(features.mean(0))
        self.descriptor_std.copy_(features.std(0).clamp_min(1e-8 * features.abs().max().clamp_min(1.0)))
