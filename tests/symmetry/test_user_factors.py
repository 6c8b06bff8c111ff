"""User-defined factors: a user's own nn.Module symmetric factor is trained by VMC (the Calogero
model, a singular 1/r^2 pair potential with a closed-form ground state), and the Vandermonde
ansatz warns where it cannot represent the nodes (d > 1, three or more same-spin particles)."""

import warnings

import pytest
import torch
from torch import nn

from dlpde.shared import make_generator
from dlpde.symmetry import (
    VMC,
    ManyBodyHamiltonian,
    SlaterJastrow,
    VandermondeAnsatz,
    harmonic_trap,
    local_energy,
)

DT = torch.float64


class PairPowerFactor(nn.Module):
    """``log F = -sum x^2 / 2 + (a - 1) sum_{i<j} log|x_i - x_j|``, ``a`` trainable (starts at 1)."""

    def __init__(self, a=1.0):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(float(a), dtype=DT))

    def forward(self, x):
        i, j = torch.triu_indices(x.shape[1], x.shape[1], 1)
        r = torch.linalg.vector_norm(x[:, i] - x[:, j], dim=-1)
        return -0.5 * (x**2).sum((1, 2)) + (self.a - 1) * torch.log(r).sum(-1)


def calogero(n, lam):
    """H = sum (-1/2 d^2 + x^2/2) + sum_{i<j} lam (lam - 1) / r^2: psi = prod|r|^lam exp(-x^2/2),
    E = N/2 + lam N (N - 1) / 2 (Calogero 1969)."""
    return ManyBodyHamiltonian(n, 0, 1, harmonic_trap(1.0), lambda r: lam * (lam - 1) / r**2)


def test_exact_calogero_factor_has_the_closed_form_energy():
    wf = VandermondeAnsatz(3, 0, 1, features=lambda x: x[..., 0], log_symmetric=PairPowerFactor(2.0))
    x = torch.randn(16, 3, 1, generator=make_generator(0), dtype=DT)
    energies = local_energy(calogero(3, 2.0), wf, x)
    torch.testing.assert_close(energies, torch.full_like(energies, 1.5 + 2.0 * 3), rtol=1e-10, atol=1e-10)


@pytest.mark.filterwarnings("ignore:the energy series:RuntimeWarning")
def test_user_module_factor_is_trained_by_vmc():
    """The factor's exponent starts at 1 (free fermions) and VMC moves it to the exact 2."""
    factor = PairPowerFactor(1.0)
    wf = VandermondeAnsatz(2, 0, 1, features=lambda x: x[..., 0], log_symmetric=factor)
    assert [p is factor.a for p in wf.parameters()] == [True]  # registered as a submodule
    vmc = VMC(calogero(2, 2.0), wf, n_walkers=256, lr=0.05, steps_per_iteration=3, burn_in=100, generator=1)
    vmc.run(120, progress=False)
    assert abs(float(factor.a.detach()) - 2.0) < 0.05, float(factor.a.detach())
    estimate = vmc.estimate_energy(64)
    assert abs(estimate.mean - 3.0) < 0.02 and estimate.variance < 0.05


def test_slater_jastrow_takes_a_trainable_log_factor():
    """SlaterJastrow(log_factor=module): the module's parameter is optimised and gets the VMC
    gradient (nonzero: the exponent 1 is not the Calogero optimum)."""
    hamiltonian = calogero(2, 2.0)
    factor = PairPowerFactor(1.0)
    wf = SlaterJastrow.from_hamiltonian(hamiltonian, hidden=(8,), jastrow_hidden=(), log_factor=factor)
    vmc = VMC(hamiltonian, wf, n_walkers=64, burn_in=50, generator=2)
    assert any(p is factor.a for p in vmc.parameters)
    x = vmc.walkers.x
    (grad,) = torch.autograd.grad(vmc.surrogate_loss(x, vmc.local_energies(x)), [factor.a])
    assert float(grad) < 0  # increasing a lowers the energy
    with pytest.raises(TypeError, match="log_factor"):
        SlaterJastrow(2, 0, 1, log_factor=3)


def test_vandermonde_warns_in_more_than_one_dimension():
    with pytest.warns(RuntimeWarning, match="nodal"):
        VandermondeAnsatz(3, 0, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        VandermondeAnsatz(3, 0, 1)  # 1-D: exact nodes
        VandermondeAnsatz(2, 2, 3)  # two per spin: a single pair difference suffices
