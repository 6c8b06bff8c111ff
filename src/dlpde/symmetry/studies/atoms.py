"""symmetry.atoms: lithium and beryllium by all-electron VMC with a Slater-Jastrow-backflow ansatz.

``H = -1/2 sum_i Lap_i - sum_i Z / r_i + sum_{i<j} 1 / r_ij`` (``dlpde.symmetry.atom``): Li (Z = 3,
two spin-up electrons and one spin-down) and Be (Z = 4, two and two). Exact non-relativistic
ground-state energies (infinite nuclear mass): Li -7.478060 Ha and Be -14.66736 Ha (Chakravorty et
al., Phys. Rev. A 47, 3649 (1993), the reference FermiNet compares with). The ansatz is
``BackflowDeterminant`` with the neural Jastrow and the Kato pair cusp (FermiNet-style generalised
orbitals, Pfau et al. 2020) or ``SlaterJastrow``; local energies by the forward Laplacian
(``local_energy``'s default), optimisation by stochastic reconfiguration, error bars by blocking.

Pretraining (optional, ``pretrain_steps > 0``; FermiNet's supervised start): the orbital matrix
``phi^k_a(x_i; X)`` of every determinant is fitted by least squares to the hydrogen-like orbitals
``1s(Z_1s)`` and ``2s(Z_2s)`` (``HydrogenicDeterminant``) with Slater's effective charges
(``slater_effective_charges``: Li 2.70 / 1.30, Be 3.70 / 1.95), on configurations sampled from
``|psi_hydrogenic|^2``; the orbital envelopes start at the hydrogen-like decay rates ``Z_1s`` and
``Z_2s / 2``. Without it the first VMC steps start from random orbitals.

Measured (full preset, 1200 SR steps, 256 walkers, one core per atom): Li -7.47773 +- 0.00057 Ha
(0.33 +- 0.57 mHa above exact, 237 CPU s), Be -14.6634 +- 0.0014 Ha (3.96 +- 1.39 mHa, 335 CPU s).
"""

from __future__ import annotations

import dataclasses
import math
import time
import typing
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from dlpde.shared import (
    MetropolisWalkers,
    Study,
    check_choice,
    check_int,
    check_positive,
    check_real,
    resolve_device,
    resolve_dtype,
)
from dlpde.shared.runs import atomic_torch_save, load_torch_file

from .._hamiltonian import atom
from .._vmc import VMC
from .._wavefunctions import BackflowDeterminant, SlaterJastrow
from ._checks import check_fields, check_subset
from ._vmc_runs import point_seed, running_mean

EXACT = {"li": -7.478060, "be": -14.66736}
CHARGES = {"li": 3, "be": 4}
NAMES = {"li": "Li", "be": "Be"}
ANSATZE = {"backflow": BackflowDeterminant, "slater_jastrow": SlaterJastrow}
LABELS = {"backflow": "Slater-Jastrow-backflow", "slater_jastrow": "Slater-Jastrow"}


# -- hydrogen-like orbitals -----------------------------------------------------------------------
def slater_effective_charges(charge: float, n_up: int, n_down: int) -> tuple[float, float]:
    """Slater's rules (Slater 1930) for the 1s and 2s shells: ``(Z_1s, Z_2s)``.

    ``Z_1s = Z - 0.30 (n_1s - 1)``; ``Z_2s = Z - 0.85 n_1s - 0.35 (n_2s - 1)``, with ``n_1s`` and
    ``n_2s`` the occupations when each spin fills 1s then 2s (at most two electrons per spin).
    Li: (2.70, 1.30); Be: (3.70, 1.95). ``Z_2s`` is ``Z - 0.85 n_1s`` when 2s is empty.
    """
    charge = check_positive(charge, "charge")
    check_int(n_up, "n_up", minimum=0, maximum=2)
    check_int(n_down, "n_down", minimum=0, maximum=2)
    if n_up + n_down < 1:
        raise ValueError("there must be at least one electron")
    n_1s = min(n_up, 1) + min(n_down, 1)
    n_2s = max(n_up - 1, 0) + max(n_down - 1, 0)
    z_1s = charge - 0.30 * (n_1s - 1)
    z_2s = charge - 0.85 * n_1s - 0.35 * max(n_2s - 1, 0)
    if z_1s <= 0 or z_2s <= 0:
        raise ValueError(f"Slater's rules give a non-positive effective charge ({z_1s:g}, {z_2s:g}) "
                         f"for Z = {charge:g} with {n_up} + {n_down} electrons")
    return z_1s, z_2s


