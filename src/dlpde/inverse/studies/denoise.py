"""inverse.denoise: Gaussian denoising on held-out images by unrolled diffusion (TRD, with and
without fidelity), pixel-to-pixel networks (DnCNN, U-Net), TV, wavelet shrinkage and BM3D.

The learned methods TRD, DnCNN and U-Net are trained in the run by the recipe of the shipped
weights (``dlpde.inverse._pretrained.train_denoiser``: random crops of every training image
(``TRAINING_IMAGES``) at native resolution with the 8 flips/transposes, fresh noise each step,
Adam with a cosine schedule, residual learning, TRD greedy then joint), and tested on the
held-out ``test_images`` (never seen in training) with fixed noise. Each is trained from
scratch at ``warm_from`` (sigma 25) and then, warm-started from those weights, at the other
noise levels (``warm_from=0``: every sigma from scratch). TV uses the PSNR-best weight per
image (an oracle, as in the reference numbers). DnCNN is trained without batch normalisation
by default: at short CPU budgets batch norm keeps it on the "output the noisy image" plateau
(measured at sigma 25 after 100 steps: 19.9 dB with batch norm against 24.1 dB without; the
paper preset restores it). The ``*-pretrained`` columns evaluate the weights shipped with the
package (``dlpde.inverse.pretrained``) without any training in the run.
"""

from __future__ import annotations

import dataclasses
import time
import typing

import torch

from dlpde.shared import (
    Study,
    check_int,
    check_real,
    image_grid,
    make_generator,
    new_figure,
    resolve_device,
)

from .._data import TEST_IMAGES, load_image
from .._noise import GaussianNoise
from .._operators import Identity
from .._pretrained import (
    PRETRAINED_SIGMAS,
    RECIPES,
    build_denoiser,
    pretrained,
    train_denoiser,
    training_sampler,
)
from .._solvers import wavelet_denoise
from .._trd import TRD, train_greedy_then_joint
from ._common import best_weight_tv, check_fields, markdown_table, noisy_copy, scores

LEARNED = ("TRD", "TRD-diffusion", "DnCNN", "UNet")
CHAINED = ("DnCNN", "TRD", "UNet")  # trained by the shipped recipe, every sigma in one task
SHIPPED = ("TRD-pretrained", "DnCNN-pretrained", "UNet-pretrained")  # dlpde.inverse.pretrained, no training
CLASSICAL = ("TV", "wavelet", "BM3D")


