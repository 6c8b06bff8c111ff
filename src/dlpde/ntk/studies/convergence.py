"""ntk.convergence: finite-width kernels at initialisation converge to the analytic ones.

For fully connected ReLU networks of depth 1-4 and 1-D convolutional networks (global average
pooling), NTK parameterisation, the empirical NTK of one network at width ``m`` deviates from
the infinite-width NTK by ``|K_m - K_inf|_F / |K_inf|_F ~ m^{-1/2}`` (fluctuations), and the mean
over initialisations by ``|E K_m - K_inf| ~ 1/m`` (the finite-width bias, zero for one hidden
layer where ``E K_m = K_inf`` exactly). The exact time derivative ``|dK/dt|`` at ``t = 0`` of a
two-layer tanh network under gradient flow scales like ``1/m`` (Dyer & Gur-Ari 2020).

The bias is measured with ``monte_carlo_kernel`` over ``bias_samples`` networks per width, in
``bias_batches`` independent batches (float32 networks, float64 accumulation). With per-network
fluctuations ``a / sqrt(m)`` and a bias ``b / m``, the Monte Carlo error of the mean over ``n``
networks is ``a / sqrt(m n)``, so the signal to noise ratio is ``(b / a) sqrt(n / m)``: the
networks needed grow like ``m`` (not ``m^2``: the fluctuations shrink too). With ``b / a`` about
0.07 (depth-2 FC) and 0.04 (depth-2 CNN) in the Frobenius norm, 65536 networks per width resolve
the bias at widths 8-64, which is why the bias widths stop there while the fluctuation widths go
on to 1024.

Measured (full preset, ``OMP_NUM_THREADS=1 nice dlpde run ntk.convergence --preset full``, 634 s
wall, 427 CPU s on 2 shared cores; 65536 networks per width, 739-10191 networks/s): bias slopes
-1.008 +- 0.057 (FC depth 2), -0.973 +- 0.031 (3), -0.917 +- 0.047 (4), -1.150 +- 0.301 (CNN
depth 2, widths 8-32; at 64 its largest entry z is 3.4, under the threshold 3.49); bias at width
8: 2.42e-2 +- 0.08e-2 (FC depth 2), 5.54e-2 +- 0.22e-2 (FC depth 4), 1.01e-2 +- 0.17e-2 (CNN depth
2). One hidden layer: no width significant for FC or CNN (largest entry z 1.3-2.8 against 3.49),
as ``E K_m = K_inf`` requires. One-network fluctuation slopes -0.453 to -0.587; ``|dK/dt|``
slope -1.010.

Estimates, relative to ``|K_inf|_F``: ``bias^2 = (|M - K_inf|_F^2 - sum_ij se_ij^2) /
|K_inf|_F^2`` (``M`` the mean, ``se`` its entrywise standard errors: the noise floor removed, an
unbiased estimate of the squared bias); its standard deviation for Gaussian Monte Carlo errors,
``sqrt(4 B^T S B + 2 tr S^2)`` exactly (``B = M - K_inf``, ``S`` the covariance of the entries of
``M`` estimated from the batch means, ``tr S^2`` by the unbiased Wishart estimator), carried to
the norm by the delta method, ``error = sd(bias^2) / (2 bias)`` (first order: it fails where the
bias is near the noise floor, which is what the zero test is for); "significant": some entry ``|M
- K_inf|_ij / se_ij`` above the Bonferroni threshold of a 1% family-wise test over the ``N (N + 1)
/ 2`` distinct entries. The slope is a weighted least squares fit of ``log bias`` on ``log m``
(weights ``(bias / error)^2``, on the significant points with bias above twice its error), its
error from the weights, scaled by ``sqrt(chi^2 / dof)`` where that exceeds 1.
"""

from __future__ import annotations

import dataclasses
import math
import time
from statistics import NormalDist

import numpy as np
import torch

from dlpde.shared import Study, check_choice, make_generator, resolve_device, spawn_seed

