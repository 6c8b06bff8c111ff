"""VMC against closed forms: honest error bars for a Gaussian of the wrong width in a harmonic
trap, the variance-reduced gradient against dE/da, stochastic reconfiguration against a dense
solve, training to the exact trap energy, the hydrogenic helium energy; checkpoint/resume;
clear errors on divergent walkers and NaN energies."""

import math
import os

import pytest
import torch
from torch import nn

from dlpde.shared import NonFiniteLossError, make_generator
from dlpde.shared.testing import assert_monte_carlo_close
from dlpde.symmetry import VMC, ManyBodyHamiltonian, SlaterJastrow, atom, energy_estimate, harmonic_trap

DT = torch.float64


class Gaussian(nn.Module):
    """psi = exp(-a sum |x|^2 / 2): E(a) = N d (a/4 + omega^2/(4a)) in the trap omega^2 x^2/2."""

    def __init__(self, a):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(float(a), dtype=DT))

    def forward(self, x):
        log_abs = -0.5 * self.a * (x**2).sum((1, 2))
        return torch.ones_like(log_abs), log_abs


def gaussian_energy(a, omega, n, d):
    return n * d * (a / 4 + omega**2 / (4 * a))


def gaussian_vmc(a, n_walkers, seed, n=2, d=1, **kwargs):
    hamiltonian = ManyBodyHamiltonian(n, 0, d, harmonic_trap(1.0))
    return VMC(hamiltonian, Gaussian(a), n_walkers=n_walkers, generator=seed, burn_in=200, **kwargs)


def test_error_bars_are_honest():
    """64 independent estimates (groups of 8 walkers, 512 samples 2 Metropolis steps apart, tau
    about 4 samples): the blocking error bars cover the exact E(a) at the stated confidence. At 2
    sigma (95.4 %) at most 8 of 64 intervals may miss (binomial tail 0.8 %), every |z| < 4.5, and
    the mean z^2 lies in [0.5, 2.0]. The naive error bars, which ignore the autocorrelation, fail
    the same test (about 20 misses, mean z^2 near 4)."""
    a, groups, per_group = 0.6, 64, 8
    vmc = gaussian_vmc(a, groups * per_group, seed=2, steps_per_iteration=1)
    energies = vmc.sample_local_energies(512, thin=2)
    exact = gaussian_energy(a, 1.0, 2, 1)

    def z_scores(naive):
        scores = []
        for k in range(groups):
            estimate = energy_estimate(energies[:, k * per_group:(k + 1) * per_group])
            error = estimate.naive_standard_error if naive else estimate.standard_error
            scores.append((estimate.mean - exact) / error)
        return torch.tensor(scores)

    def honest(z):
        misses, largest, mean_square = int((z.abs() > 2).sum()), float(z.abs().max()), float((z**2).mean())
        return misses <= 8 and largest < 4.5 and 0.5 <= mean_square <= 2.0

    z = z_scores(naive=False)
    assert honest(z), (int((z.abs() > 2).sum()), float(z.abs().max()), float((z**2).mean()))
    assert not honest(z_scores(naive=True))
    overall = energy_estimate(energies)
    assert overall.autocorrelation_time > 2.0
    assert_monte_carlo_close(overall.mean, overall.standard_error, exact, n_sigma=5)
    with pytest.warns(RuntimeWarning, match="autocorrelation times long"):
        energy_estimate(energies[:64, :8])


class CorrelatedGaussian(nn.Module):
    """psi = exp(-x^T A x / 2) for two particles, A = [[a, b], [b, a]] per coordinate:
    E = tr(A) / 4 + omega^2 tr(A^{-1}) / 4 in the trap (a non-diagonal Hessian of log psi)."""

    def __init__(self, a, b):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(float(a), dtype=DT))
        self.b = b

    def forward(self, x):
        log_abs = -0.5 * self.a * (x**2).sum((1, 2)) - self.b * (x[:, 0] * x[:, 1]).sum(-1)
        return torch.ones_like(log_abs), log_abs


