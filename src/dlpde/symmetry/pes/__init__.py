"""Rotation-equivariant potential-energy-surface regression.

Data generated offline with ASE calculators (``generate_dataset``), four families of
potentials that predict a total energy as a sum of atomic energies and forces by autograd
(``EquivariantPotential``, ``MomentTensorPotential``, ``SymmetryFunctionPotential``, and the
non-symmetric baseline ``CoordinateMLP``), their training with energy and force losses
(``fit_potential``), evaluation, symmetry checks and geometry optimisation on a learned surface.
The study ``symmetry.pes`` compares them.
"""

from ._coordinate_mlp import CoordinateMLP
from ._data import SYSTEMS, PESDataset, default_cache_dir, generate_dataset, split_dataset
from ._descriptor import DescriptorPotential, PerSpeciesMLP
from ._equivariant import EquivariantPotential, bessel_basis
from ._moment_tensor import (
    MomentTensorPotential,
    basis_products,
    chebyshev_radial_functions,
    moment_invariants,
)
from ._neighbours import NeighbourList, cosine_cutoff, edge_vectors, neighbour_list, polynomial_cutoff
from ._potential import AtomicPotential, energy_and_forces
from ._symmetry_functions import SymmetryFunctionPotential, angle_triplets
from ._training import equivariance_errors, evaluate_potential, fit_potential, relax_geometry

__all__ = [
    "generate_dataset", "split_dataset", "default_cache_dir", "PESDataset", "SYSTEMS",
    "AtomicPotential", "energy_and_forces",
    "EquivariantPotential", "MomentTensorPotential", "SymmetryFunctionPotential", "CoordinateMLP",
    "DescriptorPotential", "PerSpeciesMLP",
    "fit_potential", "evaluate_potential", "equivariance_errors", "relax_geometry",
    "NeighbourList", "neighbour_list", "edge_vectors", "cosine_cutoff", "polynomial_cutoff",
    "bessel_basis", "chebyshev_radial_functions", "moment_invariants", "basis_products", "angle_triplets",
]
