"""hjb.viscosity: which solution does each method converge to when the PDE has several?

``u_t + |p|^2/2 = 0`` with ``g = |x|`` (viscosity solution: the rarefaction fan ``|x|^2/(2t)`` for
``|x| < t``, ``|x| - t/2`` outside) and ``g = 0`` (``u = 0``) also has Lipschitz functions that solve
it almost everywhere with the right initial data: ``|x| - t/2`` and ``min(0, |x| - t/2)``. The DGM
loss vanishes on them; the characteristic loss does not. Each method is trained from two starts:
the default initialisation, and a network first fitted to the spurious solution (does the loss
move it away?; ``pretrain_steps`` of regression at ``pretrain_lr``: 2000 steps at 1e-2 leave it
0.07-0.09 from the spurious solution in d = 2, where 500 at 2e-3 left 0.6). Reported: the
relative L2 distance of the result to each candidate, and the loss
of each method evaluated on each candidate itself.

Full preset (width 64, 3 layers, 3000 steps at lr 1e-2; 1210 s wall, 2027 s CPU on 2 workers),
distance to the viscosity solution, default / spurious start: g = |x|, characteristic + Hopf-Lax
0.0097 / 0.017 (d = 1) and 0.044 / 0.037 (d = 2); characteristic alone 0.020 / 0.039 and
0.074 / 0.097; DGM 0.089 / 0.100 and 0.36 / 0.35. g = 0: every method within 0.002. Every run ends
about 1.0 from the spurious solution.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from dlpde.shared import make_generator, new_figure, resolve_device, train
from dlpde.shared.checks import check_int, check_positive
from dlpde.shared.studies import Study

from .._problems import kink_problem
from ._common import (
    CpuTimer,
    check_dims_and_steps,
    check_positive_ints,
    check_subset,
    make_solver,
    relative_l2,
)

METHODS = ("dgm", "characteristic", "characteristic_hopf_lax")
LABELS = {
    "dgm": "DGM",
    "characteristic": "characteristic",
    "characteristic_hopf_lax": "characteristic + Hopf-Lax",
}
PROBLEMS = ("norm", "zero")
STARTS = ("default", "spurious")


@dataclasses.dataclass(frozen=True)
class Config:
    dims: tuple[int, ...] = (1, 2)
    problems: tuple[str, ...] = PROBLEMS
    methods: tuple[str, ...] = METHODS
    starts: tuple[str, ...] = STARTS
    steps: int = 1500
    pretrain_steps: int = 2000
    pretrain_lr: float = 1e-2
    width: int = 32
    layers: int = 2
    batch_size: int = 256
    lr: float = 2e-3
    nodes: int = 4
    hopf_lax_weight: float = 10.0
    test_points: int = 10000
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        check_dims_and_steps(self.dims)
        check_subset(self.problems, "problems", PROBLEMS)
        check_subset(self.methods, "methods", METHODS)
        check_subset(self.starts, "starts", STARTS)
        check_positive_ints(self, ("steps", "width", "layers", "batch_size", "nodes", "test_points"))
        # the spurious start is the network fitted to the spurious solution: it needs pretraining
        # (without it, it would be the default start under another name)
        check_int(self.pretrain_steps, "pretrain_steps", minimum=1 if "spurious" in self.starts else 0)
        check_positive(self.lr, "lr")
        check_positive(self.pretrain_lr, "pretrain_lr")
        check_positive(self.hopf_lax_weight, "hopf_lax_weight")


class _Candidate(torch.nn.Module):
    """A fixed function ``(x, t) -> (B,)`` as a module (one unused parameter), so that a solver's
    loss can be evaluated on it."""

    def __init__(self, function):
        super().__init__()
        self.function = function
        self.unused = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t):
        # the zero terms keep a candidate that ignores (x, t) differentiable by autograd
        return self.function(x.double(), t.double()).to(x) + 0.0 * (x.sum(-1) + t + self.unused)


def _solver(method, problem, config, seed, device, network=None):
    kind = "characteristic" if method.startswith("characteristic") else method
    solver = make_solver(
        kind,
        problem,
        width=config.width,
        layers=config.layers,
        batch_size=config.batch_size,
        seed=seed,
        device=device,
        nodes=config.nodes,
        straight=True,
        hopf_lax_weight=config.hopf_lax_weight if method == "characteristic_hopf_lax" else 0.0,
    )
    if network is not None:
        solver.network = network
    return solver


def _candidate_losses(method, problem, config, device):
    """The method's loss (mean over 8 batches) on the viscosity solution and on the spurious one."""
    out = {}
    candidates = {"viscosity": problem.exact_value, **problem.spurious_solutions}
    for name, function in candidates.items():
        solver = _solver(method, problem, config, 12345, device, network=_Candidate(function).to(device))
        with torch.enable_grad():
            out[name] = float(np.mean([float(solver.loss(step)[0].detach()) for step in range(8)]))
    return out