class HydrogenicDeterminant(nn.Module):
    """``psi(X) = det[phi_a(x_i)]_{up} det[phi_a(x_i)]_{down}`` of hydrogen-like orbitals at the origin.

    ``phi_1 = 1s(Z_1) = Z_1^{3/2} pi^{-1/2} exp(-Z_1 r)`` and
    ``phi_2 = 2s(Z_2) = Z_2^{3/2} (32 pi)^{-1/2} (2 - Z_2 r) exp(-Z_2 r / 2)``; each spin fills 1s,
    then 2s (``n_up, n_down <= 2``). With ``Z_1 = Z_2 = Z`` this is an exact eigenstate of the
    atom without electron-electron repulsion, energy ``-Z^2/2 sum_electrons 1/n^2`` (Li: -10.125,
    Be: -20 Ha). ``(B, N, 3) -> (sign, log|psi|)``; the spin-up electrons come first. No
    parameters (a fixed target for pretraining and a reference for tests); any device and dtype of ``x``.
    """

    def __init__(self, n_up: int, n_down: int, z_1s: float, z_2s: float):
        super().__init__()
        self.n_up = check_int(n_up, "n_up", minimum=0, maximum=2)
        self.n_down = check_int(n_down, "n_down", minimum=0, maximum=2)
        if n_up + n_down < 1:
            raise ValueError("there must be at least one electron")
        self.z_1s, self.z_2s = check_positive(z_1s, "z_1s"), check_positive(z_2s, "z_2s")

    @property
    def n_particles(self) -> int:
        return self.n_up + self.n_down

    def check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError("x must be a floating-point torch.Tensor of positions")
        if x.dim() != 3 or x.shape[1:] != (self.n_particles, 3):
            raise ValueError(f"x must have shape (batch, {self.n_particles}, 3), got {tuple(x.shape)}")

    def orbitals(self, x: torch.Tensor) -> torch.Tensor:
        """``(1s(x_i), 2s(x_i))`` of every electron, shape ``(B, N, 2)``."""
        self.check_input(x)
        r = torch.linalg.vector_norm(x, dim=-1)
        z1, z2 = self.z_1s, self.z_2s
        one_s = z1**1.5 / math.sqrt(math.pi) * torch.exp(-z1 * r)
        two_s = z2**1.5 / math.sqrt(32 * math.pi) * (2 - z2 * r) * torch.exp(-0.5 * z2 * r)
        return torch.stack([one_s, two_s], -1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        phi = self.orbitals(x)
        sign = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
        log_abs = torch.zeros_like(sign)
        for start, count in ((0, self.n_up), (self.n_up, self.n_down)):
            if count:
                s, log = torch.linalg.slogdet(phi[:, start:start + count, :count])
                sign, log_abs = sign * s, log_abs + log
        return sign, log_abs


def _orbital_blocks(wavefunction, x: torch.Tensor) -> list[torch.Tensor]:
    """The orbital matrices the determinants read, per spin: ``(B, n_spin, n_det, n_spin)``."""
    phi = wavefunction.orbital_values(x)
    n_up, n_down, k = wavefunction.n_up, wavefunction.n_down, wavefunction.n_determinants
    blocks = []
    for start, count, offset in ((0, n_up, 0), (n_up, n_down, k * n_up)):
        if count:
            block = phi[:, start:start + count, offset:offset + k * count]
            blocks.append(block.reshape(x.shape[0], count, k, count))
    return blocks


def pretrain_orbitals(wavefunction: nn.Module, target: HydrogenicDeterminant, steps: int,
                      n_walkers: int = 256, lr: float = 3e-3, generator=0) -> np.ndarray:
    """Fit the orbital matrix of ``wavefunction`` to ``target``'s orbitals (FermiNet's pretraining).

    Minimises ``sum_spins mean_{walkers} sum_{k, i, a} (phi^k_a(x_i; X) - target_a(x_i))^2 /
    (n_spin^2 n_det)`` by Adam (``steps`` updates, rate ``lr``) on ``n_walkers`` Metropolis chains
    sampling ``|target|^2`` (two moves per update after 100 moves of burn-in). The orbital
    envelopes start at the target's decay rates (``Z_1s`` for 1s, ``Z_2s / 2`` for 2s).
    ``wavefunction``: a ``BackflowDeterminant`` or an MLP-orbital ``SlaterJastrow`` with the
    target's spins. Returns the relative residual ``sqrt(loss / mean target^2)`` at every step.
    """
    if not isinstance(wavefunction, (BackflowDeterminant, SlaterJastrow)) or \
            getattr(wavefunction, "orbital_envelope", None) is None:
        raise TypeError("wavefunction must be a BackflowDeterminant or an MLP-orbital SlaterJastrow")
    if not isinstance(target, HydrogenicDeterminant):
        raise TypeError(f"target must be a HydrogenicDeterminant, got {type(target).__name__}")
    if (wavefunction.n_up, wavefunction.n_down, wavefunction.dim) != (target.n_up, target.n_down, 3):
        raise ValueError(f"the wavefunction has {wavefunction.n_up} + {wavefunction.n_down} particles in "
                         f"{wavefunction.dim}-D, the target {target.n_up} + {target.n_down} in 3-D")
    check_int(steps, "steps", minimum=0)
    n_walkers = check_int(n_walkers, "n_walkers", minimum=2)
    lr = check_positive(lr, "lr")
    centers = wavefunction.centers
    if centers.shape[0] != 1 or bool(centers.abs().max() > 0):
        raise ValueError("hydrogen-like pretraining needs one nucleus at the origin")
    device, dtype = centers.device, centers.dtype
    n_up, n_down, k = wavefunction.n_up, wavefunction.n_down, wavefunction.n_determinants
    with torch.no_grad():  # envelope decays of the hydrogen-like orbitals, column by column
        rates = (target.z_1s, 0.5 * target.z_2s)
        decay = wavefunction.orbital_envelope.decay
        for start, count in ((0, n_up), (k * n_up, n_down)):
            for column in range(k * count):
                decay[start + column] = rates[column % count]
    if steps == 0:
        return np.zeros(0)
    seed = generator if isinstance(generator, torch.Generator) else \
        torch.Generator(device=device).manual_seed(check_int(generator, "generator", minimum=0))
    x0 = torch.randn((n_walkers, target.n_particles, 3), generator=seed, device=device, dtype=dtype)
    walkers = MetropolisWalkers(lambda y: 2.0 * target(y)[1], x0 / target.z_2s, step_size=0.3, generator=seed)
    walkers.step(100)
    parameters = [p for p in wavefunction.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=lr)
    residuals = np.zeros(steps)
    for step in range(steps):
        walkers.step(2)
        x = walkers.x
        with torch.no_grad():
            reference = target.orbitals(x)
        loss, scale = 0.0, 0.0
        for block, (start, count) in zip(_orbital_blocks(wavefunction, x),
                                         [s for s in ((0, n_up), (n_up, n_down)) if s[1]]):
            wanted = reference[:, start:start + count, None, :count]
            loss = loss + ((block - wanted) ** 2).mean()
            scale += float((wanted**2).mean())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        residuals[step] = math.sqrt(float(loss.detach()) / scale)
        if not math.isfinite(residuals[step]):
            raise FloatingPointError(f"the pretraining loss is not finite at step {step} (lower lr)")
    return residuals


# -- the study ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Config:
    """``atoms``: subset of ("li", "be"); ``ansatz``: "backflow" (Slater-Jastrow-backflow:
    ``BackflowDeterminant`` with the neural Jastrow and the Kato cusp) or "slater_jastrow";
    ``width``, ``n_layers``: of the one-particle stream (or of the orbital MLP);
    ``pretrain_steps``, ``pretrain_lr``: the hydrogen-like pretraining (0 steps: none);
    ``lr`` decays as ``lr / (1 + t / t_0)`` to ``final_lr_factor * lr`` at the last of ``steps``
    (1: constant); ``eval_steps`` samples per walker, ``eval_thin`` moves apart, for the final
    blocked estimate."""

    MEANINGFUL_VALUES: typing.ClassVar[dict] = {
        "burn_in": (0,),  # 0: no equilibration sweeps
        "pretrain_steps": (0,),  # 0: no pretraining (random orbitals, hydrogen-like envelopes off)
    }
    atoms: tuple[str, ...] = ("li", "be")
    ansatz: Literal["backflow", "slater_jastrow"] = "backflow"
    n_determinants: int = 1
    width: int = 32
    n_layers: int = 2
    pretrain_steps: int = 500
    pretrain_lr: float = 3e-3
    walkers: int = 256
    steps: int = 1200
    metropolis_steps: int = 5
    burn_in: int = 300
    optimizer: Literal["sr", "adam"] = "sr"
    lr: float = 0.05
    final_lr_factor: float = 0.1
    eval_steps: int = 512
    eval_thin: int = 4
    dtype: Literal["float32", "float64"] = "float64"
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        check_subset(self.atoms, "atoms", tuple(EXACT))
        check_choice(self.ansatz, "ansatz", tuple(ANSATZE))
        check_fields(self, positive=("n_determinants", "width", "n_layers", "steps", "metropolis_steps",
                                     "eval_thin"),
                     non_negative=("burn_in", "pretrain_steps"), positive_reals=("lr", "pretrain_lr"),
                     minimum={"walkers": 2, "eval_steps": 64})
        check_real(self.final_lr_factor, "final_lr_factor", 0.0, 1.0, strict_minimum=True)
        check_choice(self.optimizer, "optimizer", ("sr", "adam"))


def build_wavefunction(config: Config, name: str, seed: int) -> tuple[object, nn.Module]:
    """The atom's Hamiltonian and the untrained ansatz of ``config`` (on its device and dtype)."""
    check_choice(name, "name", tuple(EXACT))
    hamiltonian = atom(CHARGES[name])
    options = {"n_determinants": config.n_determinants}
    if config.ansatz == "backflow":
        options.update(one_body_width=config.width, n_layers=config.n_layers, jastrow_hidden=(16, 16))
    else:
        options.update(hidden=(config.width,) * config.n_layers)
    wavefunction = ANSATZE[config.ansatz].from_hamiltonian(hamiltonian, generator=seed,
                                                           dtype=resolve_dtype(config.dtype), **options)
    return hamiltonian, wavefunction.to(resolve_device(config.device))


def _lr_schedule(config: Config):
    """``lr / (1 + t / t_0)`` reaching ``final_lr_factor * lr`` at the last step (FermiNet's decay)."""
    t0 = config.steps / (1 / config.final_lr_factor - 1) if config.final_lr_factor < 1 else None

    def make(optimizer):
        if t0 is None:
            return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 1.0)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 1.0 / (1.0 + t / t0))

    return make


