"""Helpers shared by the hjb studies: solver construction, error measures, CPU timing, and the
value-gradient training on Pontryagin BVP data of the control studies."""

from __future__ import annotations

import itertools
import math
import os
import time
from pathlib import Path

import torch

from dlpde.shared.checks import check_bool, check_choice, check_positive_int
from dlpde.shared.runs import CorruptRunFolderError, atomic_write_json, read_json_file

from .._bvp import pontryagin_data_source
from .._control import lqr_warm_start, simulate_closed_loop, value_feedback
from .._networks import DGMNetwork, ValueNetwork
from .._problems import HJProblem
from .._solvers import CharacteristicSolver, DGMSolver, ValueGradientSolver

METHODS = ("dgm", "characteristic", "value_gradient")
LABELS = {"dgm": "DGM", "characteristic": "characteristic", "value_gradient": "value-gradient"}


def check_dims_and_steps(dims, steps=None) -> None:
    """Config validation shared by the studies: positive dimensions and, when given, one positive
    step count per dimension."""
    if not isinstance(dims, tuple) or not dims:
        raise ValueError(f"dims must be a non-empty tuple of positive ints, got {dims!r}")
    for d in dims:
        check_positive_int(d, "each of dims")
    if steps is not None:
        if not isinstance(steps, tuple) or len(steps) != len(dims):
            raise ValueError(f"steps must hold one positive int per entry of dims {dims}, got {steps!r}")
        for s in steps:
            check_positive_int(s, "each of steps")


def check_subset(values, name: str, allowed) -> None:
    """``values``: a non-empty tuple of distinct entries of ``allowed`` (methods, problems, ...)."""
    if not isinstance(values, tuple) or not values:
        options = ", ".join(map(repr, allowed))
        raise ValueError(f"{name} must be a non-empty tuple of {options}, got {values!r}")
    for value in values:
        check_choice(value, f"each of {name}", allowed)
    if len(set(values)) != len(values):
        raise ValueError(f"{name} must not repeat entries, got {values!r}")


def check_positive_ints(config, names) -> None:
    """Each named field of ``config`` is an integer >= 1 (sizes, counts, steps)."""
    for name in names:
        check_positive_int(getattr(config, name), name)


