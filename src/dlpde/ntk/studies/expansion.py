"""ntk.expansion: the perturbative expansion around the lazy limit against training.

The alpha-scaled two-layer network ``g = alpha (f(w) - f(w_0))`` (NTK parameterisation, tanh) is
trained by gradient descent on a teacher-student task. Beside it: the lazy prediction (NTK frozen;
identical to the linearised model trained by the same steps) and the first-order correction
(the neural tangent hierarchy truncated at level 3: ``dTheta/dt`` from the frozen level-3 kernel
``Theta_3``, computed exactly by torch.func). Expected (Huang & Yau 2020; Dyer & Gur-Ari 2020):
``|g - g_lazy| = O(1/alpha)`` and ``|g - g_corrected| = O(1/alpha^2)``. At ``alpha = 1`` the same
comparison is made across widths.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from dlpde.shared import Study, resolve_device

from .._alpha import TwoLayerNetwork, train_with_linearization
from .._diagnostics import perturbative_dynamics
from ._checks import ACTIVATIONS, check_fields
from ._tasks import teacher_student_data


@dataclasses.dataclass(frozen=True)
class Config:
    alphas: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
    width: int = 256
    widths: tuple[int, ...] = (64, 128, 256, 512, 1024)
    activation: str = "tanh"
    input_dim: int = 10
    n_train: int = 32
    n_test: int = 32
    teacher_width: int = 3
    steps: int = 400
    learning_rate: float = 0.5
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        check_fields(self, ints={"width": 1, "input_dim": 1, "n_train": 1, "n_test": 1, "teacher_width": 1,
                                 "steps": 1},
                     reals={"learning_rate": (0.0, True)},
                     int_tuples={"widths": (1, True)},  # () skips the width sweep
                     real_tuples={"alphas": (0.0, True)},
                     names={"activation": ACTIVATIONS})


def expansion_point(task) -> dict:
    """Network, lazy and corrected outputs at one (width, alpha), over the training time."""
    config, point = task
    device = resolve_device(config.device)
    data = teacher_student_data(config.n_train, config.n_test, config.input_dim, config.teacher_width,
                                config.seed, config.activation)
    x_train, y_train, x_test, y_test = (t.to(device) for t in data)
    width, alpha = point["width"], point["alpha"]
    record = max(1, config.steps // 8)

    def model():
        return TwoLayerNetwork(config.input_dim, width, config.activation, seed=config.seed * 7919 + width,
                               device=device)

    predicted = perturbative_dynamics(model(), x_train, y_train, config.steps, config.learning_rate, alpha,
                                      x_test, record_every=record)
    trained = train_with_linearization(model(), x_train, y_train, config.steps, config.learning_rate, alpha,
                                       x_test, y_test, record_every=config.steps)
    with torch.no_grad():
        network = trained["network"](torch.cat([x_train, x_test]))
    lazy, corrected = predicted["lazy"][-1], predicted["corrected"][-1]
    scale = float(torch.linalg.norm(network))

    def test_loss(outputs):
        return float(((outputs[config.n_train:] - y_test) ** 2).sum() / (2 * config.n_test))

    return {**point, "lazy_error": float(torch.linalg.norm(network - lazy)) / scale,
            "corrected_error": float(torch.linalg.norm(network - corrected)) / scale,
            "kernel_drift": trained["history"][-1]["kernel_drift"],
            "train_loss": trained["history"][-1]["train_loss"],
            "test_loss": trained["history"][-1]["test_loss"],
            "test_loss_lazy": test_loss(lazy), "test_loss_corrected": test_loss(corrected)}


def _slope(x, y):
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def run(config: Config, run_dir) -> dict:
    from dlpde.shared import new_figure

    resolve_device(config.device)
    points = ([{"sweep": "alpha", "width": config.width, "alpha": a} for a in config.alphas]
              + [{"sweep": "width", "width": w, "alpha": 1.0} for w in config.widths])
    rows = run_dir.map(expansion_point, [(config, p) for p in points],
                       keys=[f"{p['sweep']}-w{p['width']}-a{p['alpha']:g}" for p in points],
                       desc="network vs lazy vs corrected")
    run_dir.write_csv("expansion.csv", rows)
    by_alpha = [r for r in rows if r["sweep"] == "alpha"]
    by_width = [r for r in rows if r["sweep"] == "width"]
    # slopes in alpha on the lazy side (alpha >= 4), where the expansion applies
    lazy_side = [r for r in by_alpha if r["alpha"] >= 4] or by_alpha
    def slope(part, x, y):
        return _slope([r[x] for r in part], [r[y] for r in part]) if len(part) > 1 else float("nan")

    metrics = {
        "alpha_slope_lazy": slope(lazy_side, "alpha", "lazy_error"),
        "alpha_slope_corrected": slope(lazy_side, "alpha", "corrected_error"),
        "width_slope_lazy": slope(by_width, "width", "lazy_error"),
        "width_slope_corrected": slope(by_width, "width", "corrected_error"),
        "lazy_error_at_max_alpha": by_alpha[-1]["lazy_error"],
        "corrected_error_at_max_alpha": by_alpha[-1]["corrected_error"],
    }
    fig, axes = new_figure(1, 2, width=4.0, height=3.2)
    a = [r["alpha"] for r in by_alpha]
    axes[0].loglog(a, [r["lazy_error"] for r in by_alpha], "o-",
                   label=f"lazy (NTK frozen), slope {metrics['alpha_slope_lazy']:.2f}")
    axes[0].loglog(a, [r["corrected_error"] for r in by_alpha], "s-",
                   label=f"first-order corrected, slope {metrics['alpha_slope_corrected']:.2f}")
    axes[0].set_xlabel("alpha")
    axes[0].set_ylabel("|g_network - g_prediction| / |g_network|")
    axes[0].set_title(f"width {config.width}", fontsize=9)
    axes[0].legend(fontsize=7)
    if by_width:
        w = [r["width"] for r in by_width]
        axes[1].loglog(w, [r["lazy_error"] for r in by_width], "o-", label="lazy")
        axes[1].loglog(w, [r["corrected_error"] for r in by_width], "s-", label="corrected")
        axes[1].set_xlabel("width m")
        axes[1].set_title("alpha = 1", fontsize=9)
        axes[1].legend(fontsize=7)
    run_dir.save_figure(fig, "expansion", "Distance between the trained network and the lazy and "
                        "first-order-corrected predictions (train and test points, end of training).")
    table = ["| sweep | width | alpha | lazy error | corrected error | kernel drift | test loss: network | "
             "lazy | corrected |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        table.append(f"| {r['sweep']} | {r['width']} | {r['alpha']:g} | {r['lazy_error']:.3g} | "
                     f"{r['corrected_error']:.3g} | {r['kernel_drift']:.3g} | {r['test_loss']:.4g} | "
                     f"{r['test_loss_lazy']:.4g} | {r['test_loss_corrected']:.4g} |")
    run_dir.add_section("Network against the expansion", "\n".join(table) + (
        f"\n\nSlopes in alpha (alpha >= 4, width {config.width}): lazy {metrics['alpha_slope_lazy']:.3f} "
        f"(expected -1), corrected {metrics['alpha_slope_corrected']:.3f} (expected -2). In width at "
        f"alpha = 1: lazy {metrics['width_slope_lazy']:.3f}, corrected "
        f"{metrics['width_slope_corrected']:.3f}."))
    return metrics


STUDY = Study(
    name="ntk.expansion",
    description="Lazy vs first-order-corrected (NTH level 3) predictions against training, error vs alpha.",
    config=Config,
    presets={
        "smoke": Config(alphas=(4.0, 16.0), width=32, widths=(), n_train=8, n_test=4, steps=40),
        "quick": Config(alphas=(2.0, 4.0, 8.0, 16.0, 32.0), width=128, widths=(64, 256), n_train=16,
                        n_test=16, steps=200),
        "full": Config(),
        "paper": Config(alphas=tuple(float(2**k) for k in range(0, 10)), width=1024,
                        widths=(64, 128, 256, 512, 1024, 2048, 4096), n_train=128, n_test=128, steps=2000),
    },
    run=run,
    citations=("huang2020dynamics", "dyer2020asymptotics", "chizat2019lazy", "lee2019wide"),
)
