"""hjb.lqr: the linear-quadratic regulator in d = 10 and 100 against the Riccati solution.

``u_t + H(x, grad u) = 0`` with the time-to-go LQR Hamiltonian
``H = -p^T A x - x^T Q x/2 + p^T B R^-1 B^T p/2`` and ``g = x^T P0 x/2``; the exact solution is
``u = x^T P(t) x/2`` with ``P`` from the Riccati equation (scipy). The characteristics are curved
(``H`` depends on ``x``) and never cross. DGM, the characteristic-regularised solver and
value-gradient regression on data from forward characteristics are compared by their relative
L2 errors of ``u`` and ``grad u``.
"""

from __future__ import annotations

import dataclasses

import torch

from dlpde.shared import make_generator, new_figure, resolve_device
from dlpde.shared.checks import check_positive, check_probability
from dlpde.shared.studies import Study

from .._characteristics import characteristic_data_source
from .._problems import lqr_problem
from ._common import (
    LABELS,
    METHODS,
    CpuTimer,
    check_dims_and_steps,
    check_positive_ints,
    check_subset,
    error_table,
    make_solver,
)


@dataclasses.dataclass(frozen=True)
class Config:
    dims: tuple[int, ...] = (10, 100)
    steps: tuple[int, ...] = (2000, 1500)
    methods: tuple[str, ...] = METHODS
    controls_fraction: float = 0.5
    horizon: float = 1.0
    width: int = 50
    layers: int = 3
    batch_size: int = 256
    lr: float = 3e-3
    nodes: int = 4
    data_points: int = 512
    test_points: int = 10000
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        check_dims_and_steps(self.dims, self.steps)
        check_subset(self.methods, "methods", METHODS)
        check_probability(self.controls_fraction, "controls_fraction", open_low=True)
        check_positive_ints(self, ("width", "layers", "batch_size", "nodes", "data_points", "test_points"))
        check_positive(self.lr, "lr")
        check_positive(self.horizon, "horizon")


def make_problem(dim: int, controls_fraction: float = 0.5, horizon: float = 1.0, seed: int = 0):
    """A random LQR problem: ``A`` with entries ``N(0, 1/d)`` (spectral radius about 1), ``B`` of
    ``m = ceil(fraction d)`` columns with entries ``N(0, 1/d)``, ``Q = I``, ``R = I``, ``P0 = I``."""
    generator = make_generator(seed + dim)
    controls = max(1, round(controls_fraction * dim))
    a = torch.randn(dim, dim, generator=generator, dtype=torch.float64) / dim**0.5
    b = torch.randn(dim, controls, generator=generator, dtype=torch.float64) / dim**0.5
    eye = torch.eye(dim, dtype=torch.float64)
    return lqr_problem(a, b, eye, torch.eye(controls, dtype=torch.float64), eye, horizon=horizon)


