"""Core kernels of ``dlpde.symmetry`` for the GPU check: the determinant ansaetze (forward and
parameter gradient), the exact and Hutchinson local energies, and the SR natural gradient."""

from __future__ import annotations

import torch

from dlpde.shared import KernelCheck, make_generator

from ._hamiltonian import atom, local_energy
from ._vmc import VMC
from ._wavefunctions import BackflowDeterminant, SlaterJastrow, VandermondeAnsatz


def _positions(batch, n, d, seed):
    return torch.randn(batch, n, d, generator=make_generator(seed), dtype=torch.float64)


def _system(tiny):
    """Lithium-like: 2 up + 1 down electrons around Z = 3 (tiny), or 4 + 4 around Z = 8."""
    from ._hamiltonian import ManyBodyHamiltonian, coulomb_nuclei, coulomb_pair

    if tiny:
        return atom(3)
    return ManyBodyHamiltonian(4, 4, 3, coulomb_nuclei([8.0], [[0.0, 0.0, 0.0]]), coulomb_pair())


def _ansatz(cls, **options):
    def build(device, tiny):
        hamiltonian = _system(tiny)
        wavefunction = cls.from_hamiltonian(hamiltonian, generator=1, **options).to(device)
        x = _positions(16 if tiny else 2048, hamiltonian.n_particles, 3, 2).to(device)

        def run():
            sign, log_abs = wavefunction(x)
            return sign, log_abs, torch.autograd.grad(log_abs.sum(), list(wavefunction.parameters()))

        return run

    return build


def _local_energy(method):
    def build(device, tiny):
        hamiltonian = _system(tiny)
        wavefunction = BackflowDeterminant.from_hamiltonian(hamiltonian, generator=3).to(device)
        x = _positions(8 if tiny else 256, hamiltonian.n_particles, 3, 4).to(device)
        if method == "exact":
            return lambda: local_energy(hamiltonian, wavefunction, x)
        # probes from a CPU generator: identical on both devices
        return lambda: local_energy(hamiltonian, wavefunction, x, method="hutchinson", n_samples=4,
                                    generator=make_generator(5))

    return build


def _natural_gradient(device, tiny):
    """SR step with exactly 20 CG iterations (the tolerance is never met). S is ill-conditioned at
    these unequilibrated positions: run to 200 iterations, CG loses orthogonality and its iterate
    amplifies rounding (CUDA and CPU then differed by 5e-3 on an H200); the first 20 iterations
    amplify an input perturbation of 1e-13 only to about 4e-8 (measured on the CPU)."""
    hamiltonian = _system(tiny)
    wavefunction = SlaterJastrow.from_hamiltonian(hamiltonian, generator=6).to(device)
    vmc = VMC(hamiltonian, wavefunction, n_walkers=16 if tiny else 512, optimizer="sr", generator=7,
              sr_tolerance=1e-15, sr_iterations=20, clip_local_energy=None)
    x = _positions(vmc.walkers.x.shape[0], hamiltonian.n_particles, 3, 8).to(device)
    energies = torch.linspace(-8.0, -6.0, x.shape[0], dtype=torch.float64, device=device)
    return lambda: vmc.natural_gradient(x, energies)[0]


KERNELS = [
    KernelCheck("symmetry.slater_jastrow.forward_backward", _ansatz(SlaterJastrow, n_determinants=4)),
    KernelCheck("symmetry.backflow.forward_backward", _ansatz(BackflowDeterminant, n_determinants=4)),
    KernelCheck("symmetry.vandermonde.forward_backward", _ansatz(VandermondeAnsatz, n_terms=4)),
    KernelCheck("symmetry.local_energy.exact", _local_energy("exact"), rtol=1e-7, atol=1e-8),
    KernelCheck("symmetry.local_energy.hutchinson", _local_energy("hutchinson"), rtol=1e-7, atol=1e-8),
    KernelCheck("symmetry.vmc.natural_gradient", _natural_gradient, rtol=1e-6, atol=1e-8),
]
