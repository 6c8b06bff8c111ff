"""dlpde.symmetry: permutation-invariant, -equivariant and antisymmetric networks, and
variational Monte Carlo with them.

Networks on sets ``(batch, N, d)``: ``DeepSets``, ``PowerSumEmbedding``, ``EquivariantLayer``,
``AttentionPooling``. Antisymmetric wavefunctions returning ``(sign, log|psi|)``:
``SlaterJastrow`` (with ``HermiteFunctions`` as an optional orbital basis), ``BackflowDeterminant``,
``VandermondeAnsatz``, ``ExplicitAntisymmetrizer``. Hamiltonians: ``ManyBodyHamiltonian`` with
``harmonic_trap``, ``coulomb_nuclei``, ``atom``, ``coulomb_pair``, ``soft_coulomb_pair``,
``contact_pair``; ``local_energy``; ``VMC`` with ``EnergyEstimate`` / ``energy_estimate``.

The rotation-equivariant potential-energy-surface models live in ``dlpde.symmetry.pes`` (imported
separately; it needs e3nn).
"""

from ._hamiltonian import (
    ManyBodyHamiltonian,
    atom,
    contact_pair,
    coulomb_nuclei,
    coulomb_pair,
    harmonic_trap,
    local_energy,
    soft_coulomb_pair,
)
from ._sets import AttentionPooling, DeepSets, EquivariantLayer, PowerSumEmbedding
from ._vmc import VMC, EnergyEstimate, energy_estimate
from ._wavefunctions import (
    BackflowDeterminant,
    ExplicitAntisymmetrizer,
    HermiteFunctions,
    SlaterJastrow,
    VandermondeAnsatz,
)

__all__ = [
    "DeepSets", "PowerSumEmbedding", "EquivariantLayer", "AttentionPooling",
    "SlaterJastrow", "BackflowDeterminant", "VandermondeAnsatz", "ExplicitAntisymmetrizer",
    "HermiteFunctions",
    "ManyBodyHamiltonian", "harmonic_trap", "coulomb_nuclei", "atom", "coulomb_pair",
    "soft_coulomb_pair", "contact_pair", "local_energy",
    "VMC", "EnergyEstimate", "energy_estimate",
]
