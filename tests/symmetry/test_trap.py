"""symmetry.trap's Hermite pretraining: the target determinant of Hermite functions is the exact
ground state; after pretraining the N = 6 Slater-Jastrow and backflow orbitals of the study's own
seed (the free Slater-Jastrow cell that VMC left in the excited shell, E = 19, without it) have
the ground state's nodes and a variational energy below that shell; bad inputs are refused."""

import math

import pytest
import torch

from dlpde.symmetry import HermiteFunctions, VandermondeAnsatz, local_energy
from dlpde.symmetry.studies import trap
from dlpde.symmetry.studies._vmc_runs import ANSATZE, point_seed
from dlpde.symmetry.studies.atoms import HydrogenicDeterminant


def _wavefunction(n, ansatz):
    config = trap.Config()
    hamiltonian = trap.hamiltonian(n, "none", config)
    seed = point_seed(config.seed, n, ansatz, "none")  # as in trap._task
    return hamiltonian, ANSATZE[ansatz].from_hamiltonian(hamiltonian, generator=seed), seed


def _sign_agreement(wavefunction, x):
    """Fraction of ordered configurations (x_1 < ... < x_N, where the exact ground state has one
    sign) on which psi has its majority sign: 1 for the ground state's nodes."""
    with torch.no_grad():
        sign, _ = wavefunction(x)
    positive = float((sign > 0).double().mean())
    return max(positive, 1 - positive)


def _variational_energy(hamiltonian, wavefunction, x):
    """<psi|H|psi> / <psi|psi> by reweighting exact independent samples of |psi_0|^2
    (independent of VMC's sampler): weights (psi / psi_0)^2, psi_0 the Vandermonde state."""
    exact = VandermondeAnsatz.exact_harmonic_trap(x.shape[1])
    with torch.no_grad():
        log_ratio = 2 * (wavefunction(x)[1] - exact(x)[1])
    weights = torch.softmax(log_ratio, 0)
    return float((weights * local_energy(hamiltonian, wavefunction, x).detach()).sum())


def test_the_hermite_determinant_is_the_exact_ground_state():
    """det[h_a(x_i)]_{a < N} is the Vandermonde state times a constant (the premise of the target)."""
    x = trap.ground_state_samples(5, 200, seed=3)
    sign, log_det = torch.linalg.slogdet(HermiteFunctions(1, 4)(x))
    vandermonde = VandermondeAnsatz.exact_harmonic_trap(5)
    exact_sign, exact_log = vandermonde(x)
    ratio = sign * exact_sign * torch.exp(log_det - exact_log)
    torch.testing.assert_close(ratio, ratio[:1].expand_as(ratio), rtol=1e-10, atol=0)


@pytest.mark.parametrize("ansatz", ["slater_jastrow", "backflow"])
def test_pretraining_gives_the_ground_state_nodes_at_n6(ansatz):
    hamiltonian, wavefunction, seed = _wavefunction(6, ansatz)
    x = trap.ground_state_samples(6, 2000, seed=11)
    before = _sign_agreement(wavefunction, x)
    residuals = trap.pretrain_hermite(wavefunction, 500, n_walkers=64, generator=point_seed(seed, "pretrain"))
    assert residuals.shape == (500,) and residuals[-20:].mean() < 0.5 * residuals[:20].mean()
    assert bool((wavefunction.orbital_envelope.decay == trap.Config().pretrain_decay).all())  # held
    after = _sign_agreement(wavefunction, x)
    assert before < 0.9 and after > 0.99, (before, after)
    energy = _variational_energy(hamiltonian, wavefunction, x[:1000])
    assert 18 <= energy < 18.5, energy  # ground shell 18; the stuck excited shell is 19


def test_pretraining_refuses_what_it_cannot_fit():
    hamiltonian, wavefunction, _ = _wavefunction(3, "slater_jastrow")
    with pytest.raises(TypeError, match="wavefunction"):
        trap.pretrain_hermite(ANSATZE["vandermonde"].from_hamiltonian(hamiltonian), 1)
    with pytest.raises(TypeError, match="wavefunction"):
        trap.pretrain_hermite(HydrogenicDeterminant(1, 0, 1.0, 1.0), 1)
    three_d = ANSATZE["slater_jastrow"](3, 0, 3)
    with pytest.raises(ValueError, match="1-D"):
        trap.pretrain_hermite(three_d, 1)
    for kwargs, field in (({"steps": -1}, "steps"), ({"steps": 1, "n_walkers": 1}, "n_walkers"),
                          ({"steps": 1, "lr": 0.0}, "lr"), ({"steps": 1, "decay": -1.0}, "decay"),
                          ({"steps": 1, "omega": math.nan}, "omega")):
        with pytest.raises(ValueError, match=field):
            trap.pretrain_hermite(wavefunction, **kwargs)
    assert trap.pretrain_hermite(wavefunction, 0).size == 0  # only the envelope decays set


def test_config_pretrains_only_ansaetze_with_orbitals():
    assert set(trap.Config().pretrain_ansatze) == {"slater_jastrow", "backflow"}
    with pytest.raises(ValueError, match="pretrain_ansatze"):
        trap.Config(pretrain_ansatze=("vandermonde",))
    with pytest.raises(ValueError, match="pretrain_decay"):
        trap.Config(pretrain_decay=0.0)
