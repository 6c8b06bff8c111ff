"""inverse.denoise: Gaussian denoising on held-out images by unrolled diffusion (TRD, with and
without fidelity), pixel-to-pixel networks (DnCNN, U-Net), TV, wavelet shrinkage and BM3D.

Networks are trained on random patches of the training images (``TRAINING_IMAGES``) with fresh
noise each step; they are tested on the held-out ``test_images`` (never seen in training) with
fixed noise. TV uses the PSNR-best weight per image (an oracle, as in the reference numbers).
DnCNN is trained without batch normalisation by default: at these short CPU budgets batch norm
keeps it on the "output the noisy image" plateau (measured here at sigma 25 after 100 steps:
19.9 dB with batch norm against 24.1 dB without; the paper preset restores it).
The ``*-pretrained`` columns evaluate the weights shipped with the package
(``dlpde.inverse.pretrained``, trained by the recipe in ``_pretrained.py`` on the training images
at their native resolution) without any training in the run: the level the methods reach with
a longer budget than the study's own, on the same held-out images and noise.
"""

from __future__ import annotations

import dataclasses
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
    train,
)

from .._data import TEST_IMAGES, load_image, random_patches, training_images
from .._networks import DnCNN, UNet
from .._noise import GaussianNoise
from .._operators import Identity
from .._pretrained import PRETRAINED_SIGMAS, pretrained
from .._solvers import wavelet_denoise
from .._trd import TRD, train_greedy_then_joint
from ._common import best_weight_tv, check_fields, markdown_table, noisy_copy, scores

LEARNED = ("TRD", "TRD-diffusion", "DnCNN", "UNet")
SHIPPED = ("TRD-pretrained", "DnCNN-pretrained", "UNet-pretrained")  # dlpde.inverse.pretrained, no training
CLASSICAL = ("TV", "wavelet", "BM3D")


@dataclasses.dataclass(frozen=True)
class Config:
    sigmas: tuple[float, ...] = (15.0, 25.0, 50.0)
    test_images: tuple[str, ...] = ("camera", "astronaut")
    MEANINGFUL_VALUES: typing.ClassVar[dict] = {
        "test_size": (0,),  # 0: the whole test image, no crop
        "greedy_steps": (0,), "joint_steps": (0,), "diffusion_steps": (0,),  # 0: that stage is skipped
        "network_steps": (0,),
    }
    test_size: int = 0
    methods: tuple[str, ...] = ("TRD", "TRD-diffusion", "DnCNN", "UNet", *SHIPPED, "TV", "wavelet", "BM3D")
    stages: int = 5
    filter_size: int = 5
    greedy_steps: int = 80
    joint_steps: int = 60
    trd_lr: float = 1e-2
    trd_joint_lr: float = 1e-3
    diffusion_steps: int = 120
    diffusion_lr: float = 1e-2
    network_steps: int = 200
    network_lr: float = 1e-3
    dncnn_depth: int = 8
    dncnn_width: int = 24
    dncnn_batch_norm: bool = False
    unet_width: int = 16
    batch: int = 8
    patch: int = 64
    train_side: int = 256
    tv_evaluations: int = 6
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        check_fields(self, positive=("stages", "dncnn_width", "unet_width", "batch", "patch", "train_side"),
                     nonnegative=("test_size", "greedy_steps", "joint_steps", "diffusion_steps",
                                  "network_steps"),
                     reals={"trd_lr": (0.0, 10.0, True), "trd_joint_lr": (0.0, 10.0, True),
                            "diffusion_lr": (0.0, 10.0, True), "network_lr": (0.0, 10.0, True)},
                     flags=("dncnn_batch_norm",),
                     names={"methods": LEARNED + SHIPPED + CLASSICAL, "test_images": TEST_IMAGES})
        if isinstance(self.sigmas, str) or not isinstance(self.sigmas, (tuple, list)) or not self.sigmas:
            raise ValueError(f"sigmas must be a non-empty tuple of noise levels (0-255), got {self.sigmas!r}")
        for sigma in self.sigmas:
            check_real(sigma, "sigmas entry", 0.0, 255.0, strict_minimum=True)
        if set(self.methods) & set(SHIPPED) and not set(self.sigmas) <= set(PRETRAINED_SIGMAS):
            raise ValueError(f"sigmas {self.sigmas}: the pretrained methods exist for sigma in "
                             f"{PRETRAINED_SIGMAS} only")
        check_int(self.filter_size, "filter_size", minimum=2, maximum=15)
        check_int(self.dncnn_depth, "dncnn_depth", minimum=2, maximum=100)
        check_int(self.tv_evaluations, "tv_evaluations", minimum=2)
        if self.test_size and self.test_size < 16 or self.patch < 16:
            raise ValueError(f"test_size (0: full size) and patch must be >= 16, got {self.test_size}, "
                             f"{self.patch}")
        if self.patch > self.train_side:
            raise ValueError(f"patch {self.patch} must be <= train_side {self.train_side}")