@dataclasses.dataclass(frozen=True)
class Config:
    sigmas: tuple[float, ...] = (15.0, 25.0, 50.0)
    test_images: tuple[str, ...] = ("camera", "astronaut")
    MEANINGFUL_VALUES: typing.ClassVar[dict] = {
        "test_size": (0,),  # 0: the whole test image, no crop
        "warm_from": (0.0,),  # 0: every sigma trained from scratch
        "batch": (0,), "patch": (0,),  # 0: the shipped recipe's (dlpde.inverse._pretrained.RECIPES)
        "greedy_steps": (0,), "diffusion_steps": (0,),  # 0: that stage is skipped
    }
    test_size: int = 0
    methods: tuple[str, ...] = ("TRD", "TRD-diffusion", "DnCNN", "UNet", *SHIPPED, "TV", "wavelet", "BM3D")
    warm_from: float = 25.0
    # (steps from scratch at warm_from, steps at each other sigma from the warm_from weights);
    # TRD's count includes its greedy phase (stages x greedy_steps, from scratch only).
    trd_steps: tuple[int, int] = (6000, 1000)
    dncnn_steps: tuple[int, int] = (3500, 2000)
    unet_steps: tuple[int, int] = (2500, 1200)
    greedy_steps: int = 60
    stages: int = 5
    filter_size: int = 5
    diffusion_steps: int = 120
    diffusion_lr: float = 1e-2
    dncnn_depth: int = 8
    dncnn_width: int = 32
    dncnn_batch_norm: bool = False
    unet_width: int = 16
    batch: int = 0
    patch: int = 0
    tv_evaluations: int = 6
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        check_fields(self, positive=("stages", "dncnn_width", "unet_width"),
                     nonnegative=("test_size", "greedy_steps", "diffusion_steps", "batch", "patch"),
                     reals={"diffusion_lr": (0.0, 10.0, True)},
                     flags=("dncnn_batch_norm",),
                     names={"methods": LEARNED + SHIPPED + CLASSICAL, "test_images": TEST_IMAGES},
                     int_tuples={"trd_steps": 2, "dncnn_steps": 2, "unet_steps": 2})
        if isinstance(self.sigmas, str) or not isinstance(self.sigmas, (tuple, list)) or not self.sigmas:
            raise ValueError(f"sigmas must be a non-empty tuple of noise levels (0-255), got {self.sigmas!r}")
        for sigma in self.sigmas:
            check_real(sigma, "sigmas entry", 0.0, 255.0, strict_minimum=True)
        if set(self.methods) & set(SHIPPED) and not set(self.sigmas) <= set(PRETRAINED_SIGMAS):
            raise ValueError(f"sigmas {self.sigmas}: the pretrained methods exist for sigma in "
                             f"{PRETRAINED_SIGMAS} only")
        check_real(self.warm_from, "warm_from", 0.0, 255.0)
        if self.warm_from and self.warm_from not in self.sigmas:
            raise ValueError(f"warm_from {self.warm_from:g} must be one of sigmas {self.sigmas} "
                             "(or 0: every sigma from scratch)")
        if "TRD" in self.methods and self.trd_steps[0] < self.stages * self.greedy_steps:
            raise ValueError(f"trd_steps[0] = {self.trd_steps[0]} must be >= stages x greedy_steps = "
                             f"{self.stages * self.greedy_steps} (it includes the greedy phase)")
        check_int(self.filter_size, "filter_size", minimum=2, maximum=15)
        check_int(self.dncnn_depth, "dncnn_depth", minimum=2, maximum=100)
        check_int(self.tv_evaluations, "tv_evaluations", minimum=2)
        if self.test_size and self.test_size < 16 or self.patch and self.patch < 16:
            raise ValueError(f"test_size and patch (0: the default) must be >= 16, got {self.test_size}, "
                             f"{self.patch}")


def _test_set(config: Config, sigma: float):
    """Clean and noisy held-out images (fixed noise per image and sigma)."""
    noise = GaussianNoise(sigma / 255)
    clean = [load_image(name, config.test_size or None) for name in config.test_images]
    noisy = [noisy_copy(c, noise, 1000 * config.seed + 17 * k + int(sigma))
             for k, c in enumerate(clean)]
    return clean, noisy


def _evaluate(restore, clean, noisy, device) -> list[dict]:
    out = []
    with torch.no_grad():
        for c, y in zip(clean, noisy):
            estimate = restore(y.to(device)[None])[0].cpu()
            out.append({**scores(estimate, c), "image": estimate.clamp(0, 1).to(torch.float16)})
    return out


def _recipe(config: Config, method: str, steps: int, warm: bool) -> dict:
    """The shipped recipe of ``method`` with the study's step count (and batch, patch)."""
    recipe = {**RECIPES[method], "steps": steps}
    for key in ("batch", "patch"):
        if getattr(config, key):
            recipe[key] = getattr(config, key)
    if method == "trd":
        recipe["greedy_steps"] = 0 if warm else config.greedy_steps
    return recipe


def _architecture(config: Config, method: str) -> dict:
    if method == "trd":
        return {"stages": config.stages, "filter_size": config.filter_size}
    if method == "dncnn":
        return {"depth": config.dncnn_depth, "width": config.dncnn_width,
                "batch_norm": config.dncnn_batch_norm}
    return {"levels": 2, "width": config.unet_width}


def _order(config: Config) -> list[float]:
    """The noise levels in training order: ``warm_from`` first (from scratch), then the rest."""
    return sorted(config.sigmas, key=lambda s: s != config.warm_from)


def _global_steps(history: list[dict]) -> list[tuple[int, float]]:
    """(step counted over all phases, loss) of a training history whose rows may restart their
    step count in each phase (TRD's greedy stages, then the joint phase)."""
    out, offset, last, phase = [], 0, 0, None
    for row in history:
        if row.get("phase") != phase:
            offset, phase = offset + last, row.get("phase")
        last = row["step"]
        out.append((offset + row["step"], row["loss"]))
    return out