from .._alpha import TwoLayerNetwork
from .._diagnostics import kernel_velocity
from .._empirical import empirical_ntk, monte_carlo_kernel
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
    bias_widths: tuple[int, ...] = (8, 16, 32, 64)
    bias_samples: tuple[int, ...] = (65536, 65536, 65536, 65536)
    bias_batches: int = 32
    bias_dtype: str = "float32"
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        check_fields(self, ints={"seeds": 2, "velocity_seeds": 1, "n_inputs": 1, "input_dim": 1,
                                 "cnn_length": 1, "bias_batches": 2},
                     int_tuples={"widths": (2, False), "fc_depths": (1, True), "cnn_depths": (1, True),
                                 "velocity_widths": (1, False), "bias_widths": (2, False),
                                 "bias_samples": (4, False)})
        check_choice(self.bias_dtype, "bias_dtype", ("float32", "float64"))
        if len(self.bias_samples) != len(self.bias_widths):
            raise ValueError(f"bias_samples must give one count per bias width ({len(self.bias_widths)}), "
                             f"got {self.bias_samples!r}")
        if min(self.bias_samples) < 2 * self.bias_batches:
            raise ValueError(f"bias_samples must be at least 2 bias_batches = {2 * self.bias_batches} "
                             f"networks per width, got {self.bias_samples!r}")


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
    """All seeds of one (family, depth, width): relative errors of single networks."""
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
    return {**point, "relative_error": float(errors.mean()), "relative_error_std": float(errors.std())}


def bias_threshold(n_inputs: int, level: float = 0.01) -> float:
    """Bonferroni threshold on ``max |z|`` over the ``N (N + 1) / 2`` distinct entries of a
    symmetric ``N x N`` kernel: a family-wise two-sided test at ``level``."""
    return NormalDist().inv_cdf(1 - level / (n_inputs * (n_inputs + 1)))


def bias_point(task) -> dict:
    """|E K_m - K_inf|_F / |K_inf|_F of one (family, depth, width) from ``monte_carlo_kernel``
    over ``bias_samples`` networks in ``bias_batches`` batches, with its error (module doc); an
    optional ``point["repeat"]`` draws other networks for the same inputs."""
    config, point = task
    device = resolve_device(config.device)
    family, depth, width = point["family"], point["depth"], point["width"]
    spec = spec_of(family, depth, width)
    x = _inputs(config, family).to(device=device, dtype=getattr(torch, config.bias_dtype))
    _, exact = analytic_kernels(spec, x.double())  # of the inputs as the networks see them
    exact = exact.double().cpu()
    n_total = config.bias_samples[config.bias_widths.index(width)]
    batches = config.bias_batches
    per_batch = n_total // batches
    g = make_generator(config.seed * 1_000_003 + 7919 * width + 31 * depth + (17 if family == "cnn" else 0)
                       + 104_729 * point.get("repeat", 0))
    means, variances = [], []
    start = time.perf_counter()
    for _ in range(batches):
        mc = monte_carlo_kernel(spec, x, n_samples=per_batch, seed=spawn_seed(g), get="ntk")
        means.append(mc["ntk"].double().cpu())
        variances.append(mc["ntk_standard_error"].double().cpu() ** 2)
    seconds = time.perf_counter() - start
    means = torch.stack(means)
    mean = means.mean(0)
    variance = torch.stack(variances).sum(0) / batches**2  # of the mean, entry by entry
    norm = float(torch.linalg.norm(exact))
    difference = mean - exact
    raw = float(torch.linalg.norm(difference))
    floor2 = float(variance.sum())
    bias2 = (raw**2 - floor2) / norm**2
    # the covariance S of the mean's entries from the batch means: S = D^T D / (k R), k = R - 1
    centred = (means - mean).flatten(1)
    k = batches - 1
    gram = centred @ centred.T / (k * batches)
    trace_s = float(gram.trace())
    trace_s2 = float(gram.square().sum())
    trace_s2 = k**2 / ((k - 1) * (k + 2)) * (trace_s2 - trace_s**2 / k) if k > 1 else trace_s2  # unbiased
    spread = float((centred @ difference.flatten()).square().sum()) / (k * batches)  # B^T S B
    bias2_error = math.sqrt(max(4 * spread + 2 * max(trace_s2, 0.0), 0.0)) / norm**2
    bias = math.sqrt(max(bias2, 0.0))
    upper = torch.triu_indices(exact.shape[0], exact.shape[1])
    z = (difference / variance.sqrt())[upper[0], upper[1]]
    max_z = float(z.abs().max())
    n = per_batch * batches
    return {**point, "n_samples": n, "bias": bias, "bias_squared": bias2, "bias_squared_error": bias2_error,
            "bias_error": bias2_error / (2 * bias) if bias > 0 else float("inf"),
            "raw_difference": raw / norm, "noise_floor": math.sqrt(floor2) / norm, "max_z": max_z,
            "significant": bool(max_z > bias_threshold(exact.shape[0])),
            "rms_fluctuation": math.sqrt(raw**2 + n * floor2) / norm, "networks_per_second": n / seconds}


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