def _test_set(config: Config, sigma: float):
    """Clean and noisy held-out images (fixed noise per image and sigma)."""
    noise = GaussianNoise(sigma / 255)
    clean = [load_image(name, config.test_size or None) for name in config.test_images]
    noisy = [noisy_copy(c, noise, 1000 * config.seed + 17 * k + int(sigma))
             for k, c in enumerate(clean)]
    return clean, noisy


def _sampler(config: Config, sigma: float, device):
    images = training_images(max_side=config.train_side)
    noise = GaussianNoise(sigma / 255)

    def sample(g):
        clean = random_patches(images, config.batch, config.patch, g).to(device)
        return noise(clean, g), clean

    return sample


def _evaluate(restore, clean, noisy, device) -> list[dict]:
    out = []
    with torch.no_grad():
        for c, y in zip(clean, noisy):
            estimate = restore(y.to(device)[None])[0].cpu()
            out.append({**scores(estimate, c), "image": estimate.clamp(0, 1).to(torch.float16)})
    return out


def _task(task) -> dict:
    """One (sigma, method) point of the grid; returns per-image scores (and curves)."""
    config, sigma, method, checkpoint_dir, resume = task
    device = resolve_device(config.device)
    clean, noisy = _test_set(config, sigma)
    generator = make_generator(config.seed + int(sigma), "cpu")
    extra = {}
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
    sample = _sampler(config, sigma, device)
    if method == "TRD":
        model = TRD(config.stages, config.filter_size, generator=generator).to(device)
        per_stage = []

        def record(stage, m):
            rows = _evaluate(lambda y: m(y, steps=stage), clean, noisy, device)
            per_stage.append(sum(r["psnr"] for r in rows) / len(rows))

        history = train_greedy_then_joint(model, sample, config.greedy_steps, config.joint_steps,
                                          lr=config.trd_lr, joint_lr=config.trd_joint_lr,
                                          generator=generator, checkpoint_dir=checkpoint_dir,
                                          resume=resume, callback=record)
        extra["psnr_by_stage_greedy"] = per_stage
        restore = model
    elif method == "TRD-diffusion":
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
    else:
        if method == "DnCNN":
            model = DnCNN(config.dncnn_depth, config.dncnn_width, batch_norm=config.dncnn_batch_norm,
                          generator=generator).to(device)
        else:
            model = UNet(2, config.unet_width, generator=generator).to(device)
        g = make_generator(config.seed + 7 + int(sigma), "cpu")

        def loss_fn(step):
            y, x = sample(g)
            return ((model(y) - x) ** 2).mean()

        model.train()
        history = train(model, loss_fn, config.network_steps, lr=config.network_lr, schedule="cosine",
                        generators=[g], checkpoint=f"{checkpoint_dir}/{method}.pt", resume=resume,
                        desc=f"{method} sigma {sigma:g}", log_every=max(1, config.network_steps // 20))
        model.eval()
        restore = model
    return {"images": _evaluate(restore, clean, noisy, device), **extra,
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
    for sigma in config.sigmas:
        for method in methods:
            folder = run_dir.path / "checkpoints" / f"{method}-sigma{sigma:g}"
            folder.mkdir(parents=True, exist_ok=True)
            tasks.append((config, sigma, method, str(folder), run_dir.resume))
            keys.append(f"{method}-sigma{sigma:g}")
    results = dict(zip(keys, run_dir.map(_task, tasks, keys=keys, desc="denoise grid")))

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
            if "TRD" in methods:
                curve = results[f"TRD-sigma{sigma:g}"]["psnr_by_stage_greedy"]
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

    sigma = 25.0 if 25.0 in config.sigmas else config.sigmas[0]
    clean, noisy = _test_set(config, sigma)
    panels = [clean[0], noisy[0].clamp(0, 1)] + [entries(sigma, c)[0]["image"].float() for c in columns]
    titles = ["clean", "noisy"] + [f"{c}\n{entries(sigma, c)[0]['psnr']:.2f} dB" for c in columns]
    run_dir.save_figure(image_grid(panels, titles, ncols=min(5, len(panels))), "panels",
                        caption=f"{config.test_images[0]}, sigma = {sigma:g}: restorations.")
    return metrics


_SMOKE = Config(sigmas=(25.0,), test_images=("camera",), test_size=64, methods=("TRD", "TRD-diffusion",
                "DnCNN", "UNet", "TRD-pretrained", "TV", "wavelet"), stages=2, filter_size=3, greedy_steps=2,
                joint_steps=2, diffusion_steps=2, network_steps=2, dncnn_depth=3, dncnn_width=8,
                unet_width=4, batch=2, patch=32, train_side=64, tv_evaluations=3)
_QUICK = Config(sigmas=(25.0,), test_images=("camera",),
                methods=("TRD", "TRD-diffusion", "UNet", "TRD-pretrained", "TV"), stages=3,
                greedy_steps=60, joint_steps=30, diffusion_steps=100, network_steps=100,
                batch=4, tv_evaluations=6, train_side=192)
_FULL = Config()
_PAPER = Config(stages=5, filter_size=7, greedy_steps=2000, joint_steps=2000, diffusion_steps=4000,
                network_steps=20000, dncnn_depth=17, dncnn_width=64, dncnn_batch_norm=True, unet_width=32,
                batch=64, patch=64, train_side=512)

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
