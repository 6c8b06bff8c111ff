"""
Variational Monte Carlo of fermions in a harmonic trap
======================================================

``N`` spin-polarised fermions in the one-dimensional trap ``V(x) = x^2/2`` fill the lowest
``N`` oscillator levels, so the exact ground-state energy is ``E = 0 + 1/2 + ... = N^2/2``, and
the ground state is the Vandermonde product ``prod_{i<j} (x_j - x_i) exp(-sum_i x_i^2/2)``.
Variational Monte Carlo samples ``|psi|^2`` with Metropolis walkers, averages the local energy
``E_L = -1/2 (Lap log|psi| + |grad log|psi||^2) + V`` and lowers it by gradient descent. We
train a Slater-Jastrow ansatz for ``N = 3`` and compare its energy, with a blocking error bar,
with ``9/2``.
"""

import matplotlib.pyplot as plt

from dlpde.symmetry import VMC, ManyBodyHamiltonian, SlaterJastrow, harmonic_trap

n = 3
hamiltonian = ManyBodyHamiltonian(n, 0, 1, harmonic_trap(1.0))  # N spin-up fermions in d = 1
wavefunction = SlaterJastrow.from_hamiltonian(hamiltonian, hidden=(16,), jastrow_hidden=(8,), generator=0)
vmc = VMC(hamiltonian, wavefunction, n_walkers=256, lr=1e-2, burn_in=200, generator=0)
history = vmc.run(150, progress=False)

estimate = vmc.estimate_energy(128, thin=2)
exact = n**2 / 2
print(f"VMC energy {estimate.mean:.4f} +- {estimate.standard_error:.4f} (exact {exact}); "
      f"local-energy variance {estimate.variance:.2e}")

fig, ax = plt.subplots(figsize=(5, 3.5))
ax.plot([h["energy"] for h in history], lw=1, label="walker average of E_L")
ax.axhline(exact, color="k", ls="--", label="exact N^2/2")
ax.set(xlabel="parameter update", ylabel="energy", title=f"{n} fermions in a harmonic trap")
ax.set_ylim(exact - 0.5, exact + 2)
ax.legend()
fig.tight_layout()