def fit_point(task) -> dict:
    """One (problem, dimension, method, start): returns distances to the candidates."""
    config, name, dim, method, start, checkpoint, resume = task
    device = resolve_device(config.device)
    problem = kink_problem(name, dim)
    ((spurious_name, spurious),) = problem.spurious_solutions.items()
    seed = config.seed * 1000 + 100 * PROBLEMS.index(name) + 10 * dim + METHODS.index(method)
    solver = _solver(method, problem, config, seed, device)
    x, t = problem.sample(config.test_points, make_generator(20_000 + dim))
    exact, other = problem.exact_value(x, t), spurious(x, t)
    scale = torch.linalg.vector_norm(exact - other)

    def distances():
        value = solver.value(x, t)
        return {"viscosity": float(torch.linalg.vector_norm(value - exact) / scale),
                "spurious": float(torch.linalg.vector_norm(value - other) / scale)}

    with CpuTimer(f"{checkpoint}.cpu.json", resume) as timer:  # cumulative over resumes
        if start == "spurious" and config.pretrain_steps:
            generator = make_generator(seed + 7)

            def regression(step):
                x, t = problem.sample(config.batch_size, generator, torch.float32, device)
                return (solver.network(x, t) - spurious(x.double(), t.double()).float()).square().mean()

            train(
                solver.network,
                regression,
                config.pretrain_steps,
                lr=config.pretrain_lr,
                schedule="cosine",
                checkpoint=f"{checkpoint}.pretrain",
                resume=resume,
                generators=[generator],
                callback=timer.callback,
                desc=f"fit {spurious_name}",
            )
        start_distance = distances()
        history = solver.fit(
            config.steps,
            lr=config.lr,
            checkpoint=checkpoint,
            resume=resume,
            log_every=max(1, config.steps // 50),
            callback=timer.callback,
            desc=f"viscosity {name} d={dim} {method}",
        )
    value = solver.value(x, t)
    out = {
        "distance": distances(),
        "start_distance": start_distance,
        "cpu_seconds": timer.seconds,
        "history": history,
        "relative_error": relative_l2(value, problem.exact_value(x, t)),
    }
    if dim == 1:
        grid = torch.linspace(-1, 1, 201, dtype=torch.float64)[:, None]
        out["profile"] = solver.value(grid, problem.horizon).numpy()
    return out


def _figure(config, results, run_dir):
    methods, starts = config.methods, config.starts
    fig, axes = new_figure(len(config.problems), len(methods), width=3.2, height=2.6)
    axes = np.atleast_2d(axes).reshape(len(config.problems), len(methods))
    grid = torch.linspace(-1, 1, 201, dtype=torch.float64)[:, None]
    for row, name in enumerate(config.problems):
        problem = kink_problem(name, 1)
        ((spurious_name, spurious),) = problem.spurious_solutions.items()
        horizon = torch.full((201,), problem.horizon, dtype=torch.float64)
        for col, method in enumerate(methods):
            ax = axes[row, col]
            ax.plot(grid[:, 0], problem.exact_value(grid, horizon), "k-", lw=2, label="viscosity")
            ax.plot(grid[:, 0], spurious(grid, horizon), "k:", lw=2, label=spurious_name)
            for start in starts:
                ax.plot(grid[:, 0], results[(name, 1, method, start)]["profile"], "--", label=f"from {start}")
            ax.set(title=f"g = {'|x|' if name == 'norm' else '0'}: {LABELS[method]}", xlabel="x")
            if row == 0 and col == 0:
                ax.legend(fontsize=6)
    run_dir.save_figure(
        fig,
        "viscosity_profiles",
        "d = 1, t = T: the learned u from each start against the "
        "viscosity solution (solid) and the zero-residual spurious solution (dotted)",
    )


def run(config: Config, run_dir) -> dict:
    device = resolve_device(config.device)
    tasks, keys = [], []
    for name in config.problems:
        for dim in config.dims:
            for method in config.methods:
                for start in config.starts:
                    key = f"{name}_d{dim}_{method}_{start}"
                    tasks.append(
                        (config, name, dim, method, start, str(run_dir.checkpoint_path(key)), run_dir.resume)
                    )
                    keys.append(key)
    results = dict(
        zip(
            [(t[1], t[2], t[3], t[4]) for t in tasks],
            run_dir.map(fit_point, tasks, keys=keys, desc="hjb.viscosity"),
        )
    )
    losses = run_dir.cached(
        "candidate_losses",
        lambda: {
            f"{name}_{method}": _candidate_losses(method, kink_problem(name, 1), config, device)
            for name in config.problems
            for method in config.methods
        },
    )
    rows, metrics = [], {}
    for (name, dim, method, start), result in results.items():
        distance = result["distance"]
        closer = "viscosity" if distance["viscosity"] < distance["spurious"] else "spurious"
        rows.append(
            {
                "problem": name,
                "d": dim,
                "method": method,
                "start": start,
                "distance_to_viscosity": distance["viscosity"],
                "distance_to_spurious": distance["spurious"],
                "closer_to": closer,
                "start_to_viscosity": result["start_distance"]["viscosity"],
                "start_to_spurious": result["start_distance"]["spurious"],
                "cpu_seconds": result["cpu_seconds"],
            }
        )
        metrics[f"{name}.d{dim}.{method}.{start}"] = {
            "to_viscosity": distance["viscosity"],
            "to_spurious": distance["spurious"],
        }
    run_dir.write_csv("distances.csv", rows)
    lines = [
        "| g | d | method | start | at start: to viscosity / to spurious | after training: to viscosity "
        "| to spurious | closer to |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {'abs(x)' if r['problem'] == 'norm' else '0'} | {r['d']} | {LABELS[r['method']]} | "
            f"{r['start']} | {r['start_to_viscosity']:.3f} / {r['start_to_spurious']:.3f} | "
            f"{r['distance_to_viscosity']:.3f} | {r['distance_to_spurious']:.3f} | {r['closer_to']} |"
        )
    run_dir.add_section(
        "Which solution each method converges to",
        "\n".join(lines)
        + (
            "\n\nDistances are ||u - candidate|| / ||viscosity - spurious|| over random test points in "
            "[-1, 1]^d x (0, 1] (0: equal to the candidate; the two candidates are 1 apart)."
        ),
    )
    loss_lines = [
        "| g | method | loss on the viscosity solution | loss on the spurious solution |",
        "|---|---|---|---|",
    ]
    for key, value in losses.items():
        name, method = key.split("_", 1)
        (spurious_name,) = kink_problem(name, 1).spurious_solutions
        loss_lines.append(
            f"| {'abs(x)' if name == 'norm' else '0'} | {LABELS[method]} | "
            f"{value['viscosity']:.2e} | {value[spurious_name]:.2e} |"
        )
        metrics[f"loss_on_candidates.{key}"] = value
    run_dir.add_section("Each loss evaluated on the two candidates (d = 1)", "\n".join(loss_lines))
    if 1 in config.dims:
        _figure(config, results, run_dir)
    return metrics


STUDY = Study(
    name="hjb.viscosity",
    description="g = |x| and g = 0 with H = |p|^2/2: does DGM / the characteristic loss pick the viscosity "
    "solution or a zero-residual spurious one?",
    config=Config,
    presets={
        "smoke": Config(
            dims=(1,),
            methods=("dgm", "characteristic"),
            starts=("spurious",),
            steps=3,
            pretrain_steps=3,
            width=8,
            layers=1,
            batch_size=32,
            test_points=500,
        ),
        "quick": Config(dims=(1,), steps=300, pretrain_steps=200, width=16, batch_size=128, test_points=4000),
        "full": Config(steps=3000, width=64, layers=3, lr=1e-2),
        "paper": Config(
            dims=(1, 2, 10), steps=10000, pretrain_steps=3000, width=64, layers=3, batch_size=1024
        ),
    },
    run=run,
    citations=("aim2019dlpde", "crandall1983viscosity", "evans2010pde", "sirignano2018dgm"),
)