def _task(task) -> dict:
    config, name, checkpoint, resume = task
    seed = point_seed(config.seed, "atoms", name, config.ansatz)
    cpu = time.process_time()
    hamiltonian, wavefunction = build_wavefunction(config, name, seed)
    z_1s, z_2s = slater_effective_charges(CHARGES[name], hamiltonian.n_up, hamiltonian.n_down)
    pretrain_path = Path(checkpoint).with_name(Path(checkpoint).name + ".pretrained")
    residuals, pretrain_cpu = np.zeros(0), 0.0
    if config.pretrain_steps:
        if resume and pretrain_path.exists():
            saved = load_torch_file(pretrain_path, "pretrained orbitals")
            wavefunction.load_state_dict(saved["state"])
            residuals, pretrain_cpu = saved["residuals"].numpy(), float(saved["cpu_seconds"])
        else:
            target = HydrogenicDeterminant(hamiltonian.n_up, hamiltonian.n_down, z_1s, z_2s)
            residuals = pretrain_orbitals(wavefunction, target, config.pretrain_steps, config.walkers,
                                          config.pretrain_lr, generator=seed)
            pretrain_cpu = time.process_time() - cpu
            atomic_torch_save({"state": wavefunction.state_dict(), "residuals": torch.from_numpy(residuals),
                               "cpu_seconds": pretrain_cpu}, pretrain_path)
    vmc = VMC(hamiltonian, wavefunction, n_walkers=config.walkers, optimizer=config.optimizer, lr=config.lr,
              steps_per_iteration=config.metropolis_steps, burn_in=config.burn_in, generator=seed)
    history = vmc.run(config.steps, checkpoint=checkpoint, resume=resume, checkpoint_every=25,
                      schedule=_lr_schedule(config), desc=f"{NAMES[name]} VMC")
    evaluation_cpu = time.process_time()
    estimate = vmc.estimate_energy(config.eval_steps, thin=config.eval_thin)
    return {
        "energy_history": np.array([row["energy"] for row in history]),
        "variance_history": np.array([row["variance"] for row in history]),
        "energy": estimate.mean,
        "standard_error": estimate.standard_error,
        "variance": estimate.variance,
        "autocorrelation_time": estimate.autocorrelation_time,
        "pretrain_residual": float(residuals[-1]) if residuals.size else float("nan"),
        "pretrain_residuals": residuals,
        "n_parameters": sum(p.numel() for p in wavefunction.parameters()),
        "seconds_per_step": float(np.median([row["seconds"] for row in history])),
        "cpu_seconds_per_step": float(np.median([row["cpu_seconds"] for row in history])),
        "vmc_cpu_seconds": float(sum(row["cpu_seconds"] for row in history)),
        "pretrain_cpu_seconds": pretrain_cpu,
        "evaluation_cpu_seconds": time.process_time() - evaluation_cpu,
        "slater_charges": (z_1s, z_2s),
    }


