"""inverse.deblur: Gaussian and motion deblurring with noise. Unrolled proximal gradient with a TV
prior and learned per-stage steps and thresholds (the fidelity term kept, hyperparameters
learned) against TV by Chambolle-Pock (PSNR-best weight; at as many iterations as the network
has stages, and converged), the Wiener filter and Richardson-Lucy (PSNR-best stopping and the
discrepancy principle). Held-out test images; training on patches of the training images.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import torch

from dlpde.shared import Study, check_int, image_grid, make_generator, resolve_device, train

from .._data import TEST_IMAGES, load_image, random_patches, training_images
from .._networks import UnrolledProximalGradient
from .._noise import GaussianNoise, psnr
from .._operators import GaussianBlur, MotionBlur
from .._solvers import StoppingRule, richardson_lucy, total_variation_restoration, wiener_deconvolution
from ._common import best_weight_tv, check_fields, markdown_table, noisy_copy, scores

BLURS = ("gaussian", "motion")


@dataclasses.dataclass(frozen=True)
class Config:
    MEANINGFUL_VALUES: typing.ClassVar[dict] = {
        "motion_angle": "any",  # degrees
        "steps": (0,),  # 0: the unrolled network is evaluated untrained
    }
    blurs: tuple[str, ...] = BLURS
    gaussian_sigma: float = 2.0
    motion_length: float = 9.0
    motion_angle: float = 30.0
    noise: float = 2.55
    test_images: tuple[str, ...] = ("camera", "astronaut")
    size: int = 256
    stages: int = 10
    inner: int = 10
    steps: int = 150
    lr: float = 0.05
    batch: int = 4
    patch: int = 64
    train_side: int = 256
    tv_evaluations: int = 6
    tv_iterations: int = 200
    rl_iterations: int = 100
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        check_fields(self, positive=("size", "stages", "inner", "batch", "patch", "train_side",
                                     "tv_iterations", "rl_iterations"),
                     nonnegative=("steps",),
                     reals={"gaussian_sigma": (0.0, 50.0, True), "motion_length": (0.0, 200.0, True),
                            "motion_angle": (-360.0, 360.0, False), "noise": (0.0, 255.0, True),
                            "lr": (0.0, 10.0, True)},
                     names={"blurs": BLURS, "test_images": TEST_IMAGES})
        if self.size < 16 or self.patch < 16:
            raise ValueError(f"size and patch must be >= 16, got {self.size}, {self.patch}")
        if self.patch > self.train_side:
            raise ValueError(f"patch {self.patch} must be <= train_side {self.train_side}")
        check_int(self.tv_evaluations, "tv_evaluations", minimum=2)


def _operator(config: Config, blur: str):
    if blur == "gaussian":
        return GaussianBlur(config.gaussian_sigma, boundary="reflect")
    return MotionBlur(config.motion_length, config.motion_angle, boundary="reflect")


def _task(task) -> dict:
    """All methods for one blur (a RunDir.map task)."""
    config, blur, checkpoint = task
    device = resolve_device(config.device)
    operator = _operator(config, blur)
    circular = _operator(config, blur)
    circular.boundary = "circular"
    noise = GaussianNoise(config.noise / 255)
    clean = [load_image(name, config.size) for name in config.test_images]
    observed = [noisy_copy(operator(c[None].double())[0], noise, 31 * k + config.seed).float()
                for k, c in enumerate(clean)]
    results = {}

    # Unrolled proximal gradient, TV prior, learned steps and thresholds.
    images = training_images(max_side=config.train_side)
    g = make_generator(config.seed + 5, "cpu")
    network = UnrolledProximalGradient(operator, "tv", config.stages, learn=("step", "threshold"),
                                       threshold=2 * config.noise / 255, operator_norm=1.0,
                                       inner=config.inner).to(device)

    def loss_fn(step):
        x = random_patches(images, config.batch, config.patch, g).to(device)
        y = noise(operator(x), g)
        return ((network(y) - x) ** 2).mean()

    history = train(network, loss_fn, config.steps, lr=config.lr, schedule="cosine", generators=[g],
                    checkpoint=checkpoint, resume=False, desc=f"unrolled PG {blur}",
                    log_every=max(1, config.steps // 10))
    with torch.no_grad():
        results["unrolled PG (learned)"] = [network(y.to(device)[None])[0].cpu() for y in observed]
    results["TV (same iterations)"], results["TV (converged)"], weights = [], [], []
    results["Wiener"], results["RL (best stop)"], results["RL (discrepancy)"] = [], [], []
    for c, y in zip(clean, observed):
        # float32: the reflect-boundary convolutions are about 10x slower in float64 on CPU, and
        # float32 round-off is far below the PSNR differences reported.
        yd, cd = y.float()[None], c.float()[None]
        s = config.noise / 255
        estimate, weight = best_weight_tv(operator, yd, cd, 0.05 * s, 2.0 * s, config.tv_evaluations,
                                          config.tv_iterations)
        weights.append(weight)
        results["TV (converged)"].append(estimate[0])
        short = total_variation_restoration(operator, yd, weight, stopping=config.stages,
                                            x0=operator.adjoint(yd))
        results["TV (same iterations)"].append(short.solution[0])
        best = max((float(psnr(wiener_deconvolution(circular, yd, r).clamp(0, 1), cd)), r)
                   for r in [10 ** (k / 4) for k in range(-16, 1)])
        results["Wiener"].append(wiener_deconvolution(circular, yd, best[1])[0])
        path = []
        richardson_lucy(operator, yd.clamp_min(0), stopping=config.rl_iterations,
                        callback=lambda k, x: path.append((float(psnr(x.clamp(0, 1), cd)), k, x)))
        results["RL (best stop)"].append(max(path, key=lambda t: t[0])[2][0])
        stopped = richardson_lucy(operator, yd.clamp_min(0), stopping=StoppingRule(
            config.rl_iterations, noise_level=s))
        results["RL (discrepancy)"].append(stopped.solution[0])
    return {"scores": {m: [scores(e, c) for e, c in zip(est, clean)] for m, est in results.items()},
            "images": {m: est[0].float().clamp(0, 1).half() for m, est in results.items()},
            "observed": observed[0].clamp(0, 1).half(), "tv_weights": weights,
            "learned_steps": network.log_steps.detach().exp().tolist(),
            "learned_thresholds": network.log_thresholds.detach().exp().tolist(),
            "final_loss": history[-1]["loss"] if history else math.nan}


def run(config: Config, run_dir) -> dict:
    tasks = [(config, blur, str(run_dir.checkpoint_path(f"upg-{blur}"))) for blur in config.blurs]
    results = dict(zip(config.blurs, run_dir.map(_task, tasks, keys=list(config.blurs), desc="blurs")))
    metrics, rows, table = {}, [], []
    for blur, result in results.items():
        for method, per_image in result["scores"].items():
            for name, s in zip(config.test_images, per_image):
                rows.append({"blur": blur, "image": name, "method": method, **s})
                metrics[f"{blur}.{name}.{method}.psnr"] = s["psnr"]
            table.append([blur, method] + [f"{s['psnr']:.2f} / {s['ssim']:.3f}" for s in per_image])
        run_dir.add_section(f"Learned hyperparameters, {blur} blur", (
            "step sizes per stage: " + ", ".join(f"{v:.3g}" for v in result["learned_steps"]) +
            "\n\nthresholds per stage: " + ", ".join(f"{v:.3g}" for v in result["learned_thresholds"]) +
            "\n\nPSNR-best TV weights: " + ", ".join(f"{v:.3g}" for v in result["tv_weights"])))
        methods = list(result["images"])
        clean = load_image(config.test_images[0], config.size)
        panels = [clean, result["observed"].float()] + [result["images"][m].float() for m in methods]
        titles = ["clean", "observed"] + [f"{m}\n{result['scores'][m][0]['psnr']:.2f} dB" for m in methods]
        run_dir.save_figure(image_grid(panels, titles, ncols=5), f"panels_{blur}",
                            caption=f"{config.test_images[0]}, {blur} blur, noise {config.noise:g}/255.")
    run_dir.write_csv("deblur_scores.csv", rows)
    run_dir.add_section("PSNR (dB) / SSIM on held-out images", markdown_table(
        ["blur", "method", *config.test_images], table) + f"\n\nUnrolled PG and 'TV (same "
        f"iterations)' use {config.stages} iterations; TV, Wiener and RL (best stop) use oracle "
        f"(PSNR-best) parameters (TV: golden-section search on log(weight), {config.tv_evaluations} "
        f"weights, each run to relative change 1e-5 or {config.tv_iterations} iterations); RL "
        "(discrepancy) stops by the discrepancy principle.")
    return metrics


_SMOKE = Config(blurs=("gaussian",), test_images=("camera",), size=48, stages=2, inner=2, steps=2,
                batch=2, patch=32, train_side=64, tv_evaluations=3, tv_iterations=20, rl_iterations=5)
_QUICK = Config(blurs=("gaussian", "motion"), test_images=("camera",), size=128, steps=30,
                train_side=192, tv_iterations=150, rl_iterations=50)
_FULL = Config()
_PAPER = Config(size=512, steps=2000, batch=16, patch=96, train_side=512, tv_evaluations=8,
                tv_iterations=1000, rl_iterations=300)

STUDY = Study(
    name="inverse.deblur",
    description="Deblurring: unrolled proximal gradient with learned steps vs TV, Wiener, Richardson-Lucy.",
    config=Config,
    presets={"smoke": _SMOKE, "quick": _QUICK, "full": _FULL, "paper": _PAPER},
    run=run,
    citations=("chambolle2011primal", "rudin1992nonlinear", "richardson1972bayesian", "lucy1974iterative",
               "daubechies2004iterative"),
)