def weighted_slope(widths, values, errors, use=None) -> dict:
    """Weighted least squares fit of ``log value = c + slope log width`` on the points with value
    above twice its error (and ``use`` true, if given; weights ``(value / error)^2``): slope, its
    error (from the weights, times ``sqrt(chi^2 / dof)`` where that exceeds 1), chi^2, dof and the
    widths used."""
    w, v, e = (np.asarray(a, float) for a in (widths, values, errors))
    ok = np.isfinite(v) & np.isfinite(e) & (e > 0) & (v > 2 * e)
    if use is not None:
        ok &= np.asarray(use, bool)
    out = {"slope": float("nan"), "slope_error": float("nan"), "chi2": float("nan"), "dof": 0,
           "widths": [int(a) for a in w[ok]]}
    if ok.sum() < 2:
        return out
    x, y, weight = np.log(w[ok]), np.log(v[ok]), (v[ok] / e[ok]) ** 2
    design = np.stack([np.ones_like(x), x], 1)
    covariance = np.linalg.inv(design.T @ (weight[:, None] * design))
    beta = covariance @ design.T @ (weight * y)
    chi2 = float((weight * (y - design @ beta) ** 2).sum())
    dof = int(ok.sum()) - 2
    scale = max(1.0, chi2 / dof) if dof > 0 else 1.0
    out.update(slope=float(beta[1]), slope_error=float(math.sqrt(covariance[1, 1] * scale)), chi2=chi2,
               dof=dof)
    return out


def _slope(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(y) & (y > 0)
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0]) if ok.sum() >= 2 else float("nan")


def _families(config):
    return [("fc", d) for d in config.fc_depths] + [("cnn", d) for d in config.cnn_depths]


