"""meanfield.two_layer: finite two-layer networks against their mean-field limit.

Mei, Montanari & Nguyen's isotropic Gaussian problem (``y = +-1``, ``x | y ~ N(0, (1 +- Delta)^2
I_d)``, second layer fixed to 1). The activation is the Gaussian well
``sigma(t) = offset - amplitude exp(-t^2 / 2 width^2)``, for which the population risk of a finite
network is exact (O(n^2) pair sums), so the particles follow the deterministic gradient flow of
the population risk and the only gap to the limit is the number of particles. The limit is the
radially symmetric 1-D conservation law in ``r = |w|`` (exact for the finite ``d`` used: the
kernel keeps the Mehler terms of ``d``), solved by the Lagrangian Gauss-Hermite scheme with the
same integrator and step as the particles. Measured:

- the population risk of networks of ``n`` particles against time beside the 1-D curve;
- the histogram of ``|w_i|`` at ``n = max`` against the 1-D density;
- the distance between particles and limit against ``n``: Wasserstein-1 distance of the laws of
  ``|w|``, the synchronous-coupling distance ``mean_i | |w_i(t)| - r(t; |w_i(0)|) |`` (particle and
  1-D characteristic from the same initial radius), and the risk error; slopes by least squares;
- online SGD (fresh mini-batches, step ``sgd_step``, the Euler limit as reference), whose
  distance stalls at the SGD noise level ``O(sqrt(step / batch))`` instead of falling with ``n``;
- the 1-D solver under refinement: time steps (RK4, measured order) and Gauss-Hermite nodes.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Literal

import numpy as np
import torch

from dlpde.shared import (
    Study,
    check_positive,
    check_positive_int,
    check_real,
    make_generator,
    resolve_device,
    resolve_dtype,
)
from dlpde.shared.testing import convergence_order

from .._activations import GaussianWellActivation
from .._dynamics import mean_field_gradient_flow, mean_field_sgd
from .._isotropic import IsotropicGaussianProblem, gaussian_initial_radius, solve_radial_limit
from .._two_layer import TwoLayerMeanField
from ._plots import label_log_axis


@dataclasses.dataclass(frozen=True)
class Config:
    MEANINGFUL_VALUES: typing.ClassVar[dict] = {
        "offset": "any",  # the constant of sigma = offset - amplitude exp(-t^2 / 2 width^2)
        "sgd_seeds": (0,),  # 0: no SGD arm (exact gradient flow only)
    }
    dimension: int = 10
    delta: float = 0.5
    amplitude: float = 3.0
    offset: float = 1.5
    width: float = 1.0
    initial_scale: float = 0.3
    time: float = 4.0
    steps: int = 16
    save_times: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0)
    sizes: tuple[int, ...] = (100, 316, 1000, 3162, 10000)
    seeds_per_size: tuple[int, ...] = (8, 6, 4, 2, 1)
    dtype: Literal["float32", "float64"] = "float32"
    nodes: int = 48
    hermite_terms: int = 64
    sgd_sizes: tuple[int, ...] = (100, 316, 1000)
    sgd_seeds: int = 2
    sgd_batch: int = 100
    sgd_step: float = 0.025
    refinement_steps: tuple[int, ...] = (16, 32, 64, 128, 256)
    refinement_nodes: tuple[int, ...] = (2, 3, 4, 5, 6, 8)
    risk_tolerance: float = 0.01
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        if self.dimension < 2:
            raise ValueError(f"dimension must be >= 2, got {self.dimension}")
        # amplitude > 0: the depth of the well (0 would make the activation constant)
        for name in ("amplitude", "width", "initial_scale", "risk_tolerance"):
            check_positive(getattr(self, name), name)
        check_real(self.offset, "offset")
        check_positive_int(self.hermite_terms, "hermite_terms")
        if not 0 < self.delta < 1:
            raise ValueError(f"delta must lie in (0, 1), got {self.delta}")
        if not (self.time > 0 and self.steps >= 1):
            raise ValueError("time must be positive and steps >= 1")
        times = list(self.save_times)
        if not times or times[0] != 0.0 or abs(times[-1] - self.time) > 1e-12 or times != sorted(times):
            raise ValueError(f"save_times must increase from 0 to time={self.time}, got {self.save_times}")
        if len(self.sizes) < 2 or len(self.seeds_per_size) != len(self.sizes) or min(self.sizes) < 2:
            raise ValueError("sizes needs >= 2 entries >= 2 and seeds_per_size one entry per size")
        if min(self.seeds_per_size) < 1 or self.sgd_seeds < 0:
            raise ValueError("seeds_per_size must be >= 1 and sgd_seeds >= 0")
        if self.sgd_sizes and (min(self.sgd_sizes) < 2 or self.sgd_batch < 1 or not self.sgd_step > 0):
            raise ValueError("sgd_sizes must be >= 2, sgd_batch >= 1 and sgd_step > 0")
        if self.sgd_sizes and any(
            abs(round((b - a) / self.sgd_step) * self.sgd_step - (b - a)) > 1e-9
            for a, b in zip(times, times[1:])
        ):
            raise ValueError(f"the gaps between save_times must be multiples of sgd_step={self.sgd_step}")
        if len(self.refinement_steps) < 2 or len(self.refinement_nodes) < 2:
            raise ValueError("refinement_steps and refinement_nodes need at least two entries each")
        if not 2 <= self.nodes <= 200:
            raise ValueError(f"nodes must lie in [2, 200], got {self.nodes}")


def _problem(config):
    activation = GaussianWellActivation(config.amplitude, config.offset, config.width)
    return IsotropicGaussianProblem(config.dimension, config.delta, activation)


def _model(config, n, init_seed):
    return TwoLayerMeanField(
        n,
        config.dimension,
        _problem(config).activation,
        fixed_output=True,
        bias=False,
        input_scale=config.initial_scale,
        generator=init_seed,
        dtype=config.dtype,
        device=resolve_device(config.device),
    )


def particle_run(task) -> dict:
    """One particle system: ``(config, arm, n, seed)`` with ``arm`` in ``exact`` (gradient flow of
    the exact population risk, RK4) or ``sgd`` (online SGD). Returns radii and exact risks at the
    save times, and the initial radii in float64."""
    config, arm, n, seed = task
    problem = _problem(config)
    init_seed = config.seed * 1_000_003 + 7919 * n + seed
    model = _model(config, n, init_seed)
    initial = model.input_weights.detach().double().norm(dim=1).cpu()
    radii, risks = [], []

    def record():
        with torch.no_grad():
            radii.append(model.input_weights.detach().norm(dim=1).float().cpu())
            risks.append(float(problem.population_risk(model)))

    if arm == "exact":
        path = mean_field_gradient_flow(
            model,
            lambda: problem.population_risk(model),
            config.time,
            steps=config.steps,
            save_at=config.save_times,
        )
        for particles in path:
            model.set_particles(particles)
            record()
    else:
        data = make_generator(init_seed + 17, "cpu")
        record()
        times = config.save_times
        for start, end in zip(times, times[1:]):

            def loss(step):
                x, y = problem.sample(config.sgd_batch, data, model.particles.dtype, model.particles.device)
                return ((y - model(x)) ** 2).mean()

            mean_field_sgd(model, loss, end - start, config.sgd_step, generators=[data], progress=False)
            record()
    return {
        "arm": arm,
        "n": n,
        "seed": seed,
        "initial_radii": initial,
        "radii": torch.stack(radii),
        "risk": torch.tensor(risks, dtype=torch.float64),
    }


def _quantile_radii(config, n):
    """The initial radial law at the quantiles ``(i - 1/2) / n``."""
    p = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    return gaussian_initial_radius(config.dimension, config.initial_scale)(torch.special.ndtri(p))


def _solve(config, method, steps, tracers, nodes=None, save_at=None):
    return solve_radial_limit(
        _problem(config),
        gaussian_initial_radius(config.dimension, config.initial_scale),
        config.time,
        steps,
        nodes=nodes or config.nodes,
        tracers=tracers,
        save_at=config.save_times if save_at is None else save_at,
        method=method,
        hermite_terms=config.hermite_terms,
    )


def _distances(config, results, method, steps):
    """Distances of every particle run to the 1-D solution with the same integrator and step."""
    blocks, offset = [], 0
    for result in results:
        n = result["n"]
        blocks.append((offset, n))
        offset += 2 * n
    tracers = torch.cat([torch.cat([r["initial_radii"], _quantile_radii(config, r["n"])]) for r in results])
    solution = _solve(config, method, steps, tracers)
    rows = []
    for result, (start, n) in zip(results, blocks):
        partner = solution.tracer_radii[:, start : start + n]
        quantiles = solution.tracer_radii[:, start + n : start + 2 * n]
        radii = result["radii"].double()
        coupling = (radii - partner).abs().mean(1)
        wasserstein = (radii.sort(1).values - quantiles).abs().mean(1)
        risk_error = (result["risk"] - solution.risk).abs()
        rows.append(
            {
                "arm": result["arm"],
                "n": n,
                "seed": result["seed"],
                "wasserstein": wasserstein.numpy(),
                "coupling": coupling.numpy(),
                "risk_error": risk_error.numpy(),
                "relative_risk_error": (risk_error / solution.risk).numpy(),
            }
        )
    return solution, rows


def _refinement(config):
    """Errors of the 1-D solver against a finer solution: in the number of RK4 steps and of nodes."""
    probes = _quantile_radii(config, 64)
    steps = sorted(config.refinement_steps)
    reference = _solve(config, "rk4", 4 * steps[-1], probes, save_at=[0.0, config.time])
    step_errors = []
    for s in steps:
        solution = _solve(config, "rk4", s, probes, save_at=[0.0, config.time])
        step_errors.append(float((solution.tracer_radii[-1] - reference.tracer_radii[-1]).abs().max()))
    node_reference = _solve(
        config,
        "rk4",
        steps[0],
        probes,
        nodes=min(4 * max(config.refinement_nodes), 200),
        save_at=[0.0, config.time],
    )
    node_errors = []
    for k in sorted(config.refinement_nodes):
        solution = _solve(config, "rk4", steps[0], probes, nodes=k, save_at=[0.0, config.time])
        node_errors.append(
            max(
                float((solution.tracer_radii[-1] - node_reference.tracer_radii[-1]).abs().max()),
                float((solution.risk - node_reference.risk).abs().max()),
            )
        )
    return steps, step_errors, sorted(config.refinement_nodes), node_errors


def _slope(sizes, values):
    sizes, values = np.asarray(sizes, float), np.asarray(values, float)
    keep = values > 0
    return convergence_order(sizes[keep], values[keep]) if keep.sum() >= 2 else float("nan")


def _summarise(rows, arm, sizes, key, reduce):
    out = []
    for n in sizes:
        values = [reduce(r[key]) for r in rows if r["arm"] == arm and r["n"] == n]
        out.append(float(np.mean(values)) if values else float("nan"))
    return out


def _figures(config, run_dir, rows, results, sgd_rows, refinement):
    from dlpde.shared import new_figure

    times = np.asarray(config.save_times)
    sizes = list(config.sizes)
    fine = _solve(config, "rk4", config.steps * 8, None, save_at=list(np.linspace(0, config.time, 81)))
    fig, axes = new_figure(1, 2, width=4.6, height=3.4)
    axes[0].plot(fine.times, fine.risk, "k-", lw=2, label="1-D limit")
    colors = [f"C{i}" for i in range(len(sizes))]
    for color, n in zip(colors, sizes):
        first = next(r for r in results if r["arm"] == "exact" and r["n"] == n)
        axes[0].plot(times, first["risk"], "o--", color=color, ms=4, label=f"n = {n}")
        errors = np.mean([r["risk_error"] for r in rows if r["arm"] == "exact" and r["n"] == n], 0)
        axes[1].semilogy(times, np.maximum(errors, 1e-12), "o-", color=color, label=f"n = {n}")
    axes[0].set_yscale("log")
    axes[0].set(xlabel="mean-field time t", ylabel="population risk", title="risk: particles vs limit")
    axes[1].set(xlabel="mean-field time t", ylabel="|R_n(t) - R(t)| (mean over seeds)", title="risk error")
    axes[0].legend(fontsize=7)
    run_dir.save_figure(
        fig,
        "risk_vs_time",
        "Population risk of networks of n particles (exact, seed 0) and "
        "of the 1-D radial limit; right: the risk error averaged over seeds.",
    )

    largest = max(sizes)
    first = next(r for r in results if r["arm"] == "exact" and r["n"] == largest)
    z = torch.linspace(-4.5, 4.5, 601, dtype=torch.float64)
    grid = _solve(
        config, "rk4", config.steps, gaussian_initial_radius(config.dimension, config.initial_scale)(z)
    )
    show = [0, 2, 3, len(times) - 1] if len(times) >= 4 else list(range(len(times)))
    fig, axes = new_figure(1, len(show), width=3.2, height=2.8)
    for ax, index in zip(np.atleast_1d(axes), show):
        r = grid.tracer_radii[index].numpy()
        density = np.exp(-0.5 * z.numpy() ** 2) / math.sqrt(2 * math.pi) / np.gradient(r, z.numpy())
        ax.hist(
            first["radii"][index].numpy(),
            bins=60,
            density=True,
            color="C0",
            alpha=0.5,
            label=f"|w_i|, n={largest}",
        )
        ax.plot(r, density, "k-", lw=1.5, label="1-D density")
        ax.set(title=f"t = {times[index]:g}", xlabel="r = |w|")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    run_dir.save_figure(
        fig,
        "radius_histograms",
        f"Histogram of |w_i| (n = {largest}) against the density of the 1-D solution at several times.",
    )

    fig, axes = new_figure(1, 2, width=4.6, height=3.4)
    for key, marker, label in (
        ("wasserstein", "o", "W1 of |w| laws"),
        ("coupling", "s", "coupling distance"),
        ("risk_error", "^", "risk error"),
    ):
        values = _summarise(rows, "exact", sizes, key, np.max)
        axes[0].loglog(sizes, values, marker + "-", label=f"{label} (slope {_slope(sizes, values):.2f})")
    reference = _summarise(rows, "exact", sizes, "wasserstein", np.max)
    axes[0].loglog(sizes, reference[0] * (np.asarray(sizes) / sizes[0]) ** -0.5, "k:", label="n^-1/2")
    axes[0].set(
        xlabel="particles n", ylabel="max over t (mean over seeds)", title="exact population gradient flow"
    )
    label_log_axis(axes[0], sizes)
    axes[0].legend(fontsize=7)
    if sgd_rows:
        sgd_sizes = list(config.sgd_sizes)
        exact = _summarise(rows, "exact", sgd_sizes, "wasserstein", lambda v: v[-1])
        noisy = _summarise(sgd_rows, "sgd", sgd_sizes, "wasserstein", lambda v: v[-1])
        axes[1].loglog(sgd_sizes, exact, "o-", label="gradient flow of the population risk")
        axes[1].loglog(
            sgd_sizes, noisy, "s-", label=f"online SGD, batch {config.sgd_batch}, step {config.sgd_step}"
        )
        axes[1].set(xlabel="particles n", ylabel="W1 of |w| laws at t = T", title="SGD noise floor")
        label_log_axis(axes[1], sgd_sizes)
        axes[1].legend(fontsize=7)
    else:
        axes[1].axis("off")
    run_dir.save_figure(
        fig,
        "distance_vs_n",
        "Distance between particles and the 1-D limit against n "
        "(least-squares slopes in the legend); right: online SGD against the exact flow.",
    )

    steps, step_errors, nodes, node_errors = refinement
    fig, axes = new_figure(1, 2, width=4.0, height=3.2)
    axes[0].loglog(steps, step_errors, "o-", label=f"measured order {-_slope(steps, step_errors):.2f}")
    axes[0].set(xlabel="RK4 steps", ylabel="max radius error at T", title="1-D solver: time")
    label_log_axis(axes[0], steps)
    axes[0].legend(fontsize=7)
    axes[1].semilogy(nodes, np.maximum(node_errors, 1e-17), "o-")
    axes[1].set(xlabel="Gauss-Hermite nodes", ylabel="max error (radii, risk)", title="1-D solver: nodes")
    run_dir.save_figure(
        fig, "radial_solver_refinement", "Refinement of the 1-D solver against a finer solution."
    )


def run(config: Config, run_dir) -> dict:
    resolve_dtype(config.dtype)
    tasks = [
        (config, "exact", n, s) for n, seeds in zip(config.sizes, config.seeds_per_size) for s in range(seeds)
    ]
    tasks += [(config, "sgd", n, s) for n in config.sgd_sizes for s in range(config.sgd_seeds)]
    results = run_dir.map(
        particle_run, tasks, keys=[f"{arm}-n{n}-s{s}" for _, arm, n, s in tasks], desc="particle systems"
    )
    exact = [r for r in results if r["arm"] == "exact"]
    sgd = [r for r in results if r["arm"] == "sgd"]
    solution, rows = run_dir.cached("distances-exact", lambda: _distances(config, exact, "rk4", config.steps))
    sgd_rows = []
    if sgd:
        sgd_steps = int(round(config.time / config.sgd_step))
        _, sgd_rows = run_dir.cached("distances-sgd", lambda: _distances(config, sgd, "euler", sgd_steps))
    refinement = run_dir.cached("refinement", lambda: _refinement(config))

    sizes = list(config.sizes)
    table = {
        key: _summarise(rows, "exact", sizes, key, np.max)
        for key in ("wasserstein", "coupling", "risk_error", "relative_risk_error")
    }
    final = {
        key: _summarise(rows, "exact", sizes, key, lambda v: v[-1]) for key in ("wasserstein", "coupling")
    }
    slopes = {key: _slope(sizes, values) for key, values in table.items()}
    slopes.update({f"{key}_final": _slope(sizes, values) for key, values in final.items()})
    largest_relative = table["relative_risk_error"][-1]
    lines = [
        "| n | seeds | W1 (max t) | coupling (max t) | risk error (max t) | relative risk error |",
        "|---|---|---|---|---|---|",
    ]
    for i, n in enumerate(sizes):
        lines.append(
            f"| {n} | {config.seeds_per_size[i]} | {table['wasserstein'][i]:.3e} | "
            f"{table['coupling'][i]:.3e} | {table['risk_error'][i]:.3e} | "
            f"{table['relative_risk_error'][i]:.3e} |"
        )
    lines.append(
        f"| slope | | {slopes['wasserstein']:.3f} | {slopes['coupling']:.3f} | "
        f"{slopes['risk_error']:.3f} | {slopes['relative_risk_error']:.3f} |"
    )
    run_dir.add_section(
        "Particles against the 1-D limit (exact population gradient flow)",
        "\n".join(lines)
        + (
            f"\n\nBoth use RK4 with {config.steps} steps on t in [0, {config.time}]; distances are the "
            "maximum over the saved times, averaged over seeds. Stated tolerance on the risk curve at "
            f"n = {max(sizes)}: "
            f"relative error <= {config.risk_tolerance:g}; measured {largest_relative:.3e} "
            f"({'met' if largest_relative <= config.risk_tolerance else 'NOT met'})."
        ),
    )
    metrics = {
        "sizes": sizes,
        "wasserstein_max_t": table["wasserstein"],
        "coupling_max_t": table["coupling"],
        "risk_error_max_t": table["risk_error"],
        "slopes": slopes,
        "relative_risk_error_largest_n": largest_relative,
        "risk_tolerance_met": bool(largest_relative <= config.risk_tolerance),
        "limit_risk": solution.risk.tolist(),
    }
    if sgd_rows:
        sgd_sizes = list(config.sgd_sizes)
        noisy = _summarise(sgd_rows, "sgd", sgd_sizes, "wasserstein", lambda v: v[-1])
        exact_same = _summarise(rows, "exact", sgd_sizes, "wasserstein", lambda v: v[-1])
        metrics["sgd"] = {
            "sizes": sgd_sizes,
            "wasserstein_final": noisy,
            "slope": _slope(sgd_sizes, noisy),
            "exact_wasserstein_final": exact_same,
        }
        run_dir.add_section(
            "Online SGD",
            "| n | W1 at T, SGD | W1 at T, exact flow |\n|---|---|---|\n"
            + "\n".join(f"| {n} | {a:.3e} | {b:.3e} |" for n, a, b in zip(sgd_sizes, noisy, exact_same))
            + (
                f"\n\nOnline SGD with batch {config.sgd_batch} and step {config.sgd_step} against the "
                "Euler 1-D "
                f"solution with the same step: slope {_slope(sgd_sizes, noisy):.3f}; the SGD noise, "
                "O(sqrt(step / batch)), does not shrink with n."
            ),
        )
    steps, step_errors, nodes, node_errors = refinement
    order = -_slope(steps, step_errors)
    finest_order = -_slope(steps[-2:], step_errors[-2:])
    metrics["radial_solver"] = {
        "steps": steps,
        "step_errors": step_errors,
        "measured_time_order": order,
        "measured_time_order_finest": finest_order,
        "nodes": nodes,
        "node_errors": node_errors,
    }
    run_dir.add_section(
        "1-D solver under refinement",
        (
            "| RK4 steps | max radius error at T |\n|---|---|\n"
            + "\n".join(f"| {s} | {e:.3e} |" for s, e in zip(steps, step_errors))
            + f"\n\nMeasured order in time: {order:.2f} (least squares over all steps), {finest_order:.2f} "
            "(two finest; RK4: 4).\n\n| nodes | max error |\n|---|---|\n"
            + "\n".join(f"| {k} | {e:.3e} |" for k, e in zip(nodes, node_errors))
            + "\n\nGauss-Hermite nodes in the latent normal variable: spectral (faster than any power) "
            "convergence."
        ),
    )
    run_dir.write_csv(
        "distances.csv",
        [
            {
                "arm": r["arm"],
                "n": r["n"],
                "seed": r["seed"],
                "t": t,
                "wasserstein": w,
                "coupling": c,
                "risk_error": e,
            }
            for r in rows + sgd_rows
            for t, w, c, e in zip(config.save_times, r["wasserstein"], r["coupling"], r["risk_error"])
        ],
    )
    _figures(config, run_dir, rows, results, sgd_rows, refinement)
    return metrics


_SMOKE = Config(
    sizes=(40, 80),
    seeds_per_size=(1, 1),
    time=1.0,
    steps=4,
    save_times=(0.0, 0.5, 1.0),
    nodes=12,
    hermite_terms=24,
    sgd_sizes=(40,),
    sgd_seeds=1,
    sgd_batch=20,
    sgd_step=0.1,
    refinement_steps=(4, 8),
    refinement_nodes=(3, 6),
    dtype="float64",
)
_QUICK = Config(
    sizes=(100, 316, 1000),
    seeds_per_size=(4, 2, 1),
    sgd_sizes=(100, 316),
    sgd_seeds=1,
    refinement_steps=(16, 32, 64),
    refinement_nodes=(2, 3, 4, 6),
)
_PAPER = Config(
    sizes=(100, 316, 1000, 3162, 10000, 31623, 100000),
    seeds_per_size=(16, 12, 8, 6, 4, 2, 1),
    dtype="float64",
    steps=64,
    sgd_sizes=(100, 1000, 10000),
    sgd_seeds=4,
    device="cuda",
)

def headline(metrics) -> dict:
    """The tour's summary of a run (see ``dlpde.shared.report``): distance slopes in n and the risk
    error at the largest n against the 1-D limit."""
    from dlpde.shared.report import below, metric, number, within

    w1, coupling = metric(metrics, "slopes", "wasserstein"), metric(metrics, "slopes", "coupling")
    risk = metric(metrics, "relative_risk_error_largest_n")
    sizes = metrics.get("sizes") if isinstance(metrics.get("sizes"), list) else []
    largest = sizes[-1] if sizes else "max"
    return {
        "sentence": "Finite two-layer networks trained by gradient flow converge to their mean-field limit "
                    "(a 1-D radial conservation law solved independently) at the Monte Carlo rate n^-1/2.",
        "numbers": [
            number("slope in n of the W1 distance of |w| laws", w1, "", "-0.5 +- 0.2", within(w1, -0.5, 0.2)),
            number("slope in n of the coupling distance", coupling, "", "-0.5 +- 0.2",
                   within(coupling, -0.5, 0.2)),
            number(f"relative risk error against the limit, n = {largest}", risk, "", "<= 1e-2",
                   below(risk, 1.0001e-2)),
        ],
        "expectation": "distances falling with n at slopes within 0.2 of -1/2 (n = 100..1000, few seeds) "
                       "and the risk curve at n = 1000 within 1e-2 of the limit.",
        "full": "n = 100..10^4: slopes W1 -0.577, coupling -0.624, risk -0.640; largest relative risk error "
                "at n = 10^4 7.96e-4 (tolerance 1e-2: met); RK4 order 3.86 (545 s CPU).",
        "figure": "distance_vs_n.png",
    }


STUDY = Study(
    name="meanfield.two_layer",
    description="Two-layer nets on the isotropic Gaussian problem against the 1-D radial mean-field limit.",
    config=Config,
    presets={"smoke": _SMOKE, "quick": _QUICK, "full": Config(), "paper": _PAPER},
    run=run,
    citations=("mei2018meanfield", "rotskoff2022trainability", "chizat2018global"),
    in_tour=True,
    headline=headline,
)