def relative_l2(estimate: torch.Tensor, exact: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """``||estimate - exact|| / ||exact||`` over the rows in ``mask`` (NaN when ``mask`` is empty)."""
    if mask is not None:
        estimate, exact = estimate[mask], exact[mask]
    if exact.numel() == 0:
        return float("nan")
    return float(
        torch.linalg.vector_norm(estimate - exact) / torch.linalg.vector_norm(exact).clamp_min(1e-300)
    )


def error_table(
    value: torch.Tensor,
    gradient: torch.Tensor,
    problem: HJProblem,
    x: torch.Tensor,
    t: torch.Tensor,
    band: float,
) -> dict:
    """Relative L2 errors of ``u`` and ``grad u`` on all test points, on those within ``band`` of a
    kink (``problem.kink_distance``) and on the others."""
    exact_value, exact_gradient = problem.exact_value(x, t), problem.exact_gradient(x, t)
    near = (
        problem.kink_distance(x, t) < band
        if problem.kink_distance is not None
        else torch.zeros_like(t, dtype=torch.bool)
    )
    out = {"near_fraction": float(near.double().mean())}
    for name, estimate, exact in (("u", value, exact_value), ("grad", gradient, exact_gradient)):
        out[f"{name}_all"] = relative_l2(estimate, exact)
        out[f"{name}_near"] = relative_l2(estimate, exact, near)
        out[f"{name}_away"] = relative_l2(estimate, exact, ~near)
    return out


def make_solver(
    method: str,
    problem: HJProblem,
    *,
    width: int,
    layers: int,
    batch_size: int,
    seed: int,
    device,
    nodes: int = 4,
    hopf_lax_weight: float = 0.0,
    straight: bool = False,
    data_source=None,
    data_points: int = 1024,
    rounds: int = 2,
    data_starts: int = 8,
    bvp_options: dict | None = None,
):
    """The solver of ``method`` with a ``DGMNetwork`` (the same architecture for every method).

    ``straight=True`` (for state-independent ``H``, whose characteristics are straight lines with
    constant ``p``) integrates characteristics with one exact Euler step per quadrature segment.
    The value-gradient solver uses ``data_source`` if given, else ``pontryagin_data_source`` with
    ``data_starts`` random starts and ``bvp_options``.
    """
    network = DGMNetwork(
        problem.dim, width, layers, radius=problem.radius, horizon=problem.horizon, seed=seed, device=device
    )
    if method == "dgm":
        return DGMSolver(
            problem, network, batch_size=batch_size, initial_batch_size=batch_size, seed=seed, device=device
        )
    if method == "characteristic":
        return CharacteristicSolver(
            problem,
            network,
            batch_size=batch_size,
            initial_batch_size=batch_size,
            nodes=nodes,
            hopf_lax_weight=hopf_lax_weight,
            seed=seed,
            device=device,
            method="euler" if straight else "rk4",
            steps=1 if straight else 8,
        )
    if method == "value_gradient":
        if data_source is None:
            data_source = pontryagin_data_source(
                problem, n_starts=data_starts, along_path=True, seed=seed, **(bvp_options or {})
            )
        return ValueGradientSolver(
            problem,
            data_source,
            network,
            initial_points=data_points,
            batch_size=batch_size,
            rounds=rounds,
            points_per_round=max(1, data_points // 2),
            candidates=4 * data_points,
            seed=seed,
            device=device,
        )
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


class CpuTimer:
    """CPU time (user + system) of this process, the budget measure of the studies.

    ``seconds`` (set on exit) is the time inside the ``with`` block. With ``ledger`` (a file path
    next to the task's checkpoint) it is cumulative across interruptions, like a run's
    ``timing.json``: the total so far is written to the ledger on exit (also on Ctrl-C or an
    error) and by ``callback`` every ``every`` training steps (pass it as ``fit``'s or ``train``'s
    ``callback``: the checkpoints are written at the same steps), and with ``resume=True`` an
    existing ledger is read back on entry. After a SIGKILL the killed attempt counts up to its last
    checkpoint (the work after it is redone, and counted, by the resumed attempt).
    """

    def __init__(self, ledger: str | os.PathLike | None = None, resume: bool = False, every: int = 100):
        if ledger is not None and not isinstance(ledger, (str, os.PathLike)):
            raise TypeError(f"ledger must be a path or None, got {type(ledger).__name__}")
        self.ledger = None if ledger is None else Path(ledger)
        self.resume = check_bool(resume, "resume")
        self.every = check_positive_int(every, "every")
        self.previous = 0.0

    def __enter__(self):
        self.previous = 0.0
        if self.ledger is not None and self.resume and self.ledger.exists():
            saved = read_json_file(self.ledger, "CPU-time ledger")
            value = saved.get("cpu_seconds") if isinstance(saved, dict) else None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise CorruptRunFolderError(
                    f"cannot read CPU-time ledger {self.ledger}: no non-negative cpu_seconds; "
                    "delete it to start counting again"
                )
            self.previous = float(value)
        self.start = time.process_time()
        return self

    def total(self) -> float:
        """Seconds so far: earlier attempts plus this one."""
        return self.previous + time.process_time() - self.start

    def _save(self, seconds: float) -> None:
        atomic_write_json({"cpu_seconds": seconds}, self.ledger)

    def callback(self, step: int, record: dict) -> None:
        """A training callback that writes the ledger at the checkpoint steps (never stops)."""
        if self.ledger is not None and (step + 1) % self.every == 0:
            self._save(self.total())

    def __exit__(self, *exc):
        self.seconds = self.total()
        if self.ledger is not None:
            self._save(self.seconds)


def train_on_bvp_data(config, run_dir, problem, hj, device, bvp_options: dict, *, state_dim: int,
                      full_horizon: bool = False, bvp_batch: int | None = None):
    """Value-gradient regression on Pontryagin BVP data with adaptive rounds (Nakamura-Zimmerer,
    Gong and Kang): the training of ``hjb.control`` and ``hjb.burgers``.

    Every round's boundary-value solves are cached in the run folder (reused by ``--resume``),
    warm-started from the LQR closed loop; ``full_horizon`` starts every trajectory at the full
    horizon ``config.horizon`` (its nodes then cover every time to go); ``bvp_batch`` solves the
    rows in chunks (each row's dense Newton system grows with the state dimension). ``config``
    supplies ``segments``, ``trajectories``, ``rounds``, ``points_per_round``, ``candidates``,
    ``width``, ``depth``, ``batch_size``, ``gradient_weight``, ``steps``, ``lr`` and ``seed``.
    Returns ``(solver, history, stats)`` with CPU seconds cumulative over resumes.
    """
    warm = lqr_warm_start(problem, config.segments)
    source = pontryagin_data_source(hj, n_starts=0, along_path=True, warm_start=warm, seed=config.seed,
                                    **bvp_options)
    calls, log = itertools.count(), []

    def cached_source(x, t):
        if full_horizon:
            t = torch.full_like(t, config.horizon)

        def compute():
            chunk = bvp_batch or x.shape[0]
            with CpuTimer() as timer:
                parts = [source(x[k:k + chunk], t[k:k + chunk]) for k in range(0, x.shape[0], chunk)]
            data = {key: torch.cat([part[key] for part in parts]) for key in parts[0]}
            kept = sum(entry["kept"] for entry in source.log[-len(parts):])
            return data, {"asked": int(x.shape[0]), "kept": int(kept), "cpu_seconds": timer.seconds}

        data, entry = run_dir.cached(f"bvp_data_{next(calls)}", compute)
        log.append(entry)
        return data

    network = ValueNetwork(state_dim, config.width, config.depth, radius=hj.radius, horizon=hj.horizon,
                           seed=config.seed, device=device)
    solver = ValueGradientSolver(
        hj, cached_source, network, initial_points=config.trajectories, batch_size=config.batch_size,
        gradient_weight=config.gradient_weight, rounds=config.rounds,
        points_per_round=config.points_per_round, candidates=config.candidates, seed=config.seed,
        device=device,
    )
    checkpoint = run_dir.checkpoint_path("value_gradient")
    with CpuTimer(f"{checkpoint}.cpu.json", run_dir.resume) as timer:  # cumulative over resumes
        history = solver.fit(config.steps, lr=config.lr, checkpoint=checkpoint, resume=run_dir.resume,
                             log_every=max(1, config.steps // 100), callback=timer.callback,
                             desc="value-gradient")
    return solver, history, {
        "cpu_seconds": timer.seconds,
        "data_cpu_seconds": float(sum(entry.get("cpu_seconds", 0.0) for entry in log)),
        "log": log,
        "data_points": int(solver.data["x"].shape[0]),
    }


def closed_loop_against_lqr(problem, solver, lqr, starts: torch.Tensor, optimal: torch.Tensor, steps: int):
    """Closed loops of the learned value feedback and of LQR of the linearisation from ``starts``,
    each cost over the boundary-value ``optimal`` cost of its start. Returns a dict: both
    trajectories (``learned``, ``lqr``), the cost ratios (``learned_ratio``, ``lqr_ratio``), their
    ``metrics`` and a Markdown ``table``."""
    learned = simulate_closed_loop(problem, value_feedback(problem, solver.gradient), starts, steps=steps)
    linear = simulate_closed_loop(problem, value_feedback(problem, lqr.exact_gradient), starts, steps=steps)
    nn_ratio = (learned["cost"] / optimal).numpy()
    lqr_ratio = (linear["cost"] / optimal).numpy()
    metrics = {
        "learned_cost_over_optimal": {"mean": float(nn_ratio.mean()), "max": float(nn_ratio.max())},
        "lqr_cost_over_optimal": {"mean": float(lqr_ratio.mean()), "max": float(lqr_ratio.max())},
        "learned_beats_lqr_fraction": float((nn_ratio < lqr_ratio).mean()),
        "final_state_norm": {
            "learned": float(learned["states"][-1].norm(dim=-1).max()),
            "lqr": float(linear["states"][-1].norm(dim=-1).max()),
        },
    }
    table = "\n".join([
        "| feedback | mean cost / optimum | worst cost / optimum |",
        "|---|---|---|",
        f"| learned value function | {nn_ratio.mean():.4f} | {nn_ratio.max():.4f} |",
        f"| LQR of the linearisation | {lqr_ratio.mean():.4f} | {lqr_ratio.max():.4f} |",
    ])
    return {"learned": learned, "lqr": linear, "learned_ratio": nn_ratio, "lqr_ratio": lqr_ratio,
            "metrics": metrics, "table": table}


def plot_costs_and_losses(cost_axis, loss_axis, comparison: dict, history, xlabel: str) -> None:
    """The two panels the control studies share: sorted closed-loop cost over the optimum (learned
    and LQR) and the training losses of the value-gradient regression."""
    import numpy as np

    cost_axis.plot(np.sort(comparison["lqr_ratio"]), "o-", label="LQR")
    cost_axis.plot(np.sort(comparison["learned_ratio"]), "o-", label="learned")
    cost_axis.axhline(1.0, color="k", lw=0.8)
    cost_axis.set(xlabel=xlabel, ylabel="closed-loop cost / optimum", title="cost against optimum")
    cost_axis.legend(fontsize=7)
    steps = [row["step"] for row in history]
    loss_axis.plot(steps, [row["value"] for row in history], label="value loss")
    loss_axis.plot(steps, [row["gradient"] for row in history], label="gradient loss")
    loss_axis.set(yscale="log", xlabel="step", title="training (scaled losses)")
    loss_axis.legend(fontsize=7)