def run(config: Config, run_dir) -> dict:
    from dlpde.shared import new_figure

    resolve_device(config.device)
    families = _families(config)
    points = [{"family": f, "depth": d, "width": w} for f, d in families for w in config.widths]
    rows = run_dir.map(width_point, [(config, p) for p in points],
                       keys=[f"{p['family']}-d{p['depth']}-w{p['width']}" for p in points],
                       desc="empirical vs analytic NTK")
    run_dir.write_csv("convergence.csv", rows)
    points = [{"family": f, "depth": d, "width": w} for f, d in families for w in config.bias_widths]
    bias_rows = run_dir.map(bias_point, [(config, p) for p in points],
                            keys=[f"bias-{p['family']}-d{p['depth']}-w{p['width']}" for p in points],
                            desc="Monte Carlo mean kernel")
    run_dir.write_csv("bias.csv", bias_rows)
    velocity = run_dir.map(velocity_point, [(config, w) for w in config.velocity_widths],
                           keys=[f"velocity-w{w}" for w in config.velocity_widths], desc="dK/dt at t = 0")
    run_dir.write_csv("velocity.csv", velocity)

    metrics: dict = {"fluctuation_slope": {}, "bias_slope": {}, "bias_slope_error": {},
                     "bias_significant_widths": {}, "bias_at_min_width": {}}
    table = ["| network | depth | slope of one network's error (expected -1/2) | slope of the bias "
             "(expected -1; no bias at depth 1) | widths fitted | bias significant at widths |",
             "|---|---|---|---|---|---|"]
    detail = ["| network | depth | width | networks | bias | error | noise floor | "
              "max entry z | significant | networks/s |", "|---|---|---|---|---|---|---|---|---|---|"]
    fig, axes = new_figure(1, 3, width=4.0, height=3.2)
    for family, depth in families:
        part = sorted((r for r in rows if r["family"] == family and r["depth"] == depth),
                      key=lambda r: r["width"])
        widths = [r["width"] for r in part]
        fluct = _slope(widths, [r["relative_error"] for r in part])
        bias_part = sorted((r for r in bias_rows if r["family"] == family and r["depth"] == depth),
                           key=lambda r: r["width"])
        fit = weighted_slope([r["width"] for r in bias_part], [r["bias"] for r in bias_part],
                             [r["bias_error"] for r in bias_part], [r["significant"] for r in bias_part])
        significant = [r["width"] for r in bias_part if r["significant"]]
        key = f"{family}_depth{depth}"
        metrics["fluctuation_slope"][key] = fluct
        metrics["bias_slope"][key] = fit["slope"]
        metrics["bias_slope_error"][key] = fit["slope_error"]
        metrics["bias_significant_widths"][key] = significant
        metrics["bias_at_min_width"][key] = {name: bias_part[0][name] for name in
                                             ("width", "bias", "bias_error", "max_z", "significant")}
        table.append(f"| {family} | {depth} | {fluct:.3f} | {fit['slope']:.3f} +- {fit['slope_error']:.3f} | "
                     f"{', '.join(map(str, fit['widths'])) or 'none'} | "
                     f"{', '.join(map(str, significant)) or 'none'} |")
        for r in bias_part:
            detail.append(f"| {family} | {depth} | {r['width']} | {r['n_samples']} | {r['bias']:.3e} | "
                          f"{r['bias_error']:.1e} | {r['noise_floor']:.1e} | {r['max_z']:.1f} | "
                          f"{'yes' if r['significant'] else 'no'} | {r['networks_per_second']:.0f} |")
        style = "o-" if family == "fc" else "s--"
        axes[0].loglog(widths, [r["relative_error"] for r in part], style, ms=3, label=key)
        shown = [r for r in bias_part if r["bias"] > 0]
        if shown:
            axes[1].errorbar([r["width"] for r in shown], [r["bias"] for r in shown],
                             yerr=[min(r["bias_error"], 0.99 * r["bias"]) for r in shown],
                             fmt=style, ms=3, label=key)
    w = np.asarray(config.widths, float)
    axes[0].loglog(w, 2.0 * (w / w[0]) ** -0.5, "k:", label="m^-1/2")
    axes[0].set_title("one network: |K_m - K_inf| / |K_inf|", fontsize=9)
    wb = np.asarray(config.bias_widths, float)
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].loglog(wb, 0.05 * (wb / wb[0]) ** -1.0, "k:", label="1/m")
    axes[1].set_title("Monte Carlo mean: |E K_m - K_inf| / |K_inf|", fontsize=9)
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
                        "error bars: Monte Carlo errors over initialisations (delta method for the bias; "
                        "widths where the bias is below the noise floor are not drawn).")
    threshold = bias_threshold(config.n_inputs)
    run_dir.add_section("Slopes", "\n".join(table) + (
        f"\n\n|dK/dt| at t = 0 (two-layer tanh, gradient flow on MSE): slope {vslope:.3f} in the width "
        "(expected -1). The bias slope is a weighted least squares fit on the widths where the bias is "
        "significant and exceeds twice its error; for one hidden layer E K_m = K_inf exactly, so no bias "
        "is expected there "
        "(a real check: 'significant' means some kernel entry departs from the analytic one by more than "
        f"{threshold:.2f} standard errors, the Bonferroni threshold of a 1% test over the distinct "
        "entries)."))
    run_dir.add_section("Bias per width", "\n".join(detail) + (
        "\n\nbias: sqrt of (|M - K_inf|^2 - sum of squared standard errors) / |K_inf|^2 (0 where negative); "
        "error: sqrt(4 B^T S B + 2 tr S^2) / (2 bias |K_inf|^2), S the covariance of the mean's entries "
        "from the batch means (delta method; inf where the bias estimate is 0); "
        "noise floor: |standard errors|_F / |K_inf|_F, what |M - K_inf| would be with no bias."))
    metrics["relative_error_at_max_width"] = {f"{r['family']}_depth{r['depth']}": r["relative_error"]
                                              for r in rows if r["width"] == max(config.widths)}
    return metrics


STUDY = Study(
    name="ntk.convergence",
    description="Empirical -> analytic NTK with width (FC, CNN, depth 1-4): m^-1/2 fluctuations, 1/m bias.",
    config=Config,
    presets={
        "smoke": Config(widths=(16, 64), fc_depths=(2,), cnn_depths=(1,), seeds=3, n_inputs=3,
                        velocity_widths=(32, 128), velocity_seeds=2, bias_widths=(8, 16),
                        bias_samples=(512, 512), bias_batches=4),
        "quick": Config(widths=(32, 128, 512), fc_depths=(1, 2, 3), cnn_depths=(1,), seeds=12,
                        velocity_widths=(64, 256, 1024), velocity_seeds=4, bias_widths=(8, 16, 32),
                        bias_samples=(16384, 16384, 16384), bias_batches=16),
        "full": Config(),
        "paper": Config(widths=(64, 128, 256, 512, 1024, 2048, 4096), seeds=256, n_inputs=16,
                        velocity_widths=(64, 256, 1024, 4096, 16384), velocity_seeds=32,
                        bias_widths=(8, 16, 32, 64, 128, 256),
                        bias_samples=(2**18, 2**18, 2**19, 2**20, 2**21, 2**22), bias_batches=32),
    },
    run=run,
    citations=("jacot2018ntk", "arora2019exact", "novak2020neuraltangents", "dyer2020asymptotics",
               "cho2009kernel"),
)
