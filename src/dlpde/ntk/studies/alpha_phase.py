"""ntk.alpha_phase: the alpha x width phase diagram of lazy versus feature learning.

A two-layer network of width ``m`` in NTK parameterisation is trained as ``alpha (f(w) - f(w_0))``
on ``R/alpha^2`` (Chizat et al. 2019) on a teacher-student regression task, by small-step
gradient descent up to a fixed gradient-flow time, beside its linearisation. For each
``(alpha, m)`` we record the relative change of the NTK on the training set, the train and test
losses of the network and of the linear model. The crossover ``alpha*(m)`` is located by bisection
in ``log alpha`` on a threshold of the kernel drift (Geiger et al. 2020 locate it the same way),
and ``log alpha*`` is fitted against ``log m``: Geiger et al. report ``alpha* ~ m^{-1/2}``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from dlpde.shared import Study, resolve_device

from ._checks import ACTIVATIONS, check_fields
from ._tasks import alpha_scaled_run, teacher_student_data


@dataclasses.dataclass(frozen=True)
class Config:
    widths: tuple[int, ...] = (64, 128, 256, 512, 1024)
    alphas: tuple[float, ...] = (0.01, 0.0215, 0.0464, 0.1, 0.215, 0.464, 1.0, 2.15, 4.64, 10.0)
    activations: tuple[str, ...] = ("tanh", "relu")
    input_dim: int = 10
    n_train: int = 64
    n_test: int = 256
    teacher_width: int = 3
    time: float = 100.0
    learning_rate: float = 0.5
    drift_thresholds: tuple[float, ...] = (0.1, 1.0)
    bisection_steps: int = 8
    alpha_bracket: tuple[float, float] = (0.02, 20.0)
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        check_fields(self, ints={"input_dim": 1, "n_train": 1, "n_test": 1, "teacher_width": 1,
                                 "bisection_steps": 1},
                     reals={"time": (0.0, True), "learning_rate": (0.0, True)},
                     int_tuples={"widths": (2, False)},
                     real_tuples={"alphas": (0.0, True), "drift_thresholds": (0.0, True),
                                  "alpha_bracket": (0.0, True)},
                     names={"activations": ACTIVATIONS})
        if len(self.alpha_bracket) != 2 or not self.alpha_bracket[0] < self.alpha_bracket[1]:
            raise ValueError(f"alpha_bracket must be (low, high), 0 < low < high, got {self.alpha_bracket}")


def _data(config, activation):
    return teacher_student_data(config.n_train, config.n_test, config.input_dim, config.teacher_width,
                                config.seed, activation)


def _init_seed(config, width, activation):
    return config.seed * 1_000_003 + width * 7 + ("tanh", "relu", "erf").index(activation)


def grid_point(task) -> dict:
    """One ``(width, alpha, activation)`` point (module level, all randomness from the task)."""
    config, point = task
    run = alpha_scaled_run(config.input_dim, point["width"], point["activation"], point["alpha"],
                           _data(config, point["activation"]),
                           _init_seed(config, point["width"], point["activation"]),
                           config.time, config.learning_rate, config.device)
    return {**point, **run["final"]}


def crossover(task) -> dict:
    """Bisection in ``log alpha`` for ``drift(alpha) = threshold`` at one width and activation
    (the drift decreases with alpha: lazier training), then linear interpolation of
    ``log drift`` in ``log alpha`` inside the final bracket."""
    config, point = task
    data = _data(config, point["activation"])
    seed = _init_seed(config, point["width"], point["activation"])

    def drift(alpha):
        return alpha_scaled_run(config.input_dim, point["width"], point["activation"], alpha, data, seed,
                                config.time, config.learning_rate, config.device)["final"]["kernel_drift"]

    threshold = point["threshold"]
    low, high = (math.log(a) for a in config.alpha_bracket)
    d_low, d_high = drift(math.exp(low)), drift(math.exp(high))
    evaluations = [(math.exp(low), d_low), (math.exp(high), d_high)]
    if not d_low > threshold > d_high:
        return {**point, "alpha_star": float("nan"), "evaluations": evaluations}
    for _ in range(config.bisection_steps):
        middle = 0.5 * (low + high)
        value = drift(math.exp(middle))
        evaluations.append((math.exp(middle), value))
        if value > threshold:
            low, d_low = middle, value
        else:
            high, d_high = middle, value
    fraction = (math.log(d_low) - math.log(threshold)) / (math.log(d_low) - math.log(d_high))
    return {**point, "alpha_star": math.exp(low + fraction * (high - low)), "evaluations": evaluations,
            "log_bracket_width": high - low}


def _fit(widths, alpha_stars):
    w, a = np.asarray(widths, float), np.asarray(alpha_stars, float)
    ok = np.isfinite(a)
    if ok.sum() < 2:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(np.log(w[ok]), np.log(a[ok]), 1)
    return float(slope), float(intercept)


def run(config: Config, run_dir) -> dict:
    from dlpde.shared import new_figure

    resolve_device(config.device)
    points = [{"width": w, "alpha": a, "activation": act}
              for act in config.activations for w in config.widths for a in config.alphas]
    grid = run_dir.map(grid_point, [(config, p) for p in points],
                       keys=[f"grid-{p['activation']}-w{p['width']}-a{p['alpha']:g}" for p in points],
                       desc="alpha x width grid")
    run_dir.write_csv("grid.csv", grid)
    triples = [(act, t, w) for act in config.activations for t in config.drift_thresholds
               for w in config.widths]
    crossings = run_dir.map(crossover, [(config, {"width": w, "activation": act, "threshold": t})
                                        for act, t, w in triples],
                            keys=[f"crossover-{act}-t{t:g}-w{w}" for act, t, w in triples],
                            desc="bisection on the kernel drift")
    run_dir.write_csv("crossover.csv", [{k: v for k, v in c.items() if k != "evaluations"}
                                        for c in crossings])

    metrics: dict = {"exponent": {}, "alpha_star": {}}
    fits = {}
    for act in config.activations:
        for t in config.drift_thresholds:
            rows = [c for c in crossings if c["activation"] == act and c["threshold"] == t]
            slope, intercept = _fit([c["width"] for c in rows], [c["alpha_star"] for c in rows])
            fits[act, t] = (slope, intercept)
            metrics["exponent"][f"{act}_threshold{t:g}"] = slope
            metrics["alpha_star"][f"{act}_threshold{t:g}"] = {str(c["width"]): c["alpha_star"] for c in rows}

    # Figures: phase diagrams and the collapse in alpha sqrt(m).
    quantities = [("kernel_drift", "relative NTK change"), ("test_loss", "test loss (network)"),
                  ("train_loss", "train loss (network)")]
    fig, axes = new_figure(len(config.activations), len(quantities), width=3.6, height=3.0)
    axes = np.atleast_2d(axes)
    alphas, widths = np.asarray(config.alphas), np.asarray(config.widths)
    for i, act in enumerate(config.activations):
        for j, (key, title) in enumerate(quantities):
            ax = axes[i, j]
            table = np.array([[next(g[key] for g in grid if g["activation"] == act and g["width"] == w
                                    and g["alpha"] == a) for a in alphas] for w in widths])
            mesh = ax.pcolormesh(alphas, widths, np.log10(np.maximum(table, 1e-12)), shading="nearest",
                                 cmap="viridis")
            fig.colorbar(mesh, ax=ax, label=f"log10 {key}")
            ax.set_xscale("log")
            ax.set_yscale("log", base=2)
            ax.set_xlabel("alpha")
            ax.set_ylabel("width m")
            ax.set_title(f"{act}: {title}", fontsize=9)
            for t, marker in zip(config.drift_thresholds, "^svD"):
                rows = [c for c in crossings if c["activation"] == act and c["threshold"] == t]
                ax.plot([c["alpha_star"] for c in rows], [c["width"] for c in rows], "w" + marker, ms=5,
                        label=f"alpha* (drift {t:g})")
                slope, intercept = fits[act, t]
                if math.isfinite(slope):
                    ax.plot(np.exp(intercept) * widths**slope, widths, "w--", lw=1,
                            label=f"fit m^{slope:.2f}")
            if j == 0:
                ax.legend(fontsize=7, loc="lower left")
    run_dir.save_figure(fig, "phase_diagram", "Kernel drift, test and train loss over (alpha, width); "
                        "triangles: crossover alpha* where the drift crosses the threshold; dashed: fit.")

    fig, axes = new_figure(1, len(config.activations), width=4.0, height=3.2)
    axes = np.atleast_1d(axes)
    for ax, act in zip(axes, config.activations):
        for w in config.widths:
            rows = sorted((g for g in grid if g["activation"] == act and g["width"] == w),
                          key=lambda g: g["alpha"])
            ax.loglog([g["alpha"] * math.sqrt(w) for g in rows], [g["kernel_drift"] for g in rows], "o-",
                      ms=3, label=f"m={w}")
        for t in config.drift_thresholds:
            ax.axhline(t, color="k", lw=0.8, ls=":")
        ax.set_xlabel("alpha sqrt(m)")
        ax.set_ylabel("relative NTK change")
        ax.set_title(act)
        ax.legend(fontsize=7)
    run_dir.save_figure(fig, "drift_collapse", "Kernel drift against alpha sqrt(m): curves of different "
                        "widths collapse if alpha* ~ m^-1/2.")

    lines = ["| activation | drift threshold | " + " | ".join(f"m={w}" for w in config.widths)
             + " | fitted exponent |", "|---|---|" + "---|" * (len(config.widths) + 1)]
    for act in config.activations:
        for t in config.drift_thresholds:
            rows = {c["width"]: c["alpha_star"] for c in crossings
                    if c["activation"] == act and c["threshold"] == t}
            lines.append(f"| {act} | {t:g} | " + " | ".join(f"{rows[w]:.4g}" for w in config.widths)
                         + f" | {fits[act, t][0]:.3f} |")
    run_dir.add_section("Crossover alpha*(m)", (
        f"alpha* where the relative NTK change after training (gradient-flow time {config.time:g}) "
        f"crosses each threshold: {config.bisection_steps} bisection steps in log alpha within "
        f"{config.alpha_bracket}, then log-log interpolation in the final bracket. Geiger et al. (2020) "
        "report alpha* ~ m^-1/2 (NTK parameterisation); at finite width a 1/(alpha m) term of the drift "
        "(deep lazy regime) competes with the 1/(alpha^2 m) term that sets the crossover, so the "
        "exponent approaches -1/2 from above as m grows and the threshold rises.\n\n" + "\n".join(lines)))
    table = ["| activation | width | alpha | drift | train loss | test loss | test loss (linear) |",
             "|---|---|---|---|---|---|---|"]
    for g in grid:
        table.append(f"| {g['activation']} | {g['width']} | {g['alpha']:g} | {g['kernel_drift']:.3g} | "
                     f"{g['train_loss']:.3g} | {g['test_loss']:.3g} | {g['test_loss_linear']:.3g} |")
    run_dir.add_section("Grid", "\n".join(table))
    lazy = [g for g in grid if g["alpha"] == max(config.alphas)]
    active = [g for g in grid if g["alpha"] == min(config.alphas)]
    metrics["test_loss_lazy_mean"] = float(np.mean([g["test_loss"] for g in lazy]))
    metrics["test_loss_active_mean"] = float(np.mean([g["test_loss"] for g in active]))
    metrics["drift_lazy_max"] = float(max(g["kernel_drift"] for g in lazy))
    metrics["drift_active_min"] = float(min(g["kernel_drift"] for g in active))
    return metrics


def headline(metrics) -> dict:
    """The tour's summary of a run (see ``dlpde.shared.report``): fitted crossover exponents and
    the kernel drift at the lazy and active corners."""
    from dlpde.shared.report import above, below, metric, number, within

    exponents = metrics.get("exponent") if isinstance(metrics.get("exponent"), dict) else {}
    numbers = [number(f"exponent of alpha*(m), {key.replace('_threshold', ', drift threshold ')}",
                      metric(exponents, key), "", "-0.5 +- 0.15", within(metric(exponents, key), -0.5, 0.15))
               for key in sorted(exponents)]
    if not numbers:
        numbers.append(number("exponent of alpha*(m)", None, "", "-0.5 +- 0.15"))
    lazy, active = metric(metrics, "drift_lazy_max"), metric(metrics, "drift_active_min")
    numbers += [number("largest kernel drift, lazy corner (largest alpha)", lazy, "", "< 0.1",
                       below(lazy, 0.1)),
                number("smallest kernel drift, active corner (smallest alpha)", active, "", "> 1",
                       above(active, 1.0))]
    return {
        "sentence": "Between lazy (NTK) and feature learning the kernel's relative change crosses over at "
                    "alpha* ~ m^-1/2 in the width m, as Geiger et al. report; the lazy corner keeps its "
                    "kernel, the active corner moves it by orders of magnitude.",
        "numbers": numbers,
        "expectation": "fitted exponents within 0.15 of -1/2 (widths 32..512, one drift threshold), drift "
                       "below 0.1 at the lazy corner and above 1 at the active one.",
        "full": "widths 64..1024: exponents tanh -0.508 / -0.524 and ReLU -0.486 / -0.438 (drift thresholds "
                "0.1 / 1; Geiger et al.: -1/2); lazy corner max drift 0.028, active corner min drift 16.7.",
        "figure": "phase_diagram.png",
    }


STUDY = Study(
    name="ntk.alpha_phase",
    description="Alpha x width phase diagram of lazy vs feature learning; crossover alpha* ~ width^-1/2.",
    config=Config,
    presets={
        "smoke": Config(widths=(16, 32), alphas=(0.1, 10.0), activations=("tanh",), n_train=16, n_test=32,
                        time=4.0, bisection_steps=2, alpha_bracket=(0.1, 10.0), drift_thresholds=(0.1,)),
        "quick": Config(widths=(32, 128, 512), alphas=(0.01, 0.1, 1.0, 10.0), activations=("tanh", "relu"),
                        n_train=32, n_test=128, time=50.0, bisection_steps=5, drift_thresholds=(0.3,)),
        "full": Config(),
        "paper": Config(widths=(64, 128, 256, 512, 1024, 2048, 4096, 8192),
                        alphas=tuple(float(a) for a in np.logspace(-2.5, 1.5, 17)), n_train=256,
                        n_test=1024, time=300.0, bisection_steps=10),
    },
    run=run,
    citations=("chizat2019lazy", "geiger2020disentangling", "jacot2018ntk", "lee2019wide",
               "cristianini2002alignment"),
    in_tour=True,
    headline=headline,
)
