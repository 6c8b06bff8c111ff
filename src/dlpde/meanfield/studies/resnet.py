"""meanfield.resnet: mean-field ResNet / ResNeXt against the ODE in depth, trained as particles.

Blocks ``f(x; theta) = U sigma(W x)`` (``block_width`` units), ``x_{l+1} = x_l + (1/(L M)) sum_j
f(x_l; theta_{l,j})``; ``M = 1`` is a ResNet (mean field through depth), ``M > 1`` a ResNeXt of
cardinality ``M``. Measured:

1. At initialisation, blocks of layer ``l`` drawn from a Gaussian law ``rho_{l/L}`` whose mean field
   ``F(x, t)`` is closed up to a 1-D Gaussian quadrature: the output ``x_L`` against the ODE
   ``dX/dt = F(X, t)`` solved by Dormand-Prince. Over seeds, the mean error (Euler bias, expected
   ``L^-1``) and the seed-to-seed fluctuation (sampling, expected ``(L M)^-1/2``); measured rates.
2. Backpropagation against the adjoint ODE and the particle velocities (``-L M dE/dtheta``)
   against the Wasserstein velocity ``-grad_theta sum_b P_b(t) . f(X_b(t); theta)`` of the limit.
3. Training (mean-field gradient flow of ``E = mean |x_L - y|^2 / 2``, Euler steps of ``step`` in
   mean-field time, full batch) on a teacher flow map ``y = X_teacher(1)``: the distance of the
   training-loss curve to a deep and wide reference as ``L`` and ``M`` grow (measured rates).
4. ResNet against ResNeXt at equal parameter count (``L M`` blocks fixed).
5. Block reordering during training (``MeanFieldResNet.reorder_by_depth_gradient``: layers move in
   depth against the depth derivative of the first variation and are re-sorted) against plain
   training: final losses and the sensitivity of the trained network to a random block order.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Literal

import numpy as np
import torch

from dlpde.shared import Study, check_positive, check_positive_int, make_generator, resolve_device
from dlpde.shared.testing import convergence_order

from .._dynamics import mean_field_sgd
from .._resnet import (
    GaussianBlockMeasure,
    MeanFieldResNet,
    particle_velocity,
    resnet_limit,
    resnet_limit_adjoint,
)
from ._plots import label_log_axis


@dataclasses.dataclass(frozen=True)
class Config:
    MEANINGFUL_VALUES: typing.ClassVar[dict] = {"noise": (0,)}  # noise 0: noiseless blocks U = A(t) W
    dim: int = 4
    block_width: int = 2
    activation: Literal["tanh", "erf", "sigmoid"] = "tanh"
    coupling_scale: float = 1.0
    noise: float = 0.5
    inputs: int = 64
    depths: tuple[int, ...] = (4, 8, 16, 32, 64, 128)
    widths: tuple[int, ...] = (1, 4, 16, 64, 256)
    seeds: int = 6
    train_size: int = 128
    test_size: int = 256
    teacher_scale: float = 2.0
    train_time: float = 5.0
    step: float = 0.05
    train_depths: tuple[int, ...] = (4, 8, 16, 32, 64)
    train_widths: tuple[int, ...] = (1, 4, 16, 64)
    train_depth_at: int = 32
    train_width_at: int = 4
    train_seeds: int = 3
    reference: tuple[int, int] = (128, 64)
    equal_blocks: tuple[int, ...] = (64, 256)
    cardinalities: tuple[int, ...] = (1, 4, 16)
    reorder_shapes: tuple[int, ...] = (32, 1, 8, 4)
    reorder_every: int = 10
    depth_step: float = 1.0
    reorder_seeds: int = 4
    dtype: Literal["float32", "float64"] = "float64"
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        if self.dim < 1 or self.block_width < 1:
            raise ValueError("dim and block_width must be positive")
        # coupling_scale or teacher_scale 0 makes the mean field F = 0 (the limit is the identity),
        # depth_step 0 makes every reordering the identity: refused, like negative values
        for name in ("coupling_scale", "teacher_scale", "depth_step"):
            check_positive(getattr(self, name), name)
        check_positive(self.noise, "noise", allow_zero=True)
        for name in ("inputs", "train_size", "test_size", "reorder_every"):
            check_positive_int(getattr(self, name), name)
        for name in ("equal_blocks", "cardinalities"):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"{name} needs at least one entry")
            for i, value in enumerate(values):
                check_positive_int(value, f"{name}[{i}]")
        if len(self.depths) < 2 or len(self.widths) < 2 or min(self.depths + self.widths) < 1:
            raise ValueError("depths and widths need at least two positive entries each")
        if self.seeds < 2 or self.train_seeds < 1 or self.reorder_seeds < 1:
            raise ValueError("seeds must be >= 2, train_seeds and reorder_seeds >= 1")
        if not (self.train_time > 0 and self.step > 0):
            raise ValueError("train_time and step must be positive")
        if self.train_depth_at not in self.train_depths or self.train_width_at not in self.train_widths:
            raise ValueError("train_depth_at must be in train_depths and train_width_at in train_widths")
        if len(self.reorder_shapes) % 2 or not self.reorder_shapes:
            raise ValueError("reorder_shapes lists (depth, width) pairs: an even number of entries")
        for blocks in self.equal_blocks:
            if any(blocks % c for c in self.cardinalities):
                raise ValueError(
                    f"every entry of equal_blocks must be divisible by every cardinality, got {blocks}"
                )


def _dtype(config):
    return torch.float64 if config.dtype == "float64" else torch.float32


def _coupling(config, seed, scale):
    """Coefficients ``(A_0, A_1)`` of ``A(t) = A_0 + t A_1`` (random, from ``seed``)."""
    generator = make_generator(seed, "cpu")
    a = torch.randn(2, config.dim, config.dim, generator=generator, dtype=torch.float64)
    return scale * a / config.dim**0.5


def _measure(config):
    """The law of the initial blocks of part 1 (and 2)."""
    return GaussianBlockMeasure(
        config.dim,
        config.block_width,
        config.activation,
        _coupling(config, config.seed * 31 + 1, config.coupling_scale),
        noise=config.noise,
    )


def _teacher(config):
    return GaussianBlockMeasure(
        config.dim,
        config.block_width,
        config.activation,
        _coupling(config, config.seed * 31 + 2, config.teacher_scale),
        noise=0.0,
    )


def _student_measure(config):
    zero = torch.zeros(1, config.dim, config.dim, dtype=torch.float64)
    return GaussianBlockMeasure(config.dim, config.block_width, config.activation, zero, noise=1.0)


def _inputs(config, count, salt):
    generator = make_generator(config.seed * 97 + salt, "cpu")
    return torch.randn(count, config.dim, generator=generator, dtype=torch.float64)


def _training_data(config, device):
    x = _inputs(config, config.train_size + config.test_size, 3)
    y = resnet_limit(_teacher(config).field, x)
    dtype = _dtype(config)
    x, y = x.to(device=device, dtype=dtype), y.to(device=device, dtype=dtype)
    return (x[: config.train_size], y[: config.train_size]), (x[config.train_size :], y[config.train_size :])


def limit_point(task) -> dict:
    """Part 1-2 at one ``(depth, width)``: outputs of ``seeds`` networks, and adjoint / velocity errors."""
    config, depth, width = task
    measure = _measure(config)
    x = _inputs(config, config.inputs, 1)
    target = _inputs(config, config.inputs, 2)
    outputs, adjoint_error, velocity_error = [], float("nan"), float("nan")
    for seed in range(config.seeds):
        particles = measure.sample(
            depth,
            width,
            generator=config.seed * 1_000_003 + 7_919 * depth + 31 * width + seed,
            dtype=torch.float64,
        )
        net = MeanFieldResNet(
            depth, width, config.dim, config.block_width, config.activation, particles=particles
        )
        with torch.no_grad():
            outputs.append(net(x))
        if seed == 0:
            times = [layer / depth for layer in range(depth)]
            states, adjoints = resnet_limit_adjoint(measure.field, x, target, times)
            discrete_states, discrete_adjoints = net.adjoint_states(x, target)
            adjoint_error = float(
                (discrete_adjoints[:-1] - adjoints).norm() / adjoints.norm()
            )  # p_l vs P(t_l)
            discrete, continuous = [], []
            for layer in range(depth):
                kwargs = {
                    "dim": config.dim,
                    "block_width": config.block_width,
                    "activation": config.activation,
                }
                discrete.append(
                    particle_velocity(
                        net.particles[layer], discrete_states[layer], discrete_adjoints[layer + 1], **kwargs
                    )
                )
                continuous.append(
                    particle_velocity(net.particles[layer], states[layer], adjoints[layer], **kwargs)
                )
            discrete, continuous = torch.stack(discrete), torch.stack(continuous)
            velocity_error = float((discrete - continuous).norm() / continuous.norm())
    return {
        "depth": depth,
        "width": width,
        "outputs": torch.stack(outputs).numpy(),
        "adjoint_error": adjoint_error,
        "velocity_error": velocity_error,
    }


def train_point(task) -> dict:
    """Parts 3-5: train one network ``(config, depth, width, seed, reorder)``; losses along training."""
    config, depth, width, seed, reorder = task
    device = resolve_device(config.device)
    (x, y), (x_test, y_test) = _training_data(config, device)
    particles = _student_measure(config).sample(
        depth, width, generator=config.seed * 1_000_003 + 104_729 * seed + 17
    )
    net = MeanFieldResNet(
        depth,
        width,
        config.dim,
        config.block_width,
        config.activation,
        particles=particles.to(device=device, dtype=_dtype(config)),
    )
    shuffle = make_generator(config.seed * 13 + seed, "cpu")

    def loss(step):
        return 0.5 * ((net(x) - y) ** 2).sum(-1).mean()

    moved = []

    def callback(step, record):
        if reorder and (step + 1) % config.reorder_every == 0:
            permutation = net.reorder_by_depth_gradient(x, y, config.depth_step)
            moved.append(int((permutation != torch.arange(depth, device=permutation.device)).sum()))

    history = mean_field_sgd(net, loss, config.train_time, config.step, progress=False, callback=callback)
    with torch.no_grad():
        train_loss = float(loss(0))
        test_loss = float(0.5 * ((net(x_test) - y_test) ** 2).sum(-1).mean())
        permuted = []
        for _ in range(4):
            saved = net.particles.detach().clone()
            net.reorder_blocks(torch.randperm(depth, generator=shuffle))
            permuted.append(float(loss(0)))
            net.particles.copy_(saved)
    return {
        "depth": depth,
        "width": width,
        "seed": seed,
        "reorder": reorder,
        "loss_curve": np.array([h["loss"] for h in history]),
        "train_loss": train_loss,
        "test_loss": test_loss,
        "permuted_loss": float(np.mean(permuted)),
        "layers_moved": int(sum(moved)),
    }


def _slope(sizes, values):
    sizes, values = np.asarray(sizes, float), np.asarray(values, float)
    keep = np.isfinite(values) & (values > 0)
    return convergence_order(sizes[keep], values[keep]) if keep.sum() >= 2 else float("nan")


def _rms(a):
    return float(np.sqrt(np.mean(np.sum(np.asarray(a) ** 2, -1))))


def run(config: Config, run_dir) -> dict:
    from dlpde.shared import new_figure

    # -- 1-2: initial networks against the ODE in depth --------------------------------------
    grid = [(config, depth, width) for depth in config.depths for width in config.widths]
    points = run_dir.map(
        limit_point, grid, keys=[f"limit-L{d}-M{w}" for _, d, w in grid], desc="depth x width"
    )
    limit = resnet_limit(_measure(config).field, _inputs(config, config.inputs, 1)).numpy()
    bias = {(p["depth"], p["width"]): _rms(p["outputs"].mean(0) - limit) for p in points}
    fluctuation = {
        (p["depth"], p["width"]): _rms(p["outputs"] - p["outputs"].mean(0))
        * np.sqrt(config.seeds / (config.seeds - 1))
        for p in points
    }
    depths, widths = list(config.depths), list(config.widths)
    wide, deep = max(widths), max(depths)
    rates = {
        "bias_vs_depth": _slope(depths, [bias[d, wide] for d in depths]),
        "fluctuation_vs_width": _slope(widths, [fluctuation[deep, w] for w in widths]),
        "fluctuation_vs_depth": _slope(depths, [fluctuation[d, wide] for d in depths]),
        "fluctuation_vs_blocks": _slope(
            [d * w for d in depths for w in widths], [fluctuation[d, w] for d in depths for w in widths]
        ),
        "adjoint_error_vs_depth": _slope(depths, [p["adjoint_error"] for p in points if p["width"] == wide]),
        "velocity_error_vs_depth": _slope(
            depths, [p["velocity_error"] for p in points if p["width"] == wide]
        ),
    }
    lines = ["| L \\ M | " + " | ".join(str(w) for w in widths) + " |", "|---" * (len(widths) + 1) + "|"]
    for d in depths:
        lines.append(
            f"| {d} | " + " | ".join(f"{bias[d, w]:.2e} / {fluctuation[d, w]:.2e}" for w in widths) + " |"
        )
    run_dir.add_section(
        "Initial networks against the ODE in depth",
        "\n".join(lines)
        + (
            "\n\nEntries: Euler bias (RMS of the seed mean minus X(1)) / seed-to-seed fluctuation, "
            f"{config.seeds} seeds, {config.inputs} inputs. Rates: bias vs L at M={wide}: "
            f"{rates['bias_vs_depth']:.3f} (expected -1); fluctuation vs M at L={deep}: "
            f"{rates['fluctuation_vs_width']:.3f}, vs L at M={wide}: {rates['fluctuation_vs_depth']:.3f}, "
            f"vs L M over the grid: {rates['fluctuation_vs_blocks']:.3f} (expected -1/2). Backpropagation "
            f"against the adjoint ODE (M={wide}): relative error slope "
            f"{rates['adjoint_error_vs_depth']:.3f}; particle velocities against the Wasserstein velocity of "
            "the limit: slope "
            f"{rates['velocity_error_vs_depth']:.3f}."
        ),
    )

    # -- 3-5: training ----------------------------------------------------------------------
    shapes = {(d, config.train_width_at) for d in config.train_depths}
    shapes |= {(config.train_depth_at, w) for w in config.train_widths}
    shapes |= {(blocks // c, c) for blocks in config.equal_blocks for c in config.cardinalities}
    reorder_shapes = list(zip(config.reorder_shapes[::2], config.reorder_shapes[1::2]))
    tasks = [(config, d, w, s, False) for d, w in sorted(shapes) for s in range(config.train_seeds)]
    tasks += [
        (config, d, w, s, flag)
        for d, w in reorder_shapes
        for s in range(config.reorder_seeds)
        for flag in (False, True)
        if not (not flag and (d, w) in shapes and s < config.train_seeds)
    ]
    tasks.append((config, *config.reference, 0, False))
    keys = [f"train-L{d}-M{w}-s{s}-{'reorder' if r else 'plain'}" for _, d, w, s, r in tasks]
    keys[-1] = "reference"
    runs = run_dir.map(train_point, tasks, keys=keys, desc="training")
    reference = runs[-1]
    trained = runs[:-1]

    def select(depth, width, reorder=False):
        return [r for r in trained if r["depth"] == depth and r["width"] == width and r["reorder"] == reorder]

    def curve_distance(depth, width):
        return float(
            np.mean([np.max(np.abs(r["loss_curve"] - reference["loss_curve"])) for r in select(depth, width)])
        )

    depth_distance = [curve_distance(d, config.train_width_at) for d in config.train_depths]
    width_distance = [curve_distance(config.train_depth_at, w) for w in config.train_widths]
    rates["train_loss_vs_depth"] = _slope(config.train_depths, depth_distance)
    rates["train_loss_vs_width"] = _slope(config.train_widths, width_distance)
    run_dir.add_section(
        "Training-loss curves against a deep and wide reference",
        (
            f"Reference L={config.reference[0]}, M={config.reference[1]}: final training loss "
            f"{reference['train_loss']:.4e} (initial {reference['loss_curve'][0]:.4e}). Max over training "
            f"of |loss - reference|, mean over {config.train_seeds} seeds:\n\n"
            f"| L (M={config.train_width_at}) | distance |\n"
            "|---|---|\n"
            + "\n".join(f"| {d} | {v:.3e} |" for d, v in zip(config.train_depths, depth_distance))
            + f"\n\nslope {rates['train_loss_vs_depth']:.3f}\n\n"
            f"| M (L={config.train_depth_at}) | distance |\n|---|---|\n"
            + "\n".join(f"| {w} | {v:.3e} |" for w, v in zip(config.train_widths, width_distance))
            + f"\n\nslope {rates['train_loss_vs_width']:.3f} (the reference's own error limits the "
            "smallest distances)."
        ),
    )

    equal_rows, equal = [], {}
    for blocks in config.equal_blocks:
        for c in config.cardinalities:
            d = blocks // c
            runs_here = select(d, c)
            key = (d, c)
            init = next((p for p in points if p["depth"] == d and p["width"] == c), None)
            equal[f"{blocks}_{c}"] = {
                "train_loss": float(np.mean([r["train_loss"] for r in runs_here])),
                "test_loss": float(np.mean([r["test_loss"] for r in runs_here])),
            }
            equal_rows.append(
                f"| {blocks} | {'ResNet' if c == 1 else 'ResNeXt'} L={d}, M={c} | "
                f"{equal[f'{blocks}_{c}']['train_loss']:.4e} | {equal[f'{blocks}_{c}']['test_loss']:.4e} | "
                + (f"{bias[key]:.2e} / {fluctuation[key]:.2e}" if init else "-")
                + " |"
            )
    run_dir.add_section(
        "ResNet against ResNeXt at equal parameter count",
        (
            "| blocks L M | network | train loss | test loss | initial bias / fluctuation vs ODE |\n"
            "|---|---|---|---|---|\n"
            + "\n".join(equal_rows)
            + f"\n\nParameters per block {2 * config.dim * config.block_width}; the same "
            "number of blocks means the same number of parameters. Training as above."
        ),
    )

    reorder_rows, reorder_metrics = [], {}
    for d, w in reorder_shapes:
        summary = {}
        for flag in (False, True):
            rs = [r for r in select(d, w, flag) if r["seed"] < config.reorder_seeds]
            summary["reorder" if flag else "plain"] = {
                k: float(np.mean([r[k] for r in rs]))
                for k in ("train_loss", "test_loss", "permuted_loss", "layers_moved")
            }
        reorder_metrics[f"L{d}_M{w}"] = summary
        for name, values in summary.items():
            reorder_rows.append(
                f"| L={d}, M={w} | {name} | {values['train_loss']:.4e} | {values['test_loss']:.4e} | "
                f"{values['permuted_loss']:.4e} | {values['layers_moved']:.1f} |"
            )
    run_dir.add_section(
        "Block reordering against plain training",
        (
            "| network | training | train loss | test loss | train loss after a random block order "
            "| layers moved |\n|---|---|---|---|---|---|\n"
            + "\n".join(reorder_rows)
            + f"\n\nReordering every {config.reorder_every} steps with depth step {config.depth_step}; "
            f"means over {config.reorder_seeds} seeds. This is our implementation of training with block "
            "reordering (layers move in depth along minus the depth derivative of the first variation and "
            "are re-sorted), in the "
            "spirit of Lu et al. (2020); their exact schedule is not reproduced."
        ),
    )

    fig, axes = new_figure(1, 3, width=3.8, height=3.2)
    for w in widths:
        axes[0].loglog(depths, [bias[d, w] for d in depths], "o-", ms=3, label=f"bias, M={w}")
    axes[0].loglog(
        depths, bias[depths[0], wide] * (np.asarray(depths) / depths[0]) ** -1.0, "k:", label="L^-1"
    )
    axes[0].set(xlabel="depth L", ylabel="RMS error of the seed mean", title="Euler bias")
    label_log_axis(axes[0], depths)
    axes[0].legend(fontsize=6)
    blocks_all = np.array([d * w for d in depths for w in widths])
    axes[1].loglog(blocks_all, [fluctuation[d, w] for d in depths for w in widths], "o", ms=3)
    axes[1].loglog(
        np.sort(blocks_all),
        fluctuation[depths[0], widths[0]] * (np.sort(blocks_all) / blocks_all.min()) ** -0.5,
        "k:",
        label="(L M)^-1/2",
    )
    axes[1].set(xlabel="blocks L M", ylabel="seed-to-seed fluctuation", title="sampling error")
    axes[1].legend(fontsize=7)
    axes[2].loglog(
        config.train_depths,
        depth_distance,
        "o-",
        label=f"vs L (M={config.train_width_at}): {rates['train_loss_vs_depth']:.2f}",
    )
    axes[2].loglog(
        config.train_widths,
        width_distance,
        "s-",
        label=f"vs M (L={config.train_depth_at}): {rates['train_loss_vs_width']:.2f}",
    )
    axes[2].set(xlabel="L or M", ylabel="max |loss - reference|", title="training-loss curves")
    label_log_axis(axes[2], [*config.train_depths, *config.train_widths])
    axes[2].legend(fontsize=7)
    run_dir.save_figure(
        fig,
        "resnet_convergence",
        "Left: Euler bias of x_L against the depth ODE; middle: sampling "
        "fluctuation against the number of blocks; right: distance of training-loss curves to the "
        "reference.",
    )
    fig, ax = new_figure(1, 1, width=4.4, height=3.2)
    steps = np.arange(len(reference["loss_curve"])) * config.step
    ax.semilogy(
        steps,
        reference["loss_curve"],
        "k-",
        lw=2,
        label=f"reference L={config.reference[0]}, M={config.reference[1]}",
    )
    for i, (d, w) in enumerate(reorder_shapes):
        for flag, style in ((False, "-"), (True, "--")):
            rs = select(d, w, flag)
            if rs:
                ax.semilogy(
                    steps[: len(rs[0]["loss_curve"])],
                    rs[0]["loss_curve"],
                    style,
                    color=f"C{i}",
                    label=f"L={d}, M={w}, {'reordered' if flag else 'plain'}",
                )
    ax.set(xlabel="mean-field training time", ylabel="training loss")
    ax.legend(fontsize=6)
    run_dir.save_figure(
        fig,
        "training_curves",
        "Training loss against mean-field time: reference, and plain (solid) "
        "against block-reordered (dashed) training.",
    )
    return {
        "rates": rates,
        "bias": {f"L{d}_M{w}": v for (d, w), v in bias.items()},
        "fluctuation": {f"L{d}_M{w}": v for (d, w), v in fluctuation.items()},
        "train_distance_vs_depth": depth_distance,
        "train_distance_vs_width": width_distance,
        "equal_parameters": equal,
        "reordering": reorder_metrics,
        "reference_train_loss": reference["train_loss"],
    }


_SMOKE = Config(
    inputs=8,
    depths=(2, 4),
    widths=(1, 2),
    seeds=2,
    train_size=8,
    test_size=8,
    train_time=0.2,
    step=0.05,
    train_depths=(2, 4),
    train_widths=(1, 2),
    train_depth_at=4,
    train_width_at=1,
    train_seeds=1,
    reference=(8, 2),
    equal_blocks=(4,),
    cardinalities=(1, 2),
    reorder_shapes=(4, 1),
    reorder_every=2,
    reorder_seeds=1,
)
_QUICK = Config(
    depths=(4, 8, 16, 32, 64),
    widths=(1, 4, 16, 64),
    seeds=4,
    train_depths=(4, 8, 16, 32),
    train_widths=(1, 4, 16),
    train_depth_at=16,
    train_width_at=4,
    train_seeds=2,
    reference=(64, 16),
    equal_blocks=(64,),
    reorder_shapes=(16, 1),
    reorder_seeds=2,
)
_PAPER = Config(
    dim=16,
    block_width=8,
    depths=(8, 16, 32, 64, 128, 256, 512),
    widths=(1, 4, 16, 64, 256, 1024),
    seeds=16,
    train_size=1024,
    test_size=1024,
    train_depths=(8, 16, 32, 64, 128, 256),
    train_widths=(1, 4, 16, 64, 256),
    train_seeds=8,
    reference=(512, 256),
    device="cuda",
)

STUDY = Study(
    name="meanfield.resnet",
    description="Mean-field ResNet/ResNeXt against the ODE in depth: rates in L and M, adjoint, reordering.",
    config=Config,
    presets={"smoke": _SMOKE, "quick": _QUICK, "full": Config(), "paper": _PAPER},
    run=run,
    citations=("lu2020meanfield", "e2020continuous", "xie2017resnext", "mei2018meanfield"),
)