def test_hutchinson_local_energies_give_an_unbiased_energy():
    """VMC with Hutchinson's Laplacian (one probe) still covers the exact energy (5 sigma), with a
    larger local-energy variance than the exact Laplacian's."""
    a, b, d = 1.2, 0.5, 2
    exact_energy = (2 * a * d) / 4 + d * (1 / (a + b) + 1 / (a - b)) / 4
    hamiltonian = ManyBodyHamiltonian(2, 0, d, harmonic_trap(1.0))
    estimates = []
    for laplacian in ("exact", "hutchinson"):
        vmc = VMC(hamiltonian, CorrelatedGaussian(a, b), n_walkers=128, generator=3, laplacian=laplacian,
                  hutchinson_samples=1)
        estimates.append(vmc.estimate_energy(128, thin=6))
        assert_monte_carlo_close(estimates[-1].mean, estimates[-1].standard_error, exact_energy, 5)
    assert estimates[1].variance > 1.5 * estimates[0].variance


def test_variance_reduced_gradient_matches_dE_da():
    """mean over steps of the surrogate's gradient = dE/da = N d (1/4 - omega^2/(4 a^2)) (5 sigma)."""
    a, n, d = 1.6, 2, 2
    vmc = gaussian_vmc(a, 256, seed=2, n=n, d=d, clip_local_energy=None)
    vmc.equilibrate()
    gradients = []
    for _ in range(96):
        vmc.walkers.step(3)
        x = vmc.walkers.x
        (g,) = torch.autograd.grad(vmc.surrogate_loss(x, vmc.local_energies(x)), vmc.parameters)
        gradients.append(float(g))
    gradients = torch.tensor(gradients, dtype=DT)
    expected = n * d * (0.25 - 1 / (4 * a**2))
    assert_monte_carlo_close(float(gradients.mean()), float(gradients.std() / math.sqrt(96)), expected, 5)
    assert abs(float(gradients.mean()) - expected) < 0.1 * abs(expected)