def fit_point(task) -> dict:
    """One (dimension, method) point: train, then measure errors (a ``RunDir.map`` task)."""
    config, dim, method, steps, checkpoint, resume = task
    device = resolve_device(config.device)
    problem = make_problem(dim, config.controls_fraction, config.horizon, config.seed)
    seed = config.seed * 1000 + dim + METHODS.index(method)
    source = (
        characteristic_data_source(problem, nodes=11, steps=40, seed=seed)
        if method == "value_gradient"
        else None
    )
    solver = make_solver(
        method,
        problem,
        width=config.width,
        layers=config.layers,
        batch_size=config.batch_size,
        seed=seed,
        device=device,
        nodes=config.nodes,
        data_source=source,
        data_points=config.data_points,
        rounds=1,
    )
    with CpuTimer(f"{checkpoint}.cpu.json", resume) as timer:  # cumulative over resumes
        history = solver.fit(
            steps,
            lr=config.lr,
            checkpoint=checkpoint,
            resume=resume,
            log_every=max(1, steps // 50),
            callback=timer.callback,
            desc=f"lqr d={dim} {method}",
        )
    x, t = problem.sample(config.test_points, make_generator(30_000 + dim))
    errors = error_table(solver.value(x, t), solver.gradient(x, t), problem, x, t, band=1.0)
    times = torch.linspace(0, config.horizon, 21, dtype=torch.float64)
    probe = problem.sample(256, make_generator(31_000 + dim), initial=True)
    profile = [relative_l2_at(solver, problem, probe, float(s)) for s in times]
    return {"errors": errors, "cpu_seconds": timer.seconds, "history": history, "profile": profile}


def relative_l2_at(solver, problem, x, time: float) -> float:
    exact = problem.exact_value(x, time)
    return float(torch.linalg.vector_norm(solver.value(x, time) - exact) / torch.linalg.vector_norm(exact))


def run(config: Config, run_dir) -> dict:
    tasks, keys = [], []
    for dim, steps in zip(config.dims, config.steps):
        for method in config.methods:
            key = f"d{dim}_{method}"
            tasks.append((config, dim, method, steps, str(run_dir.checkpoint_path(key)), run_dir.resume))
            keys.append(key)
    results = run_dir.map(fit_point, tasks, keys=keys, desc="hjb.lqr")
    rows, metrics = [], {}
    lines = ["| d | method | rel. L2 error of u | rel. L2 error of grad u | CPU s |", "|---|---|---|---|---|"]
    for (_, dim, method, *_), result in zip(tasks, results):
        e = result["errors"]
        rows.append(
            {
                "d": dim,
                "method": method,
                "u": e["u_all"],
                "grad": e["grad_all"],
                "cpu_seconds": result["cpu_seconds"],
            }
        )
        lines.append(
            f"| {dim} | {LABELS[method]} | {e['u_all']:.2e} | {e['grad_all']:.2e} | "
            f"{result['cpu_seconds']:.0f} |"
        )
        metrics[f"d{dim}.{method}"] = {
            "u": e["u_all"],
            "grad": e["grad_all"],
            "cpu_seconds": result["cpu_seconds"],
        }
    for key, result in zip(keys, results):
        run_dir.write_csv(f"history_{key}.csv", result["history"])
    run_dir.write_csv("errors.csv", rows)
    run_dir.add_section(
        "Relative L2 errors against the Riccati solution",
        "\n".join(lines)
        + (
            f"\n\n{config.test_points} test points uniform in [-1, 1]^d x (0, {config.horizon}]; "
            f"m = {config.controls_fraction:g} d controls; value-gradient data from forward characteristics "
            f"(11 points on each of {config.data_points} paths)."
        ),
    )
    fig, axes = new_figure(1, len(config.dims), width=3.6, height=2.8)
    axes = axes if len(config.dims) > 1 else [axes]
    times = torch.linspace(0, config.horizon, 21).numpy()
    for ax, dim in zip(axes, config.dims):
        for (_, d, method, *_), result in zip(tasks, results):
            if d == dim:
                ax.plot(times, result["profile"], label=LABELS[method])
        ax.set(yscale="log", xlabel="t", title=f"d = {dim}: relative error of u(., t)")
    axes[0].legend(fontsize=7)
    run_dir.save_figure(
        fig,
        "lqr_error_in_time",
        "Relative L2 error of u(., t) on 256 fixed states against the Riccati solution, as a function of t",
    )
    return metrics


STUDY = Study(
    name="hjb.lqr",
    description="LQR in d = 10 and 100: DGM, characteristic-regularised and value-gradient solvers against "
    "the Riccati solution.",
    config=Config,
    presets={
        "smoke": Config(
            dims=(3,), steps=(3,), width=8, layers=1, batch_size=32, data_points=16, test_points=500
        ),
        "quick": Config(
            dims=(10,), steps=(1200,), width=32, layers=2, batch_size=128, data_points=256, test_points=4000
        ),
        "full": Config(),
        "paper": Config(
            dims=(10, 100, 1000),
            steps=(20000, 20000, 20000),
            width=256,
            batch_size=2048,
            data_points=8192,
            test_points=50000,
        ),
    },
    run=run,
    citations=("aim2019dlpde", "sirignano2018dgm", "nakamurazimmerer2021adaptive", "evans2010pde"),
)