def run(config: Config, run_dir) -> dict:
    tasks = [(config, name, str(run_dir.checkpoint_path(name)), run_dir.resume) for name in config.atoms]
    results = run_dir.map(_task, tasks, keys=list(config.atoms), desc="atom VMC runs")
    rows, metrics = [], {}
    for name, result in zip(config.atoms, results):
        error = result["energy"] - EXACT[name]
        row = {"atom": NAMES[name], "exact": EXACT[name], "energy": result["energy"],
               "standard_error": result["standard_error"], "error_mha": 1e3 * error,
               "standard_error_mha": 1e3 * result["standard_error"], "variance": result["variance"],
               "autocorrelation_time": result["autocorrelation_time"], "n_parameters": result["n_parameters"],
               "pretrain_residual": result["pretrain_residual"],
               "cpu_seconds_per_step": result["cpu_seconds_per_step"],
               "pretrain_cpu_seconds": result["pretrain_cpu_seconds"],
               "vmc_cpu_seconds": result["vmc_cpu_seconds"],
               "evaluation_cpu_seconds": result["evaluation_cpu_seconds"]}
        rows.append(row)
        metrics[name] = {"energy": result["energy"], "standard_error": result["standard_error"],
                         "error_mha": 1e3 * error, "standard_error_mha": 1e3 * result["standard_error"],
                         "variance": result["variance"], "pretrain_residual": result["pretrain_residual"],
                         "cpu_seconds": result["pretrain_cpu_seconds"] + result["vmc_cpu_seconds"]
                         + result["evaluation_cpu_seconds"]}
        if name == "li":
            metrics["li"]["met_5mha"] = bool(abs(error) <= 5e-3)
    run_dir.write_csv("results.csv", rows)
    pairs = list(zip(config.atoms, results))
    run_dir.save_arrays("histories", **{f"{a}-energy": r["energy_history"] for a, r in pairs},
                        **{f"{a}-variance": r["variance_history"] for a, r in pairs},
                        **{f"{a}-pretrain-residual": r["pretrain_residuals"] for a, r in pairs})
    _report(config, run_dir, results, rows)
    return metrics