def test_natural_gradient_matches_dense_solve():
    hamiltonian = ManyBodyHamiltonian(2, 1, 2, harmonic_trap(1.0))
    wf = SlaterJastrow.from_hamiltonian(hamiltonian, hidden=(6,), jastrow_hidden=(4,), generator=3)
    vmc = VMC(hamiltonian, wf, n_walkers=32, optimizer="sr", sr_shift=1e-2, sr_tolerance=1e-12,
              sr_iterations=500, sr_max_step=1e6, generator=4, clip_local_energy=None)
    x = vmc.walkers.x
    energies = vmc.local_energies(x)
    delta, iterations, residual, _ = vmc.natural_gradient(x, energies)
    rows = []
    for b in range(x.shape[0]):  # per-walker gradients one at a time: an independent O
        grads = torch.autograd.grad(wf(x[b:b + 1])[1][0], vmc.parameters)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    o = torch.stack(rows)
    o = o - o.mean(0)
    s = o.T @ o / x.shape[0] + 1e-2 * torch.eye(o.shape[1], dtype=DT)
    g = 2 * (energies - energies.mean()) @ o / x.shape[0]
    expected = torch.linalg.solve(s, g)
    got = torch.cat([t.reshape(-1) for t in delta])
    assert residual < 1e-10 and iterations < 500
    torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-9)
    vmc.sr_max_step = 1e-4  # the trust region shortens the step to this Fubini-Study length
    delta, _, _, length = vmc.natural_gradient(x, energies)
    shortened = torch.cat([t.reshape(-1) for t in delta])
    assert length == 1e-4
    assert float(vmc.lr * torch.sqrt(((o @ shortened) ** 2).mean())) == pytest.approx(1e-4, rel=1e-9)
    torch.testing.assert_close(shortened / shortened.norm(), expected / expected.norm(), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("walkers", [16, 128])
def test_kernel_and_cg_sr_give_the_same_update(walkers):
    """minSR's sample-space solve and CG in parameter space give the same update to the CG
    tolerance (float64), with fewer walkers than parameters (the kernel's case) and more."""
    hamiltonian = ManyBodyHamiltonian(2, 1, 2, harmonic_trap(1.0))
    wf = SlaterJastrow.from_hamiltonian(hamiltonian, hidden=(4,), jastrow_hidden=(3,), generator=3)
    vmc = VMC(hamiltonian, wf, n_walkers=walkers, optimizer="sr", sr_shift=1e-3, sr_tolerance=1e-13,
              sr_iterations=5000, sr_max_step=1e6, generator=5, clip_local_energy=None)
    n_parameters = sum(p.numel() for p in vmc.parameters)
    assert (walkers < n_parameters) == (walkers == 16)
    x = vmc.walkers.x
    energies = vmc.local_energies(x)
    updates = {}
    for solver in ("kernel", "cg"):
        vmc.sr_solver = solver
        delta, iterations, residual, _ = vmc.natural_gradient(x, energies)
        assert residual < 1e-10, (solver, residual)
        updates[solver] = torch.cat([t.reshape(-1) for t in delta])
    assert iterations > 0
    # both residuals are below 1e-10; S + lambda has condition number up to ~1e5 here, so the
    # updates agree norm-wise to ~1e-5 x 1e-10 relative at worst (measured: ~1e-7)
    difference = (updates["kernel"] - updates["cg"]).norm() / updates["cg"].norm()
    assert difference < 1e-6, difference


@pytest.mark.filterwarnings("ignore:the energy series:RuntimeWarning")
def test_sr_trains_the_1d_trap_to_the_exact_energy():
    """Two spin-polarised fermions in the 1-D trap: E = N^2/2 = 2 after 60 SR steps."""
    hamiltonian = ManyBodyHamiltonian(2, 0, 1, harmonic_trap(1.0))
    wf = SlaterJastrow.from_hamiltonian(hamiltonian, hidden=(16,), jastrow_hidden=(8,), generator=5)
    vmc = VMC(hamiltonian, wf, n_walkers=128, optimizer="sr", steps_per_iteration=3, burn_in=100,
              generator=6)
    history = vmc.run(60, progress=False)
    assert history[0]["energy"] > 2.5
    estimate = vmc.estimate_energy(64)
    assert abs(estimate.mean - 2.0) < 5e-3 and estimate.variance < 1e-2


class Hydrogenic(nn.Module):
    """psi = exp(-zeta (r_1 + r_2)) for helium: E(zeta) = zeta^2 - 2 Z zeta + 5 zeta / 8."""

    def __init__(self, zeta):
        super().__init__()
        self.zeta = nn.Parameter(torch.tensor(float(zeta), dtype=DT))

    def forward(self, x):
        log_abs = -self.zeta * torch.linalg.vector_norm(x, dim=-1).sum(-1)
        return torch.ones_like(log_abs), log_abs


def test_hydrogenic_helium_energy():
    zeta = 27 / 16
    vmc = VMC(atom(2), Hydrogenic(zeta), n_walkers=256, generator=7, burn_in=300)
    estimate = vmc.estimate_energy(128, thin=2)
    assert_monte_carlo_close(estimate.mean, estimate.standard_error, zeta**2 - 4 * zeta + 5 * zeta / 8, 5)
    assert estimate.standard_error < 0.01


def test_checkpoint_resume_is_identical(tmp_path):
    hamiltonian = ManyBodyHamiltonian(2, 1, 2, harmonic_trap(1.0))

    def fresh():
        wf = SlaterJastrow.from_hamiltonian(hamiltonian, hidden=(8,), jastrow_hidden=(4,), generator=8)
        return VMC(hamiltonian, wf, n_walkers=32, steps_per_iteration=2, burn_in=20, generator=9, lr=1e-2)

    straight = fresh().run(6, progress=False)
    fresh().run(3, checkpoint=tmp_path / "vmc.pt", checkpoint_every=3, progress=False)
    resumed = fresh().run(6, checkpoint=tmp_path / "vmc.pt", checkpoint_every=3, progress=False)
    assert [r["energy"] for r in resumed] == [r["energy"] for r in straight]


def _small_vmc(optimizer="adam"):
    hamiltonian = ManyBodyHamiltonian(2, 1, 2, harmonic_trap(1.0))
    wf = SlaterJastrow.from_hamiltonian(hamiltonian, hidden=(8,), jastrow_hidden=(4,), generator=8)
    return VMC(hamiltonian, wf, n_walkers=32, steps_per_iteration=2, burn_in=20, generator=9,
               optimizer=optimizer, lr=1e-2 if optimizer == "adam" else 0.05)


def _final_parameters(vmc):
    return torch.cat([p.detach().reshape(-1) for p in vmc.parameters])


@pytest.mark.parametrize("optimizer", ["adam", "sr"])
def test_ctrl_c_then_resume_is_bit_identical(tmp_path, optimizer):
    """Ctrl-C inside step 4 (after the walkers moved and the generators advanced), then resume: the
    history and final parameters equal an uninterrupted run exactly (the states of the unfinished
    step are discarded; checkpoint_every larger than the run, so only the interrupt save counts)."""
    straight_vmc = _small_vmc(optimizer)
    straight = straight_vmc.run(7, progress=False)
    interrupted = _small_vmc(optimizer)
    calls = {"n": 0}
    original = interrupted.local_energies

    def interrupt_at_step_4(x=None):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(x)

    interrupted.local_energies = interrupt_at_step_4
    path = tmp_path / "vmc.pt"
    with pytest.raises(KeyboardInterrupt):
        interrupted.run(7, checkpoint=path, checkpoint_every=100, progress=False)
    resumed_vmc = _small_vmc(optimizer)
    resumed = resumed_vmc.run(7, checkpoint=path, checkpoint_every=100, progress=False)
    assert [r["energy"] for r in resumed] == [r["energy"] for r in straight]
    assert torch.equal(_final_parameters(resumed_vmc), _final_parameters(straight_vmc))
    assert torch.equal(resumed_vmc.walkers.x, straight_vmc.walkers.x)


def test_malicious_walker_checkpoint_is_refused(tmp_path):
    """A pickle whose __reduce__ runs a shell command, placed where the walker checkpoint lives,
    is refused (torch.load weights_only=True) and the command never runs."""
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    path = tmp_path / "vmc.pt"
    torch.save({"step": 0}, path)
    torch.save(Exploit(), str(path) + ".walkers")
    with pytest.raises(ValueError, match="refusing to load the walker checkpoint"):
        _small_vmc().run(2, checkpoint=path, progress=False)
    assert not marker.exists()


def test_repeated_run_keeps_the_adam_state():
    """run(3); run(4) equals run(7): the same Adam moments continue (a fresh Adam would differ)."""
    once = _small_vmc()
    once.run(7, progress=False)
    twice = _small_vmc()
    twice.run(3, progress=False)
    twice.run(4, progress=False)
    assert torch.equal(_final_parameters(once), _final_parameters(twice))
    fresh_adam = _small_vmc()
    fresh_adam.run(3, progress=False)
    fresh_adam._optimizer = None  # what a fresh optimiser per call gave before
    fresh_adam.run(4, progress=False)
    assert not torch.equal(_final_parameters(once), _final_parameters(fresh_adam))


class Unbounded(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.5, dtype=DT))

    def forward(self, x):  # |psi|^2 grows: not normalisable
        log_abs = self.a * (x**2).sum((1, 2))
        return torch.ones_like(log_abs), log_abs