def _train_chain(config: Config, method: str, checkpoint_dir: str, device) -> dict:
    """Train one learned method (``"TRD"``, ``"DnCNN"``, ``"UNet"``) at every sigma, from
    scratch at ``warm_from`` and warm-started from those weights elsewhere; per-sigma results
    (test scores, loss curve, CPU seconds). Each sigma checkpoints in its own folder, so a
    resumed run skips what finished."""
    key = method.lower()
    steps = {"trd": config.trd_steps, "dncnn": config.dncnn_steps, "unet": config.unet_steps}[key]
    scratch_state = None
    out = {}
    for sigma in _order(config):
        warm = bool(config.warm_from) and sigma != config.warm_from
        model = build_denoiser(key, _architecture(config, key),
                               generator=make_generator(config.seed, "cpu")).to(device)
        if warm:
            model.load_state_dict(scratch_state)
        clean, noisy = _test_set(config, sigma)
        per_stage = []

        def record(stage, m, clean=clean, noisy=noisy):
            rows = _evaluate(lambda y: m(y, steps=stage), clean, noisy, device)
            per_stage.append(sum(r["psnr"] for r in rows) / len(rows))

        start, count = time.process_time(), steps[1 if warm else 0]
        history = [] if count == 0 else train_denoiser(
            model, key, sigma, _recipe(config, key, count, warm), seed=config.seed + int(sigma),
            checkpoint_dir=f"{checkpoint_dir}/sigma{sigma:g}", device=device, progress=True,
            callback=record if key == "trd" else None)
        seconds = time.process_time() - start
        if scratch_state is None:
            scratch_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        thin = max(1, len(history) // 200)
        out[sigma] = {"images": _evaluate(model, clean, noisy, device),
                      "final_loss": history[-1]["loss"] if history else float("nan"),
                      "loss_curve": _global_steps(history)[::thin],
                      "cpu_seconds": seconds, "warm_started": warm,
                      **({"psnr_by_stage_greedy": per_stage} if per_stage else {})}
    return out


def _task(task) -> dict:
    """One (sigma, method) point of the grid, or (for TRD, DnCNN, U-Net) one method at every
    sigma (``sigma`` None); returns per-image scores (and curves)."""
    config, sigma, method, checkpoint_dir, resume = task
    device = resolve_device(config.device)
    if sigma is None:
        return _train_chain(config, method, checkpoint_dir, device)
    clean, noisy = _test_set(config, sigma)
    if method == "TV":
        results = []
        for c, y in zip(clean, noisy):
            s = sigma / 255
            estimate, weight = best_weight_tv(Identity(), y.double()[None], c.double()[None],
                                              0.3 * s, 2.0 * s, config.tv_evaluations)
            results.append({**scores(estimate[0], c), "image": estimate[0].clamp(0, 1).half(),
                            "weight": weight})
        return {"images": results}
    if method in SHIPPED:
        model = pretrained(method.split("-")[0].lower(), int(sigma), device)
        return {"images": _evaluate(model, clean, noisy, device)}
    if method == "wavelet":
        return {"images": _evaluate(lambda y: wavelet_denoise(y, sigma / 255), clean, noisy, device)}
    if method == "BM3D":
        import bm3d

        def restore(y):
            return torch.tensor(bm3d.bm3d(y[0].double().cpu().numpy(), sigma / 255))[None]

        return {"images": _evaluate(restore, clean, noisy, device)}
    # TRD-diffusion: no fidelity term, shared parameters, a learned stopping time.
    generator = make_generator(config.seed + int(sigma), "cpu")
    recipe = _recipe(config, "trd", config.diffusion_steps, warm=False)
    sample = training_sampler(sigma, recipe["batch"], recipe["patch"], device)
    model = TRD(config.stages, config.filter_size, fidelity=False, generator=generator).to(device)
    history = train_greedy_then_joint(model, sample, config.diffusion_steps, 0,
                                      lr=config.diffusion_lr, generator=generator,
                                      checkpoint_dir=checkpoint_dir, resume=resume)
    with torch.no_grad():  # one pass gives every stopping step 1..3 * stages
        paths = [model(y.to(device)[None], steps=3 * config.stages, return_all=True) for y in noisy]
    per_step = [[{**scores(path[s][0].cpu(), c), "image": path[s][0].cpu().clamp(0, 1).half()}
                 for s in range(len(path))] for path, c in zip(paths, clean)]
    curve = [sum(p[s]["psnr"] for p in per_step) / len(per_step) for s in range(3 * config.stages)]
    best = max(range(len(curve)), key=curve.__getitem__) + 1
    return {"images": [p[config.stages - 1] for p in per_step], "psnr_by_step": curve,
            "best_steps": best, "learned_time": model.stopping_time,
            "best": [p[best - 1] for p in per_step],
            "final_loss": history[-1]["loss"] if history else float("nan")}


def _methods(config: Config) -> list[str]:
    methods = list(config.methods)
    if "BM3D" in methods:
        try:
            import bm3d  # noqa: F401
        except ImportError:
            methods.remove("BM3D")
    return methods


def run(config: Config, run_dir) -> dict:
    methods = _methods(config)
    tasks, keys = [], []
    for method in sorted(set(methods) & set(CHAINED), key=CHAINED.index):  # the longest first
        folder = run_dir.path / "checkpoints" / method
        folder.mkdir(parents=True, exist_ok=True)
        tasks.append((config, None, method, str(folder), run_dir.resume))
        keys.append(f"{method}-all-sigmas")
    for sigma in config.sigmas:
        for method in methods:
            if method in CHAINED:
                continue
            folder = run_dir.path / "checkpoints" / f"{method}-sigma{sigma:g}"
            folder.mkdir(parents=True, exist_ok=True)
            tasks.append((config, sigma, method, str(folder), run_dir.resume))
            keys.append(f"{method}-sigma{sigma:g}")
    results = {}
    for key, result in zip(keys, run_dir.map(_task, tasks, keys=keys, desc="denoise grid")):
        if key.endswith("-all-sigmas"):
            results.update({f"{key[:-len('-all-sigmas')]}-sigma{s:g}": r for s, r in result.items()})
        else:
            results[key] = result

    rows, table, metrics = [], [], {}
    columns = []
    for method in methods:
        columns.append(method)
        if method == "TRD-diffusion":
            columns.append("TRD-diffusion (best stop)")

    def entries(sigma, column):
        result = results[f"{column.split(' ')[0]}-sigma{sigma:g}"]
        return result["best"] if column.endswith("(best stop)") else result["images"]

    for sigma in config.sigmas:
        for k, name in enumerate(config.test_images):
            psnr_row, ssim_row = [f"{sigma:g}", name, "PSNR"], [f"{sigma:g}", name, "SSIM"]
            for column in columns:
                entry = entries(sigma, column)[k]
                psnr_row.append(entry["psnr"])
                ssim_row.append(f"{entry['ssim']:.3f}")
                rows.append({"sigma": sigma, "image": name, "method": column, "psnr": entry["psnr"],
                             "ssim": entry["ssim"]})
                metrics[f"sigma{sigma:g}.{name}.{column}.psnr"] = entry["psnr"]
            table += [psnr_row, ssim_row]
    run_dir.write_csv("denoise_scores.csv", rows)
    run_dir.add_section("PSNR (dB) and SSIM on held-out images", markdown_table(
        ["sigma", "image", "metric", *columns], table) + "\n\nTV at its PSNR-best weight (oracle); "
        "TRD-diffusion: no fidelity term, at its learned stopping time and at the best one.")

    if "TRD" in methods or "TRD-diffusion" in methods:
        fig, axes = new_figure(1, 2, width=4.0, height=3.2)
        for sigma in config.sigmas:
            curve = results.get(f"TRD-sigma{sigma:g}", {}).get("psnr_by_stage_greedy")
            if curve:  # trained from scratch at this sigma
                axes[0].plot(range(1, len(curve) + 1), curve, marker="o", label=f"sigma {sigma:g}")
            if "TRD-diffusion" in methods:
                r = results[f"TRD-diffusion-sigma{sigma:g}"]
                axes[1].plot(range(1, len(r["psnr_by_step"]) + 1), r["psnr_by_step"], marker=".",
                             label=f"sigma {sigma:g}")
                axes[1].axvline(config.stages, color="gray", lw=0.8, ls="--")
                metrics[f"sigma{sigma:g}.diffusion_best_steps"] = r["best_steps"]
                metrics[f"sigma{sigma:g}.diffusion_learned_time"] = r["learned_time"]
        axes[0].set(xlabel="stages (greedy training)", ylabel="mean PSNR (dB)", title="TRD with fidelity")
        axes[1].set(xlabel="diffusion steps", ylabel="mean PSNR (dB)",
                    title="TRD without fidelity (dashed: learned stop)")
        for ax in axes:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        run_dir.save_figure(fig, "psnr_by_stage", caption="Mean test PSNR against the number of "
                            "stages (TRD, greedy models) and of diffusion steps (no fidelity).")

    chained = [m for m in methods if m in CHAINED]
    if chained:
        fig, axes = new_figure(1, len(chained), width=3.6, height=3.0)
        for ax, method in zip(axes, chained):
            for sigma in config.sigmas:
                r = results[f"{method}-sigma{sigma:g}"]
                steps, losses = zip(*r["loss_curve"]) if r["loss_curve"] else ((), ())
                ax.semilogy(steps, losses, lw=0.8, label=f"sigma {sigma:g}"
                            + (" (warm start)" if r["warm_started"] else ""))
                metrics[f"sigma{sigma:g}.{method}.cpu_seconds"] = r["cpu_seconds"]
            ax.set(xlabel="training step", ylabel="training MSE", title=method)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        run_dir.save_figure(fig, "training_curves", caption="Training loss (mean squared error on the "
                            "batch) of the networks trained in the run, per noise level (TRD: a jump at "
                            "each new greedy stage and at the joint phase).")

    sigma = 25.0 if 25.0 in config.sigmas else config.sigmas[0]
    clean, noisy = _test_set(config, sigma)
    panels = [clean[0], noisy[0].clamp(0, 1)] + [entries(sigma, c)[0]["image"].float() for c in columns]
    titles = ["clean", "noisy"] + [f"{c}\n{entries(sigma, c)[0]['psnr']:.2f} dB" for c in columns]
    run_dir.save_figure(image_grid(panels, titles, ncols=min(5, len(panels))), "panels",
                        caption=f"{config.test_images[0]}, sigma = {sigma:g}: restorations.")
    return metrics


_SMOKE = Config(sigmas=(25.0,), test_images=("camera",), test_size=64, methods=("TRD", "TRD-diffusion",
                "DnCNN", "UNet", "TRD-pretrained", "TV", "wavelet"), stages=2, filter_size=3, greedy_steps=2,
                trd_steps=(6, 2), dncnn_steps=(2, 2), unet_steps=(2, 2), diffusion_steps=2, dncnn_depth=3,
                dncnn_width=8, unet_width=4, batch=2, patch=32, tv_evaluations=3)
_QUICK = Config(sigmas=(25.0,), test_images=("camera",),
                methods=("TRD", "TRD-diffusion", "UNet", "TRD-pretrained", "TV"), stages=3,
                greedy_steps=60, trd_steps=(240, 0), unet_steps=(300, 0), diffusion_steps=100,
                tv_evaluations=6)
# Full: 1044 s wall, 2068 s CPU on 2 cores (--engine local --workers 2). Measured PSNR of the
# networks trained in the run, camera / astronaut, against best-weight TV and BM3D:
#   sigma 15: TRD 31.24 / 32.83, DnCNN 31.40 / 33.02, U-Net 31.31 / 32.37; TV 30.95 / 31.67
#   sigma 25: TRD 29.30 / 30.17, DnCNN 29.21 / 30.02, U-Net 29.12 / 29.50; TV 28.87 / 29.06,
#             BM3D 29.85 / 31.24
#   sigma 50: TRD 27.09 / 26.80, DnCNN 26.90 / 26.65, U-Net 26.82 / 26.28; TV 26.59 / 25.87
_FULL = Config()
_PAPER = Config(stages=5, filter_size=7, greedy_steps=2000, trd_steps=(12000, 4000), diffusion_steps=4000,
                dncnn_steps=(20000, 10000), unet_steps=(20000, 10000), dncnn_depth=17, dncnn_width=64,
                dncnn_batch_norm=True, unet_width=32, batch=64, patch=64)

STUDY = Study(
    name="inverse.denoise",
    description="Denoising on held-out images: TRD (+/- fidelity), DnCNN, U-Net vs TV, wavelets, BM3D.",
    config=Config,
    presets={"smoke": _SMOKE, "quick": _QUICK, "full": _FULL, "paper": _PAPER},
    run=run,
    citations=("chen2017trainable", "effland2020variational", "zhang2017dncnn", "ronneberger2015unet",
               "rudin1992nonlinear", "chambolle2011primal", "donoho1995adapting", "dabov2007bm3d",
               "wang2004ssim"),
)