def _report(config, run_dir, results, rows) -> None:
    from dlpde.shared import new_figure

    fig, axes = new_figure(1, 2, width=4.4)
    for i, (name, result) in enumerate(zip(config.atoms, results)):
        steps = np.arange(len(result["energy_history"]))
        error = np.abs(running_mean(result["energy_history"], 20) - EXACT[name]) * 1e3
        axes[0].semilogy(steps, error, color=f"C{i}", label=NAMES[name])
        axes[1].semilogy(steps, running_mean(result["variance_history"], 20), color=f"C{i}")
    axes[0].axhline(5.0, color="gray", ls=":", lw=0.8, label="5 mHa")
    axes[0].set(xlabel="VMC step", ylabel="|E - E_exact| (mHa, 20-step mean)")
    axes[1].set(xlabel="VMC step", ylabel="variance of E_L (20-step mean)")
    axes[0].legend(fontsize=7)
    run_dir.save_figure(fig, "convergence", f"Li and Be: energy error and local-energy variance against VMC "
                        f"steps ({LABELS[config.ansatz]}, {config.walkers} walkers, {config.optimizer}, "
                        f"{config.pretrain_steps} pretraining steps).")
    lines = ["| atom | E (Ha) | exact (Ha) | error (mHa) | variance | pretraining residual | parameters | "
             "CPU s (pretrain / VMC / evaluation) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['atom']} | {r['energy']:.6f} +- {r['standard_error']:.6f} | {r['exact']} | "
                     f"{r['error_mha']:.2f} +- {r['standard_error_mha']:.2f} | {r['variance']:.2e} | "
                     f"{r['pretrain_residual']:.2e} | {r['n_parameters']} | "
                     f"{r['pretrain_cpu_seconds']:.0f} / "
                     f"{r['vmc_cpu_seconds']:.0f} / {r['evaluation_cpu_seconds']:.0f} |")
    run_dir.add_section("Energies", f"{LABELS[config.ansatz]} ansatz ({config.n_determinants} "
                        f"determinant(s), width {config.width}, {config.n_layers} layers), "
                        f"{config.steps} VMC steps. Error bars "
                        f"by blocking ({config.eval_steps} samples per walker, {config.eval_thin} Metropolis "
                        "moves apart). Pretraining residual: relative root-mean-square misfit of the orbital "
                        "matrix to the hydrogen-like 1s/2s orbitals (Slater's effective charges).\n\n"
                        + "\n".join(lines))


