"""The forward Laplacian on every ansatz of dlpde.symmetry, in float64: against the trace of the
full Hessian (torch.func.hessian, reverse over reverse, an independent route) to 1e-10 relative,
against central finite differences, and the local energy it gives against the exact method."""

import pytest
import torch

from dlpde.shared import make_generator
from dlpde.shared.autodiff import laplacian
from dlpde.symmetry import (
    BackflowDeterminant,
    ExplicitAntisymmetrizer,
    HermiteFunctions,
    ManyBodyHamiltonian,
    SlaterJastrow,
    VandermondeAnsatz,
    atom,
    harmonic_trap,
    local_energy,
    soft_coulomb_pair,
)

DT = torch.float64


def _trap(n_up, n_down, dim):
    return ManyBodyHamiltonian(n_up, n_down, dim, harmonic_trap(1.0), soft_coulomb_pair(1.0, 0.5))


CASES = {
    "slater_jastrow_trap": lambda: (_trap(2, 1, 3), SlaterJastrow.from_hamiltonian(
        _trap(2, 1, 3), n_determinants=2, hidden=(8,), jastrow_hidden=(6,), generator=1)),
    "slater_jastrow_atom": lambda: (atom(3), SlaterJastrow.from_hamiltonian(
        atom(3), hidden=(8,), jastrow_hidden=(6,), generator=2)),
    "slater_jastrow_hermite": lambda: (_trap(3, 0, 2), SlaterJastrow.from_hamiltonian(
        _trap(3, 0, 2), orbitals=HermiteFunctions(2, 2), jastrow_hidden=(4,), generator=3)),
    "backflow_trap": lambda: (_trap(2, 2, 3), BackflowDeterminant.from_hamiltonian(
        _trap(2, 2, 3), n_determinants=2, one_body_width=8, two_body_width=4, generator=4)),
    "backflow_jastrow_coulomb": lambda: (atom(3), BackflowDeterminant.from_hamiltonian(
        atom(3), one_body_width=8, two_body_width=4, jastrow_hidden=(6,), generator=9)),
    "backflow_atom": lambda: (atom(4), BackflowDeterminant.from_hamiltonian(
        atom(4), one_body_width=8, two_body_width=4, generator=5)),
    "vandermonde_1d": lambda: (_trap(4, 0, 1), VandermondeAnsatz.from_hamiltonian(
        _trap(4, 0, 1), n_terms=2, width=8, jastrow_hidden=(4,), generator=6)),
    "vandermonde_2d_spins": lambda: (_trap(2, 2, 2), VandermondeAnsatz.from_hamiltonian(
        _trap(2, 2, 2), width=8, jastrow_hidden=(4,), generator=7)),
    "vandermonde_exact_trap": lambda: (_trap(5, 0, 1), VandermondeAnsatz.exact_harmonic_trap(5)),
    "explicit": lambda: (_trap(2, 1, 2), ExplicitAntisymmetrizer.from_hamiltonian(
        _trap(2, 1, 2), hidden=(8,), generator=8)),
}


def _log_abs(wf):
    return lambda y: wf(y)[1]


def _positions(hamiltonian, seed, batch=3):
    return 1.2 * torch.randn(batch, hamiltonian.n_particles, hamiltonian.dim, generator=make_generator(seed),
                             dtype=DT)


@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_laplacian_equals_hessian_trace(case):
    hamiltonian, wf = CASES[case]()
    x = _positions(hamiltonian, 20)
    f = _log_abs(wf)
    lap, grad = laplacian(f, x, method="forward", return_gradient=True)

    def single(row):
        return f(row.unsqueeze(0))[0]

    dim = x[0].numel()
    for b in range(x.shape[0]):
        hess = torch.func.hessian(single)(x[b]).reshape(dim, dim)
        expected = hess.diagonal().sum()
        assert abs(float((lap[b] - expected).detach())) <= 1e-10 * max(1.0, abs(float(expected))), case
        torch.testing.assert_close(grad[b], torch.func.grad(single)(x[b]), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", ["backflow_trap", "slater_jastrow_atom", "vandermonde_2d_spins"])
def test_forward_laplacian_matches_finite_differences(case):
    """Central second differences of log|psi| (step 1e-4: truncation ~1e-8 times the 4th derivative,
    rounding ~1e-16 / h^2 = 1e-8)."""
    hamiltonian, wf = CASES[case]()
    x = _positions(hamiltonian, 21, batch=2)
    f = _log_abs(wf)
    lap = laplacian(f, x, method="forward")
    flat, h = x.reshape(2, -1), 1e-4
    with torch.no_grad():
        centre = f(x)
        fd = torch.zeros(2, dtype=DT)
        for k in range(flat.shape[1]):
            e = torch.zeros_like(flat)
            e[:, k] = h
            fd += (f((flat + e).reshape(x.shape)) - 2 * centre + f((flat - e).reshape(x.shape))) / h**2
    torch.testing.assert_close(lap, fd, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["backflow_atom", "vandermonde_1d", "explicit"])
def test_local_energy_defaults_to_the_forward_laplacian(case):
    """The default (auto: forward) local energy equals the exact method's; the exact 1-D trap state
    gives E_L = N^2 / 2 everywhere."""
    hamiltonian, wf = CASES[case]()
    x = _positions(hamiltonian, 22, batch=4)
    default = local_energy(hamiltonian, wf, x)
    exact = local_energy(hamiltonian, wf, x, method="exact")
    torch.testing.assert_close(default, exact, rtol=1e-10, atol=1e-10)
    trap = ManyBodyHamiltonian(5, 0, 1, harmonic_trap(1.0))
    energies = local_energy(trap, VandermondeAnsatz.exact_harmonic_trap(5), _positions(trap, 23, batch=8),
                            method="forward")
    torch.testing.assert_close(energies, torch.full_like(energies, 12.5), rtol=1e-11, atol=1e-11)


def test_auto_falls_back_to_exact_for_unsupported_operations():
    """A wavefunction using an operation without a forward rule: 'forward' refuses with a clear
    error, 'auto' (the default) uses the exact method."""
    from dlpde.shared.autodiff import ForwardLaplacianError

    hamiltonian = ManyBodyHamiltonian(1, 0, 2, harmonic_trap(1.0))

    def gaussian_with_cumsum(y):
        log_abs = -0.5 * torch.cumsum(y**2, -1)[..., -1].sum(-1)
        return torch.ones_like(log_abs), log_abs

    x = _positions(hamiltonian, 24, batch=4)
    with pytest.raises(ForwardLaplacianError, match="cumsum"):
        local_energy(hamiltonian, gaussian_with_cumsum, x, method="forward")
    energies = local_energy(hamiltonian, gaussian_with_cumsum, x)
    torch.testing.assert_close(energies, torch.ones(4, dtype=DT), rtol=1e-12, atol=1e-12)  # E = d/2 = 1
