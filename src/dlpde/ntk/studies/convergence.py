"""ntk.convergence: finite-width kernels at initialisation converge to the analytic ones.

For fully connected ReLU networks of depth 1-4 and 1-D convolutional networks (global average
pooling), NTK parameterisation, the empirical NTK of one network at width ``m`` deviates from
the infinite-width NTK by ``|K_m - K_inf|_F / |K_inf|_F ~ m^{-1/2}`` (fluctuations), and the mean
over initialisations by ``|E K_m - K_inf| ~ 1/m`` (the finite-width bias, zero for one hidden
layer where ``E K_m = K_inf`` exactly). The exact time derivative ``|dK/dt|`` at ``t = 0`` of a
two-layer tanh network under gradient flow scales like ``1/m`` (Dyer & Gur-Ari 2020).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from dlpde.shared import Study, make_generator, resolve_device

from .._alpha import TwoLayerNetwork
from .._diagnostics import kernel_velocity
from .._empirical import empirical_ntk
from .._spec import Conv, Dense, GlobalAvgPool, Relu, Serial, analytic_kernels, build_network
from ._checks import check_fields


@dataclasses.dataclass(frozen=True)
class Config:
    widths: tuple[int, ...] = (32, 64, 128, 256, 512, 1024)
    fc_depths: tuple[int, ...] = (1, 2, 3, 4)
    cnn_depths: tuple[int, ...] = (1, 2)
    seeds: int = 24
    n_inputs: int = 6
    input_dim: int = 8
    cnn_length: int = 8
    velocity_widths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)
    velocity_seeds: int = 8
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        check_fields(self, ints={"seeds": 2, "velocity_seeds": 1, "n_inputs": 1, "input_dim": 1,
                                 "cnn_length": 1},
                     int_tuples={"widths": (2, False), "fc_depths": (1, True), "cnn_depths": (1, True),
                                 "velocity_widths": (1, False)})


def spec_of(family: str, depth: int, width: int):
    """The network: ``depth`` hidden layers of ``width`` (ReLU, W_std = sqrt 2, b_std = 0.1)."""
    if family == "fc":
        layers = [layer for _ in range(depth) for layer in (Dense(width, math.sqrt(2), 0.1), Relu())]
        return Serial(*layers, Dense(1, 1.0, 0.1))
    conv = Conv(width, (3,), (1,), "CIRCULAR", math.sqrt(2), 0.1)
    layers = [layer for _ in range(depth) for layer in (conv, Relu())]
    return Serial(*layers, GlobalAvgPool(), Dense(1, 1.0, 0.1))


def _inputs(config, family):
    g = make_generator(config.seed, "cpu")
    shape = (config.input_dim,) if family == "fc" else (2, config.cnn_length)
    return torch.randn(config.n_inputs, *shape, generator=g, dtype=torch.float64)


def width_point(task) -> dict:
    """All seeds of one (family, depth, width): relative errors and the mean kernel."""
    config, point = task
    device = resolve_device(config.device)
    spec = spec_of(point["family"], point["depth"], point["width"])
    x = _inputs(config, point["family"]).to(device)
    _, exact = analytic_kernels(spec, x)
    kernels = []
    for s in range(config.seeds):
        seed = config.seed * 1_000_003 + 7919 * point["width"] + 31 * point["depth"] + s
        net = build_network(spec, x.shape[1:], seed, torch.float64, device)
        kernels.append(empirical_ntk(net, x).detach().cpu())
    kernels = torch.stack(kernels)
    exact = exact.cpu()
    norm = float(torch.linalg.norm(exact))
    errors = torch.linalg.norm((kernels - exact).flatten(1), dim=1) / norm
    mean = kernels.mean(0)
    # Monte Carlo error of |E K_m - K_inf|: the norm of the standard error of the mean
    bias_error = float(torch.linalg.norm(kernels.std(0) / math.sqrt(config.seeds))) / norm
    return {**point, "relative_error": float(errors.mean()), "relative_error_std": float(errors.std()),
            "bias": float(torch.linalg.norm(mean - exact)) / norm, "bias_error": bias_error}


def velocity_point(task) -> dict:
    """|dK/dt| at t = 0 (exact, torch.func) for a two-layer tanh network of one width."""
    config, width = task
    device = resolve_device(config.device)
    g = make_generator(config.seed + 1, "cpu")
    x = torch.randn(config.n_inputs * 2, config.input_dim, generator=g, dtype=torch.float64).to(device)
    y = torch.sin(x[:, 0]) + 0.5 * x[:, 1]
    norms = [float(torch.linalg.norm(kernel_velocity(
        TwoLayerNetwork(config.input_dim, width, "tanh", seed=config.seed * 1_000_003 + 13 * width + s,
                        device=device), x, y))) for s in range(config.velocity_seeds)]
    return {"width": width, "velocity_norm": float(np.mean(norms)),
            "velocity_norm_error": float(np.std(norms) / math.sqrt(len(norms)))}


def _slope(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(y) & (y > 0)
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0]) if ok.sum() >= 2 else float("nan")


def run(config: Config, run_dir) -> dict:
    from dlpde.shared import new_figure

    resolve_device(config.device)
    points = ([{"family": "fc", "depth": d, "width": w} for d in config.fc_depths for w in config.widths]
              + [{"family": "cnn", "depth": d, "width": w} for d in config.cnn_depths for w in config.widths])
    rows = run_dir.map(width_point, [(config, p) for p in points],
                       keys=[f"{p['family']}-d{p['depth']}-w{p['width']}" for p in points],
                       desc="empirical vs analytic NTK")
    run_dir.write_csv("convergence.csv", rows)
    velocity = run_dir.map(velocity_point, [(config, w) for w in config.velocity_widths],
                           keys=[f"velocity-w{w}" for w in config.velocity_widths], desc="dK/dt at t = 0")
    run_dir.write_csv("velocity.csv", velocity)

    metrics: dict = {"fluctuation_slope": {}, "bias_slope": {}}
    table = ["| network | depth | slope of |K_m - K_inf| (expected -1/2) | slope of |E K_m - K_inf| "
             "(expected -1) | bias significant at widths |", "|---|---|---|---|---|"]
    fig, axes = new_figure(1, 3, width=4.0, height=3.2)
    for family, depths in (("fc", config.fc_depths), ("cnn", config.cnn_depths)):
        for depth in depths:
            part = sorted((r for r in rows if r["family"] == family and r["depth"] == depth),
                          key=lambda r: r["width"])
            widths = [r["width"] for r in part]
            fluct = _slope(widths, [r["relative_error"] for r in part])
            significant = [r for r in part if r["bias"] > 3 * r["bias_error"]]
            bias = _slope([r["width"] for r in significant], [r["bias"] for r in significant]) \
                if len(significant) >= 2 else float("nan")
            key = f"{family}_depth{depth}"
            metrics["fluctuation_slope"][key] = fluct
            metrics["bias_slope"][key] = bias
            table.append(f"| {family} | {depth} | {fluct:.3f} | {bias:.3f} | "
                         f"{', '.join(str(r['width']) for r in significant) or 'none'} |")
            style = "o-" if family == "fc" else "s--"
            axes[0].loglog(widths, [r["relative_error"] for r in part], style, ms=3, label=key)
            axes[1].errorbar(widths, [r["bias"] for r in part], yerr=[r["bias_error"] for r in part],
                             fmt=style, ms=3, label=key)
    w = np.asarray(config.widths, float)
    axes[0].loglog(w, 2.0 * (w / w[0]) ** -0.5, "k:", label="m^-1/2")
    axes[0].set_title("one network: |K_m - K_inf| / |K_inf|", fontsize=9)
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].loglog(w, 0.3 * (w / w[0]) ** -1.0, "k:", label="1/m")
    axes[1].set_title("mean over seeds: |E K_m - K_inf| / |K_inf|", fontsize=9)
    vw = [r["width"] for r in velocity]
    vslope = _slope(vw, [r["velocity_norm"] for r in velocity])
    metrics["velocity_slope_tanh"] = vslope
    axes[2].errorbar(vw, [r["velocity_norm"] for r in velocity],
                     yerr=[r["velocity_norm_error"] for r in velocity], fmt="o-", ms=3,
                     label=f"tanh, slope {vslope:.3f}")
    axes[2].set_xscale("log")
    axes[2].set_yscale("log")
    axes[2].set_title("|dK/dt| at t = 0 (exact)", fontsize=9)
    for ax in axes:
        ax.set_xlabel("width m")
        ax.legend(fontsize=6)
    run_dir.save_figure(fig, "convergence", "Empirical NTK against the analytic NTK as the width grows; "
                        "error bars: Monte Carlo standard errors over initialisations.")
    run_dir.add_section("Slopes", "\n".join(table) + (
        f"\n\n|dK/dt| at t = 0 (two-layer tanh, gradient flow on MSE): slope {vslope:.3f} in the width "
        "(expected -1). The bias slope is fitted on widths where the bias exceeds 3 Monte Carlo errors; "
        "for one hidden layer E K_m = K_inf exactly, so no bias is expected there."))
    metrics["relative_error_at_max_width"] = {f"{r['family']}_depth{r['depth']}": r["relative_error"]
                                              for r in rows if r["width"] == max(config.widths)}
    return metrics


STUDY = Study(
    name="ntk.convergence",
    description="Empirical -> analytic NTK with width (FC, CNN, depth 1-4): m^-1/2 fluctuations, 1/m bias.",
    config=Config,
    presets={
        "smoke": Config(widths=(16, 64), fc_depths=(2,), cnn_depths=(1,), seeds=3, n_inputs=3,
                        velocity_widths=(32, 128), velocity_seeds=2),
        "quick": Config(widths=(32, 128, 512), fc_depths=(1, 2, 3), cnn_depths=(1,), seeds=12,
                        velocity_widths=(64, 256, 1024), velocity_seeds=4),
        "full": Config(),
        "paper": Config(widths=(64, 128, 256, 512, 1024, 2048, 4096), seeds=256, n_inputs=16,
                        velocity_widths=(64, 256, 1024, 4096, 16384), velocity_seeds=32),
    },
    run=run,
    citations=("jacot2018ntk", "arora2019exact", "novak2020neuraltangents", "dyer2020asymptotics",
               "cho2009kernel"),
)
