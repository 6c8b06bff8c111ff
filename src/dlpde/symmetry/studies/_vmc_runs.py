"""The piece of work the VMC studies repeat: build an ansatz for a Hamiltonian, optimise it with
``VMC.run`` (checkpointed), measure the energy with a blocking error bar, and time the steps."""

from __future__ import annotations

import time
import zlib
from pathlib import Path

import numpy as np

from dlpde.shared import resolve_device, resolve_dtype

from .._vmc import VMC
from .._wavefunctions import BackflowDeterminant, SlaterJastrow, VandermondeAnsatz

ANSATZE = {"slater_jastrow": SlaterJastrow, "backflow": BackflowDeterminant, "vandermonde": VandermondeAnsatz}
LABELS = {"slater_jastrow": "Slater-Jastrow", "backflow": "Backflow (FermiNet)", "vandermonde": "Vandermonde"}


def check_ansatze(names) -> None:
    if not names or any(name not in ANSATZE for name in names):
        raise ValueError(f"ansatze must be a non-empty subset of {sorted(ANSATZE)}, got {names!r}")


def point_seed(seed: int, *parts) -> int:
    """A seed for one grid point, derived from the study's seed and the point's name."""
    return seed * 1_000_003 + zlib.crc32("/".join(map(str, parts)).encode()) % 1_000_003


def train_and_measure(hamiltonian, ansatz: str, ansatz_options: dict, config, seed: int, checkpoint,
                      resume: bool, desc: str, prepare=None) -> dict:
    """Optimise ``ANSATZE[ansatz]`` on ``hamiltonian`` with the VMC settings of ``config``
    (``walkers``, ``steps``, ``metropolis_steps``, ``burn_in``, ``optimizer``, ``lr``,
    ``eval_steps``, ``eval_thin``, ``dtype``, ``device``); return the history and the estimate
    as NumPy arrays and floats (the time per step is the median over the steps of sampling plus
    local energies plus gradient).

    ``prepare(wavefunction) -> dict`` (optional, e.g. a pretraining) runs on the new ansatz before
    VMC; its entries join the result, with ``prepare_cpu_seconds``. It is skipped when a VMC
    checkpoint is resumed (the checkpoint holds the prepared and trained parameters); its entries
    are then missing."""
    device, dtype = resolve_device(config.device), resolve_dtype(config.dtype)
    wavefunction = ANSATZE[ansatz].from_hamiltonian(hamiltonian, generator=seed, dtype=dtype,
                                                    **ansatz_options).to(device)
    prepared = {}
    if prepare is not None and not (resume and checkpoint is not None and Path(checkpoint).exists()):
        cpu = time.process_time()
        prepared = dict(prepare(wavefunction))
        prepared["prepare_cpu_seconds"] = time.process_time() - cpu
    vmc = VMC(hamiltonian, wavefunction, n_walkers=config.walkers, optimizer=config.optimizer, lr=config.lr,
              steps_per_iteration=config.metropolis_steps, burn_in=config.burn_in, generator=seed)
    history = vmc.run(config.steps, checkpoint=checkpoint, resume=resume, checkpoint_every=25, desc=desc)
    estimate = vmc.estimate_energy(config.eval_steps, thin=config.eval_thin)
    return {
        "energy_history": np.array([row["energy"] for row in history]),
        "variance_history": np.array([row["variance"] for row in history]),
        "energy": estimate.mean,
        "standard_error": estimate.standard_error,
        "variance": estimate.variance,
        "autocorrelation_time": estimate.autocorrelation_time,
        "acceptance": float(history[-1]["acceptance"]) if history else float("nan"),
        "n_parameters": sum(p.numel() for p in wavefunction.parameters()),
        "seconds_per_step": float(np.median([row["seconds"] for row in history])),
        "cpu_seconds_per_step": float(np.median([row["cpu_seconds"] for row in history])),
        **prepared,
    }


def running_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each step (shorter at the start)."""
    values = np.asarray(values, dtype=float)
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    index = np.arange(1, len(values) + 1)
    start = np.maximum(0, index - window)
    return (cumulative[index] - cumulative[start]) / (index - start)
