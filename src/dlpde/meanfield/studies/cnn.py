"""meanfield.cnn: convergence in the number of channels of a two-layer mean-field CNN.

Task: random Gaussian images labelled by a fixed teacher CNN (few channels, outputs normalised
to unit variance). Students ``MeanFieldCNN(M, kernel_size)`` with i.i.d. initial channels follow
the mean-field gradient flow of the training risk (RK4, the same steps for every ``M``). As ``M``
grows their outputs and risk curves converge to the mean-field limit; measured:

- the fluctuation ``sqrt(mean_x (f_M - f'_M)^2 / 2)`` between two independent networks of width
  ``M`` (an estimate of ``|f_M - f_infinity|`` that needs no reference), at ``t = 0`` and ``t = T``;
- the distance of outputs and of the training-risk curve to a wider reference network;
- least-squares slopes against ``M`` (expected ``-1/2`` for outputs);
- the linear-activation check: the CNN is the two-layer mean-field model on the mean patch, so its
  second moments follow ``LinearMomentClosure`` with the moments of the mean patches.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import torch

from dlpde.shared import Study, check_positive, check_positive_int, make_generator, resolve_device
from dlpde.shared.testing import convergence_order

from .._dynamics import mean_field_gradient_flow
from .._linear_closure import LinearMomentClosure
from .._two_layer import MeanFieldCNN
from ._plots import label_log_axis


@dataclasses.dataclass(frozen=True)
class Config:
    image_size: int = 6
    kernel_size: int = 3
    activation: Literal["tanh", "relu", "erf"] = "tanh"
    train_size: int = 128
    test_size: int = 256
    teacher_channels: int = 4
    teacher_scale: float = 2.0
    time: float = 10.0
    steps: int = 40
    save_times: tuple[float, ...] = (0.0, 1.0, 2.0, 5.0, 10.0)
    widths: tuple[int, ...] = (16, 64, 256, 1024, 4096)
    seeds: int = 4
    reference_width: int = 16384
    linear_width: int = 200
    dtype: Literal["float32", "float64"] = "float32"
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        if self.kernel_size < 1 or self.image_size < self.kernel_size:
            raise ValueError(
                f"kernel_size must be in [1, image_size={self.image_size}], got {self.kernel_size}"
            )
        if len(self.widths) < 2 or min(self.widths) < 1 or self.reference_width <= max(self.widths):
            raise ValueError("widths needs >= 2 positive entries, all below reference_width")
        if self.seeds < 2:
            raise ValueError(f"seeds must be >= 2 (the fluctuation compares two networks), got {self.seeds}")
        times = list(self.save_times)
        if not times or times[0] != 0.0 or abs(times[-1] - self.time) > 1e-12 or times != sorted(times):
            raise ValueError(f"save_times must increase from 0 to time={self.time}, got {self.save_times}")
        if self.train_size < 1 or self.test_size < 1 or self.steps < 1 or self.teacher_channels < 1:
            raise ValueError("train_size, test_size, steps and teacher_channels must be positive")
        check_positive(self.teacher_scale, "teacher_scale")  # 0: constant teacher labels (std 0)
        check_positive_int(self.linear_width, "linear_width")


def _data(config, device, dtype):
    """Images and teacher labels (train, test) from the config seed; teacher outputs of unit variance."""
    generator = make_generator(config.seed * 7_919 + 11, "cpu")
    shape = (config.train_size + config.test_size, 1, config.image_size, config.image_size)
    images = torch.randn(shape, generator=generator, dtype=torch.float64)
    teacher = MeanFieldCNN(
        config.teacher_channels,
        config.kernel_size,
        1,
        config.activation,
        bias=False,
        input_scale=config.teacher_scale,
        generator=config.seed * 7_919 + 13,
        dtype=torch.float64,
    )
    with torch.no_grad():
        signs = torch.tensor([(-1.0) ** m for m in range(config.teacher_channels)], dtype=torch.float64)
        teacher.particles[:, 0] = signs
        labels = teacher(images)
        labels = labels / labels[: config.train_size].std()
    images, labels = images.to(device=device, dtype=dtype), labels.to(device=device, dtype=dtype)
    return (images[: config.train_size], labels[: config.train_size]), (
        images[config.train_size :],
        labels[config.train_size :],
    )


def student_run(task) -> dict:
    """One student ``(config, width, seed)``: training risk, test risk and test outputs at the save times."""
    config, width, seed = task
    device = resolve_device(config.device)
    dtype = torch.float64 if config.dtype == "float64" else torch.float32
    (x, y), (x_test, y_test) = _data(config, device, dtype)
    model = MeanFieldCNN(
        width,
        config.kernel_size,
        1,
        config.activation,
        bias=False,
        generator=config.seed * 1_000_003 + 104_729 * seed + width,
        dtype=dtype,
        device=device,
    )
    path = mean_field_gradient_flow(
        model,
        lambda: ((y - model(x)) ** 2).mean(),
        config.time,
        steps=config.steps,
        save_at=config.save_times,
    )
    risks, test_risks, outputs = [], [], []
    with torch.no_grad():
        for particles in path:
            model.set_particles(particles)
            risks.append(float(((y - model(x)) ** 2).mean()))
            out = model(x_test)
            test_risks.append(float(((y_test - out) ** 2).mean()))
            outputs.append(out.double().cpu())
    return {
        "width": width,
        "seed": seed,
        "risk": np.array(risks),
        "test_risk": np.array(test_risks),
        "outputs": torch.stack(outputs).numpy(),
    }


def linear_check(config) -> dict:
    """A linear CNN under gradient flow against ``LinearMomentClosure`` on mean patches (float64)."""
    (x, _), _ = _data(config, torch.device("cpu"), torch.float64)
    y = torch.sin(x.flatten(1)[:, :3].sum(1))  # any target: the closure needs only its moments
    model = MeanFieldCNN(
        config.linear_width,
        config.kernel_size,
        1,
        "linear",
        bias=True,
        bias_scale=0.5,
        generator=config.seed + 5,
        dtype=torch.float64,
    )
    closure = LinearMomentClosure.from_data(model.mean_patch(x), y, bias=True)
    start = closure.second_moment(model.particles.detach())
    path = mean_field_gradient_flow(
        model,
        lambda: ((y - model(x)) ** 2).mean(),
        config.time,
        steps=4 * config.steps,
        save_at=config.save_times,
    )
    moments = closure.solve(start, config.time, steps=4 * config.steps, save_at=config.save_times)
    particle_moments = torch.stack([closure.second_moment(p) for p in path])
    return {
        "max_moment_difference": float((particle_moments - moments).abs().max()),
        "moment_scale": float(moments.abs().max()),
        "risk_closure": closure.risk(moments).tolist(),
    }


def _slope(widths, values):
    widths, values = np.asarray(widths, float), np.asarray(values, float)
    keep = values > 0
    return convergence_order(widths[keep], values[keep]) if keep.sum() >= 2 else float("nan")


def run(config: Config, run_dir) -> dict:
    tasks = [(config, w, s) for w in config.widths for s in range(config.seeds)]
    tasks.append((config, config.reference_width, 0))
    results = run_dir.map(
        student_run, tasks, keys=[f"width{w}-seed{s}" for _, w, s in tasks], desc="CNN students"
    )
    reference = results[-1]
    by_width = {w: [r for r in results[:-1] if r["width"] == w] for w in config.widths}
    widths = list(config.widths)
    fluctuation_start, fluctuation_end, output_error, risk_error = [], [], [], []
    for w in widths:
        runs = by_width[w]
        pairs = [(a, b) for i, a in enumerate(runs) for b in runs[i + 1 :]]
        for store, index in ((fluctuation_start, 0), (fluctuation_end, -1)):
            store.append(
                float(
                    np.mean(
                        [
                            np.sqrt(np.mean((a["outputs"][index] - b["outputs"][index]) ** 2) / 2)
                            for a, b in pairs
                        ]
                    )
                )
            )
        output_error.append(
            float(
                np.mean([np.sqrt(np.mean((r["outputs"][-1] - reference["outputs"][-1]) ** 2)) for r in runs])
            )
        )
        risk_error.append(float(np.mean([np.max(np.abs(r["risk"] - reference["risk"])) for r in runs])))
    slopes = {
        "fluctuation_t0": _slope(widths, fluctuation_start),
        "fluctuation_T": _slope(widths, fluctuation_end),
        "output_error_T": _slope(widths, output_error),
        "risk_error": _slope(widths, risk_error),
    }
    linear = run_dir.cached("linear-check", lambda: linear_check(config))

    lines = [
        "| M | fluctuation t=0 | fluctuation t=T | output distance to reference at T | "
        "max_t risk distance to reference | final train risk | final test risk |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, w in enumerate(widths):
        lines.append(
            f"| {w} | {fluctuation_start[i]:.3e} | {fluctuation_end[i]:.3e} | {output_error[i]:.3e} | "
            f"{risk_error[i]:.3e} | {np.mean([r['risk'][-1] for r in by_width[w]]):.4f} | "
            f"{np.mean([r['test_risk'][-1] for r in by_width[w]]):.4f} |"
        )
    lines.append(
        f"| slope | {slopes['fluctuation_t0']:.3f} | {slopes['fluctuation_T']:.3f} | "
        f"{slopes['output_error_T']:.3f} | {slopes['risk_error']:.3f} | | |"
    )
    run_dir.add_section(
        "Convergence in the number of channels",
        "\n".join(lines)
        + (
            f"\n\nReference width {config.reference_width} (final train risk "
            f"{reference['risk'][-1]:.4f}, test {reference['test_risk'][-1]:.4f}); {config.seeds} seeds per "
            f"width; RK4 with {config.steps} steps to t = {config.time}. The distance to the reference "
            "includes the reference's own O(M_ref^-1/2) error."
        ),
    )
    run_dir.add_section(
        "Linear activation: the CNN is a two-layer model on the mean patch",
        (
            f"A linear CNN of {config.linear_width} channels (float64, RK4) and the moment closure built "
            f"from the moments of the mean patches differ by at most "
            f"{linear['max_moment_difference']:.2e} in the second "
            f"moments (scale {linear['moment_scale']:.2e})."
        ),
    )
    run_dir.write_csv(
        "risk_curves.csv",
        [
            {"width": r["width"], "seed": r["seed"], "t": t, "train_risk": a, "test_risk": b}
            for r in results
            for t, a, b in zip(config.save_times, r["risk"], r["test_risk"])
        ],
    )

    from dlpde.shared import new_figure

    fig, axes = new_figure(1, 2, width=4.4, height=3.3)
    for i, w in enumerate(widths):
        axes[0].plot(config.save_times, by_width[w][0]["risk"], "o-", color=f"C{i}", ms=3, label=f"M = {w}")
    axes[0].plot(config.save_times, reference["risk"], "k--", label=f"M = {config.reference_width}")
    axes[0].set(xlabel="mean-field time t", ylabel="training risk", title="risk curves", yscale="log")
    axes[0].legend(fontsize=7)
    for values, label in (
        (fluctuation_start, "fluctuation, t = 0"),
        (fluctuation_end, "fluctuation, t = T"),
        (output_error, "output distance to reference, t = T"),
        (risk_error, "risk-curve distance to reference"),
    ):
        axes[1].loglog(widths, values, "o-", label=f"{label} ({_slope(widths, values):.2f})")
    axes[1].loglog(
        widths, fluctuation_start[0] * (np.asarray(widths) / widths[0]) ** -0.5, "k:", label="M^-1/2"
    )
    axes[1].set(xlabel="channels M", title="convergence in M (slopes)")
    label_log_axis(axes[1], widths)
    axes[1].legend(fontsize=6)
    run_dir.save_figure(
        fig,
        "cnn_convergence",
        "Left: training risk of mean-field CNNs of M channels (seed 0) and "
        "of the reference. Right: distances against M with least-squares slopes.",
    )
    return {
        "widths": widths,
        "fluctuation_t0": fluctuation_start,
        "fluctuation_T": fluctuation_end,
        "output_error_T": output_error,
        "risk_error": risk_error,
        "slopes": slopes,
        "reference_final_risk": float(reference["risk"][-1]),
        "linear_closure": linear,
    }


_SMOKE = Config(
    image_size=5,
    train_size=16,
    test_size=16,
    time=1.0,
    steps=4,
    save_times=(0.0, 0.5, 1.0),
    widths=(8, 32),
    seeds=2,
    reference_width=64,
    linear_width=20,
    dtype="float64",
)
_QUICK = Config(widths=(16, 64, 256, 1024), seeds=2, reference_width=4096, steps=20)
_PAPER = Config(
    image_size=12,
    kernel_size=5,
    train_size=1024,
    test_size=1024,
    widths=(64, 256, 1024, 4096, 16384),
    seeds=4,
    reference_width=131072,
    steps=100,
    device="cuda",
)

STUDY = Study(
    name="meanfield.cnn",
    description="Two-layer mean-field CNN on a teacher task: convergence of outputs and risk in channels M.",
    config=Config,
    presets={"smoke": _SMOKE, "quick": _QUICK, "full": Config(), "paper": _PAPER},
    run=run,
    citations=("mei2018meanfield", "chizat2018global", "rotskoff2022trainability"),
)
