"""Variational Monte Carlo: minimise ``E[psi] = <psi|H|psi> / <psi|psi>`` over the parameters.

Walkers sample ``|psi|^2`` by Metropolis (``dlpde.shared.mcmc.MetropolisWalkers``); the energy
is the mean local energy ``E_L = H psi / psi`` and its gradient the variance-reduced estimate
(McMillan 1965)

    grad E = 2 E[(E_L - E[E_L]) grad log|psi|],

whose variance vanishes at an eigenstate. Optimisers: Adam (through ``dlpde.shared.train``), or
stochastic reconfiguration (Sorella 1998), the natural gradient ``delta = (S + lambda I)^{-1} g``
with ``S = E[(O - E O)(O - E O)^T]``, ``O = grad_theta log|psi|``, applied by SGD. With fewer
walkers than parameters the solve happens in sample space (minSR / the kernel trick, Chen & Heyl
2024; Rende et al. 2024): ``delta = A^T (A A^T + lambda I)^{-1} b`` with ``A = (O - E O) / sqrt(n)``,
a Cholesky solve of an ``n x n`` system, identical to the parameter-space solution by the
push-through identity ``(A^T A + lambda)^{-1} A^T = A^T (A A^T + lambda)^{-1}``; otherwise by
conjugate gradients from the per-walker ``O`` (``S`` itself is never formed).
Energy estimates carry autocorrelation-corrected error bars (Flyvbjerg-Petersen blocking).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from pathlib import Path

import torch
from torch.func import functional_call, grad, vmap

from dlpde.shared import (
    MetropolisWalkers,
    NonFiniteLossError,
    check_bool,
    check_choice,
    check_positive_int,
    make_generator,
    spawn_seed,
    train,
)
from dlpde.shared.mcmc import blocking_standard_error, integrated_autocorrelation_time
from dlpde.shared.runs import atomic_torch_save
from dlpde.shared.train import make_optimizer

from ._hamiltonian import ManyBodyHamiltonian, local_energy

__all__ = ["VMC", "EnergyEstimate", "energy_estimate"]

_OPTIMIZERS = ("adam", "sr")
_LAPLACIANS = ("auto", "forward", "exact", "hutchinson")
_SR_SOLVERS = ("auto", "kernel", "cg")


@dataclasses.dataclass(frozen=True)
class EnergyEstimate:
    """A Monte Carlo energy with its error bar.

    ``standard_error`` is the blocking estimate on the walker-averaged series (correlation along
    the chains accounted); ``naive_standard_error`` ignores the correlation (``std / sqrt(n)``);
    ``autocorrelation_time`` is the integrated autocorrelation time ``tau`` of the local energy
    (in sampling steps); ``variance`` the variance of the local energy (zero at an eigenstate).
    """

    mean: float
    standard_error: float
    variance: float
    autocorrelation_time: float
    n_samples: int
    naive_standard_error: float

    def __str__(self) -> str:
        return (f"{self.mean:.6f} +- {self.standard_error:.2g} (variance {self.variance:.3g}, "
                f"tau {self.autocorrelation_time:.2f}, {self.n_samples} samples)")


def energy_estimate(local_energies: torch.Tensor) -> EnergyEstimate:
    """Energy and error bar from local energies ``(steps, walkers)`` sampled along the chains.

    The walkers are independent; the per-step walker average is a correlated series whose mean
    error is found by blocking (needs ``steps >= 64``). Blocking is reliable when the series is
    much longer than the autocorrelation time ``tau`` (measured here): below ``50 tau`` steps a
    ``RuntimeWarning`` says so (thin the chains or sample longer).
    """
    e = torch.as_tensor(local_energies, dtype=torch.float64).detach().cpu()
    if e.dim() != 2 or e.shape[0] < 64:
        raise ValueError(f"local_energies must have shape (steps >= 64, walkers), got {tuple(e.shape)}")
    if not bool(torch.isfinite(e).all()):
        raise ValueError("local_energies contain NaN or infinite values")
    variance = float(e.var())
    tau = integrated_autocorrelation_time(e)
    if e.shape[0] < 50 * tau:
        warnings.warn(f"the energy series is only {e.shape[0] / tau:.0f} autocorrelation times long "
                      f"(tau = {tau:.1f} steps); blocking may underestimate the error bar: sample longer "
                      "or thin more", RuntimeWarning, stacklevel=2)
    return EnergyEstimate(
        mean=float(e.mean()),
        standard_error=blocking_standard_error(e.mean(1)),
        variance=variance,
        autocorrelation_time=tau,
        n_samples=e.numel(),
        naive_standard_error=math.sqrt(variance / e.numel()),
    )


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def conjugate_gradient(apply, rhs: torch.Tensor, max_iterations: int, tolerance: float):
    """Solve ``A z = rhs`` for symmetric positive definite ``A`` (given as ``apply(v) = A v``).

    Stops when ``|r| <= tolerance |rhs|``; returns ``(z, iterations, relative residual)``.
    """
    z = torch.zeros_like(rhs)
    r = rhs.clone()
    p = r.clone()
    rr = r @ r
    target = tolerance**2 * (rhs @ rhs)
    iterations = 0
    while iterations < max_iterations and rr > target:
        ap = apply(p)
        alpha = rr / (p @ ap)
        z = z + alpha * p
        r = r - alpha * ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
        iterations += 1
    residual = float(torch.sqrt(rr / (rhs @ rhs).clamp_min(1e-300)))
    return z, iterations, residual


class VMC:
    """Variational Monte Carlo for a ``ManyBodyHamiltonian`` and an antisymmetric wavefunction.

    Args:
        hamiltonian: the system.
        wavefunction: an ``nn.Module`` ``X -> (sign, log|psi|)`` (its parameters are optimised).
        n_walkers: Metropolis chains sampling ``|psi|^2``.
        sampler: ``"random_walk"`` or ``"mala"`` (``MetropolisWalkers``' proposals).
        optimizer: ``"adam"`` or ``"sr"`` (stochastic reconfiguration, applied by SGD).
        lr: learning rate (default 1e-3 for Adam, 0.05 for SR).
        steps_per_iteration: Metropolis steps between parameter updates.
        burn_in: Metropolis steps (step size adapting) before the first update.
        laplacian, hutchinson_samples: the local energy's Laplacian (``local_energy``'s methods:
            ``"auto"`` = the forward Laplacian where it applies, ``"forward"``, ``"exact"``,
            ``"hutchinson"`` with ``hutchinson_samples`` probes).
        sr_shift: diagonal shift ``lambda`` of ``S``; sr_iterations, sr_tolerance: of CG;
            sr_chunk_size: walkers per chunk of the per-sample gradients (bounds memory);
            sr_solver: ``"kernel"`` (sample-space Cholesky solve, minSR), ``"cg"`` (conjugate gradients
            in parameter space) or ``"auto"`` (kernel when walkers < parameters, else CG);
            sr_max_step: trust region, the largest Fubini-Study length ``lr sqrt(delta^T S delta)``
            of one update (the standard deviation over walkers of the change of ``log|psi|``).
        clip_local_energy: in the gradient only, clip ``E_L`` to ``median +- c * mean|E_L - median|``
            (``None``: no clipping); the reported energies are never clipped.
        initial_width: walkers start at ``centre + initial_width * N(0, I)``.
        max_walker_distance: a walker farther than this from every centre means divergence.
        generator: seed or generator (on the wavefunction's device) for walkers and probes.

    ``run(steps)`` optimises (progress bar, checkpoint/resume) and ``estimate_energy`` measures
    the energy with a blocking error bar at the current parameters.
    """

    def __init__(self, hamiltonian: ManyBodyHamiltonian, wavefunction: torch.nn.Module, n_walkers: int = 1024,
                 sampler: str = "random_walk", optimizer: str = "adam", lr: float | None = None, *,
                 steps_per_iteration: int = 10, burn_in: int = 500, step_size: float = 0.5,
                 laplacian: str = "auto", hutchinson_samples: int = 4, sr_shift: float = 1e-3,
                 sr_iterations: int = 100, sr_tolerance: float = 1e-6, sr_chunk_size: int | None = None,
                 sr_max_step: float = 0.3, sr_solver: str = "auto",
                 clip_local_energy: float | None = 5.0,
                 initial_width: float = 1.0, max_walker_distance: float = 1e3, generator=0):
        if not isinstance(hamiltonian, ManyBodyHamiltonian):
            raise TypeError(f"hamiltonian must be a ManyBodyHamiltonian, got {type(hamiltonian).__name__}")
        if not isinstance(wavefunction, torch.nn.Module):
            raise TypeError("wavefunction must be an nn.Module returning (sign, log|psi|)")
        if optimizer not in _OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {_OPTIMIZERS}, got {optimizer!r}")
        if laplacian not in _LAPLACIANS:
            raise ValueError(f"laplacian must be one of {_LAPLACIANS}, got {laplacian!r}")
        check_choice(sr_solver, "sr_solver", _SR_SOLVERS)
        for name, value, low in (("n_walkers", n_walkers, 2), ("steps_per_iteration", steps_per_iteration, 1),
                                 ("burn_in", burn_in, 0), ("hutchinson_samples", hutchinson_samples, 1),
                                 ("sr_iterations", sr_iterations, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        for name, value in (("step_size", step_size), ("sr_shift", sr_shift), ("sr_tolerance", sr_tolerance),
                            ("sr_max_step", sr_max_step),
                            ("initial_width", initial_width), ("max_walker_distance", max_walker_distance)):
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be positive and finite, got {value}")
        if clip_local_energy is not None and not clip_local_energy > 0:
            raise ValueError(f"clip_local_energy must be positive or None, got {clip_local_energy}")
        self.lr = (1e-3 if optimizer == "adam" else 0.05) if lr is None else float(lr)
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be positive and finite, got {lr}")
        self.hamiltonian, self.wavefunction = hamiltonian, wavefunction
        self.optimizer, self.laplacian = optimizer, laplacian
        self.steps_per_iteration, self.burn_in = steps_per_iteration, burn_in
        self.hutchinson_samples = hutchinson_samples
        self.sr_shift, self.sr_iterations, self.sr_tolerance = sr_shift, sr_iterations, sr_tolerance
        self.sr_chunk_size = sr_chunk_size
        self.sr_max_step = sr_max_step
        self.sr_solver = sr_solver
        self.clip_local_energy = clip_local_energy
        self.max_walker_distance = max_walker_distance
        self.parameters = [p for p in wavefunction.parameters() if p.requires_grad]
        if not self.parameters:
            raise ValueError("the wavefunction has no trainable parameters")
        reference = self.parameters[0]
        self.device, self.dtype = reference.device, reference.dtype
        self.generator = make_generator(generator, self.device)
        self.probe_generator = make_generator(spawn_seed(self.generator), self.device)
        options = hamiltonian.ansatz_options()
        self.centers = options.get("centers", torch.zeros(1, hamiltonian.dim)).to(self.device, self.dtype)
        x0 = self._initial_positions(n_walkers, initial_width)
        self.walkers = MetropolisWalkers(self._log_prob, x0, proposal=sampler, step_size=step_size,
                                         generator=self.generator)
        self._check_log_prob()
        self.burned_in = False
        self._optimizer = None
        self._expected_step = None

    # -- sampling ----------------------------------------------------------------------------
    def _initial_positions(self, n_walkers: int, width: float) -> torch.Tensor:
        n, d = self.hamiltonian.n_particles, self.hamiltonian.dim
        owner = torch.arange(n, device=self.device) % self.centers.shape[0]
        noise = torch.randn((n_walkers, n, d), generator=self.generator, device=self.device, dtype=self.dtype)
        return self.centers[owner] + width * noise

    def _log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * self.wavefunction(x)[1]

    def _check_log_prob(self) -> None:
        bad = int((~torch.isfinite(self.walkers.log_p)).sum())
        if bad:
            raise NonFiniteLossError(f"log|psi| is not finite at {bad} of {self.walkers.x.shape[0]} walkers "
                                     "(the wavefunction vanishes, overflows or is NaN there)")

    def _advance(self, n_steps: int, adapt: bool, refresh: bool = True) -> None:
        """Metropolis steps at the current parameters (``refresh``: re-evaluate ``|psi|^2`` at the
        walkers first, needed after a parameter update); a mild step-size controller (towards the
        target acceptance) runs between iterations while ``adapt``."""
        if refresh:
            self.walkers.set_log_prob(self._log_prob)
            self._check_log_prob()
        try:
            self.walkers.step(n_steps)
        except FloatingPointError as error:
            raise NonFiniteLossError(f"walkers diverged: {error}") from None
        if adapt:
            rate = self.walkers.acceptance_rate
            self.walkers.step_size *= math.exp(0.5 * (rate - self.walkers.target_acceptance))
        distance = torch.linalg.vector_norm(self.walkers.x.unsqueeze(-2) - self.centers, dim=-1)
        farthest = float(distance.amin(-1).max())
        if not farthest <= self.max_walker_distance:
            raise NonFiniteLossError(f"walkers diverged: a particle is {farthest:.3g} from every centre "
                                     f"(max_walker_distance={self.max_walker_distance:g}); the "
                                     "wavefunction is probably not normalisable (lower the learning rate)")

    def equilibrate(self, n_steps: int | None = None) -> None:
        """Burn in the walkers (``burn_in`` steps by default) with step-size adaptation."""
        n_steps = self.burn_in if n_steps is None else n_steps
        chunk = max(1, self.steps_per_iteration)
        for start in range(0, n_steps, chunk):
            self._advance(chunk, adapt=True, refresh=start == 0)
        self.burned_in = True

    def local_energies(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """``E_L`` at ``x`` (default: the walkers), with the chosen Laplacian method."""
        x = self.walkers.x if x is None else x
        return local_energy(self.hamiltonian, self.wavefunction, x, method=self.laplacian,
                            n_samples=self.hutchinson_samples, generator=self.probe_generator)

    # -- gradients ---------------------------------------------------------------------------
    def _clipped_deviation(self, energies: torch.Tensor) -> torch.Tensor:
        """``E_L - mean(E_L)`` after clipping ``E_L`` to ``median +- c * mean|E_L - median|``."""
        if self.clip_local_energy is not None:
            median = energies.median()
            spread = (energies - median).abs().mean()
            energies = energies.clamp(median - self.clip_local_energy * spread,
                                      median + self.clip_local_energy * spread)
        return energies - energies.mean()

    def surrogate_loss(self, x: torch.Tensor, energies: torch.Tensor) -> torch.Tensor:
        """A scalar whose parameter gradient is ``2 mean_b (E_L(x_b) - mean E_L) grad log|psi(x_b)|``."""
        deviation = self._clipped_deviation(energies.detach())
        return 2.0 * (deviation * self.wavefunction(x)[1]).mean()

    def log_derivatives(self, x: torch.Tensor) -> torch.Tensor:
        """``O_b = grad_theta log|psi(x_b)|`` for every walker, flattened: ``(walkers, parameters)``
        (per-sample gradients by ``torch.func.vmap(grad)``, ``sr_chunk_size`` walkers at a time)."""
        names = [n for n, p in self.wavefunction.named_parameters() if p.requires_grad]
        params = {n: p.detach() for n, p in self.wavefunction.named_parameters() if p.requires_grad}
        buffers = dict(self.wavefunction.named_buffers())

        def single(theta, walker):
            return functional_call(self.wavefunction, {**theta, **buffers}, (walker.unsqueeze(0),))[1][0]

        per_walker = vmap(grad(single), in_dims=(None, 0), chunk_size=self.sr_chunk_size)(params, x.detach())
        return torch.cat([per_walker[n].reshape(x.shape[0], -1) for n in names], 1)

    def natural_gradient(self, x: torch.Tensor, energies: torch.Tensor):
        """Stochastic reconfiguration: ``delta = (S + lambda I)^{-1} g``.

        ``g = 2 mean_b (E_L - mean E_L) O_b`` and ``S = mean_b (O_b - mean O)(O_b - mean O)^T`` with
        ``O`` from ``log_derivatives``; ``S`` (parameters x parameters) is never formed. Solvers
        (``sr_solver``): ``"kernel"`` (minSR): with ``A = (O - mean O) / sqrt(n)`` and
        ``b = 2 (E_L - mean E_L) / sqrt(n)``, ``g = A^T b`` and ``delta = A^T (A A^T + lambda I)^{-1} b``
        exactly (push-through identity), one ``n x n`` Cholesky solve, time ``O(n^2 P)``;
        ``"cg"``: conjugate gradients on ``S + lambda I`` (two products with ``A`` per iteration,
        ``O(n P)`` each); ``"auto"``: the kernel when ``n < P``. The update ``lr delta`` is then
        shortened, if needed, to the Fubini-Study length ``lr sqrt(delta^T S delta) <= sr_max_step``
        (a trust region against the huge steps an ill-conditioned ``S`` gives far from the
        optimum). Returns ``(delta shaped like the parameters, CG iterations (0 for the kernel),
        relative residual of (S + lambda I) delta = g, Fubini-Study length of the update)``.
        """
        with torch.no_grad():
            o = self.log_derivatives(x)
            o = o - o.mean(0)
            batch, n_parameters = o.shape
            gradient = 2.0 * (self._clipped_deviation(energies.detach()) @ o) / batch

            def apply(v):
                return (o @ v) @ o / batch + self.sr_shift * v

            solver = self.sr_solver
            if solver == "auto":
                solver = "kernel" if batch < n_parameters else "cg"
            if solver == "kernel":
                deviation = 2.0 * self._clipped_deviation(energies.detach()) / batch
                kernel = o @ o.T / batch
                kernel.diagonal().add_(self.sr_shift)
                factor, info = torch.linalg.cholesky_ex(kernel)
                if int(info) == 0:
                    coefficients = torch.cholesky_solve(deviation.unsqueeze(-1), factor).squeeze(-1)
                else:  # numerically indefinite (low precision): a symmetric eigen-solve instead
                    values, vectors = torch.linalg.eigh(kernel)
                    coefficients = vectors @ ((vectors.T @ deviation) / values.clamp_min(self.sr_shift))
                delta = coefficients @ o
                iterations = 0
                residual = float(torch.linalg.vector_norm(apply(delta) - gradient)
                                 / torch.linalg.vector_norm(gradient).clamp_min(1e-300))
            else:
                delta, iterations, residual = conjugate_gradient(apply, gradient, self.sr_iterations,
                                                                 self.sr_tolerance)
            length = self.lr * float(torch.sqrt(((o @ delta) ** 2).mean()))
            if length > self.sr_max_step:
                delta = delta * (self.sr_max_step / length)
                length = self.sr_max_step
        sizes = [p.numel() for p in self.parameters]
        shaped = [d.reshape(p.shape) for d, p in zip(delta.split(sizes), self.parameters)]
        return shaped, iterations, residual, length

    # -- optimisation ------------------------------------------------------------------------
    def _walker_state_path(self, checkpoint: Path) -> Path:
        return checkpoint.with_name(checkpoint.name + ".walkers")

    def _snapshot(self, step: int) -> dict:
        """The sampling state at a step boundary: walkers, step size and both generators."""
        return {"step": step, "x": self.walkers.x.detach().cpu().clone(), "step_size": self.walkers.step_size,
                "generator": self.generator.get_state(), "probe_generator": self.probe_generator.get_state()}

    def _load_walkers(self, path: Path) -> int:
        """Restore a snapshot written by ``run`` (plain tensors only: ``weights_only=True``)."""
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # an unpickling error names the refused global
            raise ValueError(f"refusing to load the walker checkpoint {path}: it is not a plain tensor "
                             f"checkpoint written by VMC.run (torch.load weights_only=True: {error}); "
                             "delete it or start without resume") from None
        keys = {"step", "x", "step_size", "generator", "probe_generator"}
        if not isinstance(saved, dict) or not keys <= set(saved):
            raise ValueError(f"the walker checkpoint {path} lacks {sorted(keys)}; delete it or start "
                             "without resume")
        x = saved["x"]
        if not isinstance(x, torch.Tensor) or tuple(x.shape) != tuple(self.walkers.x.shape):
            raise ValueError(f"the walker checkpoint {path} holds walkers of shape "
                             f"{tuple(getattr(x, 'shape', ()))}, expected {tuple(self.walkers.x.shape)}")
        self.walkers.x = x.to(self.device, self.dtype)
        self.walkers.step_size = float(saved["step_size"])
        self.generator.set_state(saved["generator"])
        self.probe_generator.set_state(saved["probe_generator"])
        self.walkers.set_log_prob(self._log_prob)
        self.burned_in = True
        return int(saved["step"])

    def _loss(self, step: int):
        if self._expected_step is not None:
            expected, self._expected_step = self._expected_step, None
            if step != expected:
                raise ValueError(f"the walker checkpoint is at step {expected} but the parameter checkpoint "
                                 f"at step {step}; delete both or start without resume")
        wall, cpu = time.perf_counter(), time.process_time()
        self._advance(self.steps_per_iteration, adapt=True)
        x = self.walkers.x
        energies = self.local_energies(x)
        bad = ~torch.isfinite(energies)
        if bool(bad.any()):
            raise NonFiniteLossError(f"the local energy is not finite at {int(bad.sum())} of {x.shape[0]} "
                                     f"walkers at step {step} (a node or a divergent wavefunction; lower the "
                                     "learning rate or enable clip_local_energy)")
        energy = energies.mean()
        metrics = {"energy": float(energy), "variance": float(energies.var()),
                   "acceptance": self.walkers.acceptance_rate, "step_size": self.walkers.step_size}
        if self.optimizer == "adam":
            surrogate = self.surrogate_loss(x, energies)
        else:
            delta, iterations, residual, length = self.natural_gradient(x, energies)
            surrogate = sum((p * d).sum() for p, d in zip(self.parameters, delta))
            metrics.update(cg_iterations=iterations, cg_residual=residual, update_length=length)
        metrics.update(seconds=time.perf_counter() - wall, cpu_seconds=time.process_time() - cpu)
        # the gradient is the surrogate's; the value reported (and checked for NaN) is the energy
        return surrogate - surrogate.detach() + energy, metrics

    def _optimizer_for(self, params):
        """The one optimiser of this VMC (Adam, or SGD for SR), kept across ``run`` calls."""
        if self._optimizer is None:
            self._optimizer = make_optimizer(params, "adam" if self.optimizer == "adam" else "sgd", self.lr)
        return self._optimizer

    def run(self, steps: int, *, checkpoint: str | os.PathLike | None = None, resume: bool = True,
            checkpoint_every: int = 100, schedule=None, grad_clip: float | None = None, progress: bool = True,
            desc: str = "vmc", log_every: int = 1) -> list[dict]:
        """Optimise the wavefunction for ``steps`` parameter updates; return the history
        (``dlpde.shared.train``'s, with ``energy``, ``variance``, ``acceptance``, ``step_size``, the
        wall and CPU ``seconds`` of sampling and gradient, and for SR the solver statistics and the
        update's Fubini-Study length).

        With ``checkpoint`` the parameters and optimiser (``checkpoint``) and the walkers, step size
        and generators (``checkpoint + ".walkers"``) are saved every ``checkpoint_every`` steps, at
        the end, on Ctrl-C and on a non-finite energy; ``resume`` continues up to ``steps`` in total
        from them, giving exactly the numbers of an uninterrupted run: the sampling state saved is
        always that of the last completed step (a step interrupted half-way has advanced the
        generators and walkers; those states are discarded and the step is redone). The walker file
        is read with ``torch.load(weights_only=True)``: anything but plain tensors is refused.
        Divergent walkers and NaN energies raise ``NonFiniteLossError`` naming the step.

        Calling ``run`` again (without a checkpoint) performs ``steps`` more updates with the same
        optimiser, so Adam's moment estimates carry over: ``run(a); run(b)`` equals ``run(a + b)``.
        """
        check_positive_int(checkpoint_every, "checkpoint_every")
        check_positive_int(log_every, "log_every")
        check_bool(resume, "resume")
        check_bool(progress, "progress")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
        if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
            raise TypeError("checkpoint must be a path (str or os.PathLike) or None, "
                            f"got {type(checkpoint).__name__}")
        path = Path(checkpoint) if checkpoint is not None else None
        walker_path = self._walker_state_path(path) if path is not None else None
        self._expected_step = None
        if walker_path is not None and resume and walker_path.exists():
            self._expected_step = self._load_walkers(walker_path)
            if not path.exists():
                raise ValueError(f"found the walker checkpoint {walker_path} but not {path}; delete it or "
                                 "start without resume")
        if not self.burned_in:
            self.equilibrate()
        snapshot = {"state": None}

        def callback(step, record):
            snapshot["state"] = self._snapshot(step + 1)
            if walker_path is not None and (step + 1) % checkpoint_every == 0:
                atomic_torch_save(snapshot["state"], walker_path)

        start_state = self._snapshot(self._expected_step if self._expected_step is not None else 0)
        snapshot["state"] = start_state
        try:
            history = train(self.parameters, self._loss, steps, optimizer=self._optimizer_for, lr=self.lr,
                            schedule=schedule, grad_clip=grad_clip, checkpoint=path,
                            checkpoint_every=checkpoint_every, resume=resume, progress=progress, desc=desc,
                            log_every=log_every, callback=callback)
        except (KeyboardInterrupt, NonFiniteLossError):
            if walker_path is not None:  # the state of the last completed step, not the interrupted one
                atomic_torch_save(snapshot["state"], walker_path)
            raise
        finally:
            self._expected_step = None
        if walker_path is not None:
            atomic_torch_save(snapshot["state"], walker_path)
        return history

    # -- measurement -------------------------------------------------------------------------
    def sample_local_energies(self, n_steps: int, thin: int = 1, batch_size: int = 4096) -> torch.Tensor:
        """Local energies ``(n_steps, walkers)`` along the chains, ``thin`` Metropolis steps apart,
        at fixed parameters and step size (exact sampling of ``|psi|^2``). The configurations are
        collected first and their local energies computed ``batch_size`` at a time."""
        if n_steps < 1 or thin < 1 or batch_size < 1:
            raise ValueError("n_steps, thin and batch_size must be >= 1")
        if not self.burned_in:
            self.equilibrate()
        configurations = []
        for step in range(n_steps):
            self._advance(thin, adapt=False, refresh=step == 0)
            configurations.append(self.walkers.x.clone())
        flat = torch.cat(configurations)
        energies = torch.cat([self.local_energies(chunk) for chunk in flat.split(batch_size)])
        if not bool(torch.isfinite(energies).all()):
            raise NonFiniteLossError("the local energy is not finite at some sampled configurations")
        return energies.reshape(n_steps, -1)

    def estimate_energy(self, n_steps: int = 256, thin: int = 2) -> EnergyEstimate:
        """The energy at the current parameters with a blocking error bar: ``n_steps >= 64``
        samples per walker, ``thin`` Metropolis moves apart (see ``energy_estimate``)."""
        return energy_estimate(self.sample_local_energies(n_steps, thin))