def headline(metrics) -> dict:
    """The tour's summary of a run (see ``dlpde.shared.report``): the Li and Be energy errors."""
    from dlpde.shared.report import metric, number

    li = metric(metrics, "li", "error_mha")
    be = metric(metrics, "be", "error_mha")
    return {
        "sentence": "All-electron variational Monte Carlo of lithium and beryllium with a Slater-Jastrow-"
                    "backflow network, pretrained on hydrogen-like orbitals, with forward-Laplacian local "
                    "energies and blocked error bars.",
        "numbers": [number("Li: E - E_exact (-7.478060 Ha)", li, "mHa", "|error| <= 5 mHa (full)",
                           None if li is None else bool(abs(li) <= 5.0)),
                    number("Be: E - E_exact (-14.66736 Ha)", be, "mHa", "reported", None)],
        "expectation": "Li within about 15 mHa and Be within about 30 mHa of the exact energies (200 SR "
                       "steps, 128 walkers; measured 13.8 +- 1.7 and 28.6 +- 5.6 mHa, 64 CPU s).",
        "full": "Li -7.47773 +- 0.00057 Ha (error 0.33 +- 0.57 mHa, target 5 mHa: met), Be -14.6634 +- "
                "0.0014 Ha (3.96 +- 1.39 mHa); 237 and 335 CPU s (1200 SR steps, 256 walkers, one core "
                "each).",
        "figure": "convergence.png",
    }


STUDY = Study(
    name="symmetry.atoms",
    description="Lithium (exact -7.478060 Ha) and beryllium (-14.66736 Ha) by all-electron VMC with a "
                "Slater-Jastrow-backflow ansatz pretrained on hydrogen-like orbitals.",
    config=Config,
    presets={
        "smoke": Config(pretrain_steps=5, walkers=16, steps=3, burn_in=20, eval_steps=64, eval_thin=1),
        "quick": Config(pretrain_steps=300, walkers=128, steps=200, burn_in=200, eval_steps=128, eval_thin=2),
        "full": Config(),
        "paper": Config(n_determinants=4, width=64, n_layers=3, pretrain_steps=3000, walkers=4096,
                        steps=20000, metropolis_steps=10, burn_in=2000, eval_steps=4000, eval_thin=5),
    },
    run=run,
    citations=("pfau2020ferminet", "mcmillan1965ground", "sorella1998green", "metropolis1953equation",
               "flyvbjerg1989blocking", "kato1957eigenfunctions", "slater1930shielding",
               "chakravorty1993correlation", "li2024forward"),
    headline=headline,
)