class NaNCurvature(nn.Module):
    """Finite log|psi| whose derivatives are NaN (the torch.where-of-sqrt trap)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(1.0, dtype=DT))

    def forward(self, x):
        r2 = (x**2).sum((1, 2))
        log_abs = -0.5 * self.a * r2 + torch.where(r2 > 1e6, torch.sqrt(r2 - 1e6), torch.zeros_like(r2))
        return torch.ones_like(log_abs), log_abs


def test_divergence_and_nan_energies_stop_with_clear_errors():
    hamiltonian = ManyBodyHamiltonian(2, 0, 1, harmonic_trap(1.0))
    with pytest.raises(NonFiniteLossError, match="walkers diverged"):
        VMC(hamiltonian, Unbounded(), n_walkers=16, burn_in=0, max_walker_distance=20.0, generator=1,
            step_size=2.0).run(500, progress=False)
    with pytest.raises(NonFiniteLossError, match="local energy is not finite .* at step 0"):
        VMC(hamiltonian, NaNCurvature(), n_walkers=16, burn_in=0, generator=1).run(3, progress=False)


def test_bad_arguments():
    hamiltonian = ManyBodyHamiltonian(2, 0, 1, harmonic_trap(1.0))
    with pytest.raises(ValueError, match="optimizer"):
        VMC(hamiltonian, Gaussian(1.0), optimizer="kfac")
    with pytest.raises(ValueError, match="n_walkers"):
        VMC(hamiltonian, Gaussian(1.0), n_walkers=1)
    with pytest.raises(TypeError, match="ManyBodyHamiltonian"):
        VMC("helium", Gaussian(1.0))
    with pytest.raises(ValueError, match="steps >= 64"):
        energy_estimate(torch.zeros(10, 4))
    with pytest.raises(ValueError, match="NaN"):
        energy_estimate(torch.full((64, 2), float("nan")))
    g = make_generator(0)
    assert energy_estimate(torch.randn(64, 4, generator=g)).n_samples == 256
