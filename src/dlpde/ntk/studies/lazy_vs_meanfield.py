"""ntk.lazy_vs_meanfield: the Chizat-Oyallon-Bach teacher-student experiment.

A 50-neuron ReLU student ``f(x) = m^{-1/2} sum_j a_j relu(b_j . x / sqrt(d))`` with symmetrised
initialisation (neurons in pairs with opposite output weights, so ``f(w_0) = 0``) and all initial
weights scaled by ``tau`` learns a 3-neuron ReLU teacher in ``d = 100`` from 1000 points by
gradient descent with step ``min(10, 0.1 / tau^2)``. The model is 2-homogeneous, so ``tau``
plays the role of ``sqrt(alpha)``: large ``tau`` trains lazily (the network follows its
linearisation, trained beside it), small ``tau`` learns features. Chizat et al. (2019, Fig. 2)
find the test loss rising with ``tau`` from the active to the lazy regime.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import numpy as np
import torch

from dlpde.shared import Study, make_generator, resolve_device

from .._alpha import TwoLayerNetwork, train_with_linearization
from ._checks import check_fields


@dataclasses.dataclass(frozen=True)
class Config:
    MEANINGFUL_VALUES: typing.ClassVar[dict] = {"log10_scales": "any"}  # log10 of the init scale tau
    log10_scales: tuple[float, ...] = (-2.2, -1.8, -1.4, -1.0, -0.6, -0.2, 0.2, 0.6, 1.0)
    input_dim: int = 100
    teacher_width: int = 3
    student_width: int = 50
    n_train: int = 1000
    n_test: int = 1000
    steps: int = 10_000
    max_step_size: float = 10.0
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        check_fields(self, ints={"input_dim": 1, "teacher_width": 1, "student_width": 2, "n_train": 1,
                                 "n_test": 1, "steps": 1},
                     reals={"max_step_size": (0.0, True)},
                     real_tuples={"log10_scales": (None, False)})
        if self.student_width % 2:
            raise ValueError(f"student_width must be even (symmetrised pairs), got {self.student_width}")


def _data(config, device):
    g = make_generator(config.seed, "cpu")
    x = torch.randn(config.n_train + config.n_test, config.input_dim, generator=g, dtype=torch.float64)
    teacher = torch.randn(config.teacher_width, config.input_dim, generator=g, dtype=torch.float64)
    teacher = teacher / teacher.norm(dim=1, keepdim=True)
    y = torch.relu(x @ teacher.T).sum(1)
    y = (y - y[:config.n_train].mean()) / y[:config.n_train].std()
    x, y = x.to(device), y.to(device)
    return x[:config.n_train], y[:config.n_train], x[config.n_train:], y[config.n_train:]


def scale_point(task) -> dict:
    """Train the student at one initial scale tau = 10^log10_scale (all randomness from the task)."""
    config, log10_scale = task
    device = resolve_device(config.device)
    tau = 10.0**log10_scale
    x_train, y_train, x_test, y_test = _data(config, device)
    student = TwoLayerNetwork(config.input_dim, config.student_width, "relu", output_exponent=0.5,
                              symmetric=True, init_scale=tau, seed=config.seed + 1, device=device)
    step = min(config.max_step_size, 0.1 / tau**2)
    result = train_with_linearization(student, x_train, y_train, config.steps, step, 1.0, x_test, y_test,
                                      record_every=max(1, config.steps // 2), progress=False)
    final = result["history"][-1]
    return {"log10_scale": log10_scale, "scale": tau, "step_size": step, **final,
            "history": result["history"]}


def run(config: Config, run_dir) -> dict:
    from dlpde.shared import new_figure

    device = resolve_device(config.device)
    _data(config, device)  # validates sizes before the grid starts
    rows = run_dir.map(scale_point, [(config, s) for s in config.log10_scales],
                       keys=[f"scale{s:+.2f}" for s in config.log10_scales], desc="initial scales")
    run_dir.write_csv("scales.csv", [{k: v for k, v in r.items() if k != "history"} for r in rows])
    fig, axes = new_figure(1, 3, width=3.8, height=3.1)
    taus = [r["scale"] for r in rows]
    axes[0].loglog(taus, [r["test_loss"] for r in rows], "o-", label="network")
    axes[0].loglog(taus, [r["test_loss_linear"] for r in rows], "s--", label="linearised model")
    axes[0].set_ylabel("test loss (1/2N) sum (f - y)^2")
    axes[0].legend(fontsize=7)
    axes[1].loglog(taus, [r["train_loss"] for r in rows], "o-", label="network")
    axes[1].loglog(taus, [r["train_loss_linear"] for r in rows], "s--", label="linearised model")
    axes[1].set_ylabel("train loss")
    axes[2].loglog(taus, [r["kernel_drift"] for r in rows], "o-", label="kernel drift")
    axes[2].loglog(taus, [r["weight_movement"] for r in rows], "^-", label="weight movement")
    axes[2].legend(fontsize=7)
    for ax in axes:
        ax.set_xlabel("initial scale tau")
    run_dir.save_figure(fig, "test_loss_vs_scale", "Chizat-Oyallon-Bach teacher-student: test and train "
                        "loss, kernel drift and relative weight movement against the initial scale.")
    table = ["| tau | step | train loss | test loss | test loss (linear) | kernel drift | weight movement |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| {r['scale']:.3g} | {r['step_size']:.3g} | {r['train_loss']:.3g} | "
                     f"{r['test_loss']:.3g} | {r['test_loss_linear']:.3g} | {r['kernel_drift']:.3g} | "
                     f"{r['weight_movement']:.3g} |")
    run_dir.add_section("Test loss against the initial scale", "\n".join(table) + (
        f"\n\n{config.steps} gradient-descent steps of size min({config.max_step_size:g}, 0.1/tau^2); losses "
        "(1/2N) sum (f - y)^2 with targets of unit variance."))
    small, large = rows[int(np.argmin(taus))], rows[int(np.argmax(taus))]
    return {"test_loss_smallest_scale": small["test_loss"], "test_loss_largest_scale": large["test_loss"],
            "test_loss_linear_largest_scale": large["test_loss_linear"],
            "kernel_drift_smallest_scale": small["kernel_drift"],
            "kernel_drift_largest_scale": large["kernel_drift"],
            "test_loss": {f"{r['log10_scale']:+.2f}": r["test_loss"] for r in rows},
            "active_to_lazy_test_loss_ratio": large["test_loss"] / small["test_loss"]
            if small["test_loss"] > 0 else math.inf}


STUDY = Study(
    name="ntk.lazy_vs_meanfield",
    description="Chizat-Oyallon-Bach teacher-student: test loss rises from active (small init) to lazy.",
    config=Config,
    presets={
        "smoke": Config(log10_scales=(-1.0, 1.0), input_dim=10, student_width=10, n_train=50, n_test=50,
                        steps=100),
        "quick": Config(log10_scales=(-2.2, -1.4, -0.6, 0.2, 1.0), n_train=300, n_test=300, steps=3000),
        "full": Config(),
        "paper": Config(log10_scales=tuple(float(v) for v in np.linspace(-2.2, 1.0, 17)), steps=100_000),
    },
    run=run,
    citations=("chizat2019lazy", "chizat2018global", "mei2018meanfield", "jacot2018ntk"),
)
