"""Pretrained Gaussian denoisers shipped with the package, and the recipe that trains them.

``pretrained("trd" | "dncnn" | "unet", sigma=15 | 25 | 50)`` loads a ready denoiser (images
(B, H, W) in [0, 1], noise level ``sigma`` on the 0-255 scale) from ``weights/`` next to this
file, with ``torch.load(weights_only=True)``: no network, no training. Each weights file
``<method>-sigma<s>.pt`` (a state dict) has a ``.json`` beside it recording the architecture,
the training recipe, the data (the training images, never the held-out ``TEST_IMAGES``), the
initialisation (from scratch, or warm-started from another shipped model), the CPU seconds, the
loss curve, and the metrics it reached (PSNR on the held-out test images with fixed noise).

Recipe (``train_denoiser``): random ``patch`` x ``patch`` crops of every training image at its
native resolution with the 8 flips/transposes as augmentation, fresh Gaussian noise every step,
mean squared error of the restored image (DnCNN and U-Net learn the residual), Adam with a
cosine learning-rate schedule; TRD is trained greedily stage by stage, then jointly
(Chen & Pock 2017). Rebuild a file with::

    python -m dlpde.inverse._pretrained --method dncnn --sigma 25 --steps 6000
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import torch

from dlpde.shared import check_choice, check_positive_int, check_real, make_generator, resolve_device, train

from ._data import TEST_IMAGES, TRAINING_IMAGES, load_image, random_patches, training_images
from ._networks import DnCNN, UNet
from ._noise import GaussianNoise, psnr
from ._trd import TRD, train_greedy_then_joint

__all__ = ["pretrained", "pretrained_record", "denoise_file", "PRETRAINED_METHODS", "PRETRAINED_SIGMAS",
           "build_denoiser", "train_denoiser", "denoiser_test_psnr", "build_pretrained"]

PRETRAINED_METHODS = ("trd", "dncnn", "unet")
PRETRAINED_SIGMAS = (15, 25, 50)
WEIGHTS_DIR = Path(__file__).parent / "weights"

ARCHITECTURES = {
    "dncnn": {"depth": 8, "width": 32, "batch_norm": False},
    "unet": {"levels": 2, "width": 16},
    "trd": {"stages": 5, "filter_size": 5},
}
RECIPES = {
    "dncnn": {"steps": 1500, "lr": 1e-3, "final_lr_factor": 0.05, "batch": 16, "patch": 40},
    "unet": {"steps": 1500, "lr": 1e-3, "final_lr_factor": 0.05, "batch": 16, "patch": 48},
    "trd": {"steps": 600, "greedy_steps": 60, "lr": 1e-2, "joint_lr": 2e-3, "final_lr_factor": 0.1,
            "batch": 8, "patch": 40},
}
# The fixed crop of each test image that the reproduction test evaluates (fast on one core),
# and the seed and count of the fixed training batches whose loss the record stores.
CHECK_SIZE = 128
CHECK_SEED = 2**31 - 1
CHECK_BATCHES = 4


def build_denoiser(method: str, architecture: dict | None = None, generator=None) -> torch.nn.Module:
    """A freshly initialised denoiser of ``method`` ("trd", "dncnn", "unet") with the shipped
    architecture (or ``architecture``, a dict of constructor arguments)."""
    check_choice(method, "method", PRETRAINED_METHODS)
    arch = dict(ARCHITECTURES[method] if architecture is None else architecture)
    if method == "dncnn":
        return DnCNN(generator=generator, **arch)
    if method == "unet":
        return UNet(generator=generator, **arch)
    return TRD(generator=generator, **arch)


def _test_pair(name: str, sigma: float, size: int | None):
    """Clean and noisy held-out image, with the noise seed of the denoise study (seed 0)."""
    clean = load_image(name)
    noisy = GaussianNoise(sigma / 255)(clean, torch.Generator().manual_seed(17 * TEST_IMAGES.index(name)
                                                                            + int(sigma)))
    if size is not None:
        top, left = (clean.shape[0] - size) // 2, (clean.shape[1] - size) // 2
        clean, noisy = (t[top:top + size, left:left + size] for t in (clean, noisy))
    return clean, noisy


def denoiser_test_psnr(model: torch.nn.Module, sigma: float, images=("camera", "astronaut"),
                       size: int | None = None, device="cpu") -> dict:
    """PSNR (dB, estimate clipped to [0, 1]) of ``model`` on the held-out test images (full size,
    or the centre ``size`` x ``size`` crop) with the fixed noise of the denoise study."""
    sigma = check_real(sigma, "sigma", 0.0, 255.0, strict_minimum=True)
    out = {}
    model.eval()
    with torch.no_grad():
        for name in images:
            check_choice(name, "image", TEST_IMAGES)
            clean, noisy = _test_pair(name, sigma, size)
            estimate = model(noisy.to(device)[None])[0].cpu().clamp(0, 1)
            out[name] = float(psnr(estimate.double(), clean.double()))
    return out


def training_sampler(sigma: float, batch: int, patch: int, device="cpu"):
    """``sample(generator) -> (noisy, clean)``: ``batch`` random ``patch`` x ``patch`` crops of the
    training images at native resolution (8 flips/transposes) and their noisy copies at ``sigma``."""
    images = training_images(max_side=None)
    noise = GaussianNoise(sigma / 255)

    def sample(g):
        clean = random_patches(images, batch, patch, g).to(device)
        return noise(clean, g), clean

    return sample


def train_denoiser(model: torch.nn.Module, method: str, sigma: float, recipe: dict, seed: int = 0,
                   checkpoint_dir=None, progress: bool = False, device="cpu", callback=None) -> list[dict]:
    """Train ``model`` (a ``build_denoiser(method)``) at noise level ``sigma`` (0-255) with
    ``recipe`` (keys of ``RECIPES[method]``; ``greedy_steps`` 0 skips TRD's greedy phase, as for
    a warm start). ``callback(stage, model)``: run after each of TRD's greedy stages. Returns the
    history rows of ``dlpde.shared.train`` (loss per step); a run with a ``checkpoint_dir``
    resumes from it."""
    check_choice(method, "method", PRETRAINED_METHODS)
    sigma = check_real(sigma, "sigma", 0.0, 255.0, strict_minimum=True)
    steps = check_positive_int(recipe["steps"], "steps")
    sample = training_sampler(sigma, check_positive_int(recipe["batch"], "batch"),
                      check_positive_int(recipe["patch"], "patch"), device)
    g = make_generator(seed, "cpu")
    model.train()
    if method == "trd":
        greedy = int(recipe.get("greedy_steps", 0))
        joint = steps - greedy * model.stages
        if joint < 0:
            raise ValueError(f"steps {steps} < stages x greedy_steps = {greedy * model.stages}")
        history = train_greedy_then_joint(model, sample, greedy, joint, lr=recipe["lr"],
                                          joint_lr=recipe["joint_lr"], generator=g,
                                          checkpoint_dir=checkpoint_dir, resume=True, progress=progress,
                                          callback=callback)
    else:
        def loss_fn(step):
            noisy, clean = sample(g)
            return ((model(noisy) - clean) ** 2).mean()

        ckpt = None if checkpoint_dir is None else os.path.join(checkpoint_dir, f"{method}.pt")
        history = train(model, loss_fn, steps, lr=recipe["lr"], schedule="cosine",
                        final_lr_factor=recipe["final_lr_factor"], generators=[g], checkpoint=ckpt,
                        checkpoint_every=500, resume=True, progress=progress, desc=f"{method} {sigma:g}")
    model.eval()
    return history


def reference_loss(model: torch.nn.Module, sigma: float, recipe: dict) -> float:
    """Mean squared error of ``model`` on ``CHECK_BATCHES`` fixed training batches (the recipe's
    batch and patch size, patches and noise drawn from seed ``CHECK_SEED``): a deterministic
    fingerprint of weights + data pipeline that the record stores."""
    sample = training_sampler(sigma, recipe["batch"], recipe["patch"], "cpu")
    g = make_generator(CHECK_SEED, "cpu")
    model.eval()
    with torch.no_grad():
        losses = [float(((model(noisy) - clean) ** 2).mean()) for noisy, clean in
                  (sample(g) for _ in range(CHECK_BATCHES))]
    return sum(losses) / len(losses)


def add_reference_loss(method: str, sigma: int, out_dir=WEIGHTS_DIR) -> dict:
    """Compute ``reference_loss`` of a written weights file and store it in its record."""
    stem = Path(out_dir) / f"{method}-sigma{sigma}"
    record = json.loads(stem.with_suffix(".json").read_text())
    model = build_denoiser(method, record["architecture"])
    model.load_state_dict(torch.load(stem.with_suffix(".pt"), weights_only=True))
    record["metrics"]["reference_loss"] = reference_loss(model, sigma, record["recipe"])
    record["metrics"]["reference_loss_batches"] = {"seed": CHECK_SEED, "count": CHECK_BATCHES}
    stem.with_suffix(".json.tmp").write_text(json.dumps(record, indent=1))
    os.replace(stem.with_suffix(".json.tmp"), stem.with_suffix(".json"))
    return record


def _paths(method: str, sigma) -> tuple[Path, Path]:
    stem = WEIGHTS_DIR / f"{method}-sigma{int(sigma)}"
    return stem.with_suffix(".pt"), stem.with_suffix(".json")


def _check_key(method, sigma):
    check_choice(method, "method", PRETRAINED_METHODS)
    if isinstance(sigma, float) and sigma.is_integer():
        sigma = int(sigma)
    check_choice(sigma, "sigma", PRETRAINED_SIGMAS)
    return method, int(sigma)


def pretrained_record(method: str, sigma: int = 25) -> dict:
    """The JSON record shipped next to a weights file (architecture, recipe, data, metrics)."""
    method, sigma = _check_key(method, sigma)
    _, record_path = _paths(method, sigma)
    if not record_path.exists():
        raise FileNotFoundError(f"no shipped weights for {method} at sigma {sigma} ({record_path})")
    return json.loads(record_path.read_text())


def pretrained(method: str, sigma: int = 25, device="cpu") -> torch.nn.Module:
    """A ready denoiser trained at noise level ``sigma`` (15, 25 or 50 on the 0-255 scale),
    in eval mode on ``device``: ``model(noisy)`` maps (B, H, W) images in [0, 1] to estimates.

    ``method``: ``"trd"`` (5-stage trainable reaction-diffusion, 5x5 filters), ``"dncnn"``
    (8 layers, 32 channels, residual), ``"unet"`` (2 levels, 16 channels, residual). The record
    of how it was trained is ``pretrained_record(method, sigma)``.
    """
    method, sigma = _check_key(method, sigma)
    device = resolve_device(device)
    weights_path, _ = _paths(method, sigma)
    record = pretrained_record(method, sigma)
    model = build_denoiser(method, record["architecture"])
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.eval()
    return model.to(device)


def build_pretrained(method: str, sigma: int, recipe: dict | None = None, init: str | None = None,
                     seed: int = 0, out_dir=WEIGHTS_DIR, checkpoint_dir=None) -> dict:
    """Train one shipped model and write ``<method>-sigma<s>.pt`` and ``.json`` to ``out_dir``.

    ``init``: a shipped model's name (``"dncnn-sigma25"``) to warm-start from (then TRD skips
    its greedy phase). Returns the record."""
    method, sigma = _check_key(method, sigma)
    recipe = {**RECIPES[method], **(recipe or {})}
    out_dir = Path(out_dir)
    model = build_denoiser(method, generator=make_generator(seed, "cpu"))
    init_record = None
    if init is not None:
        model.load_state_dict(torch.load(out_dir / f"{init}.pt", weights_only=True))
        init_record = json.loads((out_dir / f"{init}.json").read_text())
        init_record.pop("loss_curve", None)
        if method == "trd":
            recipe["greedy_steps"] = 0
    start = time.process_time()
    history = train_denoiser(model, method, sigma, recipe, seed, checkpoint_dir=checkpoint_dir)
    cpu_seconds = time.process_time() - start
    tail = torch.tensor([row["loss"] for row in history[-200:]], dtype=torch.float64)
    record = {
        "method": method, "sigma": sigma, "architecture": ARCHITECTURES[method], "recipe": recipe,
        "seed": seed, "init": init, "init_record": init_record,
        "data": {"training_images": list(TRAINING_IMAGES), "resolution": "native (max_side=None)",
                 "augmentation": "random crops, 8 flips/transposes, fresh noise per step",
                 "test_images": ["camera", "astronaut"],
                 "test_noise": "GaussianNoise(sigma/255), seed 17 * TEST_IMAGES.index(name) + sigma"},
        "metrics": {"test_psnr": denoiser_test_psnr(model, sigma),
                    "check_psnr": denoiser_test_psnr(model, sigma, size=CHECK_SIZE),
                    "check_size": CHECK_SIZE,
                    "final_loss_mean": float(tail.mean()), "final_loss_std": float(tail.std()),
                    "final_loss_steps": len(tail)},
        "cpu_seconds": cpu_seconds, "torch": torch.__version__,
        "loss_curve": [[row["step"], row["loss"]] for row in history[:: max(1, len(history) // 100)]],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"{method}-sigma{sigma}"
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, stem.with_suffix(".pt.tmp"))
    os.replace(stem.with_suffix(".pt.tmp"), stem.with_suffix(".pt"))
    record["sha256"] = hashlib.sha256(stem.with_suffix(".pt").read_bytes()).hexdigest()
    stem.with_suffix(".json.tmp").write_text(json.dumps(record, indent=1))
    os.replace(stem.with_suffix(".json.tmp"), stem.with_suffix(".json"))
    return add_reference_loss(method, sigma, out_dir)


def _main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description="Train one shipped denoiser.")
    parser.add_argument("--method", required=True, choices=PRETRAINED_METHODS)
    parser.add_argument("--sigma", required=True, type=int, choices=PRETRAINED_SIGMAS)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--init")
    parser.add_argument("--out", default=str(WEIGHTS_DIR))
    parser.add_argument("--checkpoints")
    args = parser.parse_args(argv)
    recipe = {} if args.steps is None else {"steps": args.steps}
    record = build_pretrained(args.method, args.sigma, recipe, args.init, out_dir=args.out,
                              checkpoint_dir=args.checkpoints)
    print(json.dumps({k: record[k] for k in ("method", "sigma", "metrics", "cpu_seconds")}, indent=1))


if __name__ == "__main__":
    _main()


def denoise_file(input_path, output_path, method: str = "trd", sigma: int = 25,
                 device="auto") -> torch.Tensor:
    """Denoise a user's image file with a shipped model: ``pretrained(method, sigma)``.

    Reads PNG or TIFF (anything imageio reads): grayscale (H, W) or (H, W, 1), or colour
    (H, W, 3) / (H, W, 4) whose R, G, B channels are denoised one by one (alpha kept); 8-bit
    and 16-bit integers are scaled to [0, 1], floating images must already lie in [0, 1].
    ``sigma`` is the noise standard deviation on the 0-255 scale (15, 25 or 50). Writes the
    result to ``output_path`` atomically, in the input's integer type (uint8 / uint16;
    floating input: float32 for TIFF, uint16 for PNG) and format by extension. Returns the
    restored image in [0, 1] as a float32 tensor of the input's shape. Any unreadable file or
    unsupported shape is a ``ValueError`` naming the file.

    Python one-liner: ``python -c "import dlpde.inverse as i; i.denoise_file('in.png', 'out.png')"``.
    """
    import imageio.v3 as iio
    import numpy as np

    from dlpde.shared.checks import check_path

    source, target = check_path(input_path, "input_path"), check_path(output_path, "output_path")
    method, sigma = _check_key(method, sigma)
    device = resolve_device(device)
    if not os.path.isfile(source):
        raise ValueError(f"input_path {source!r} is not a readable file")
    try:
        array = np.asarray(iio.imread(source))
    except Exception as error:  # noqa: BLE001 - any decoder failure is a bad file
        raise ValueError(f"cannot read {source!r} as an image ({type(error).__name__}: {error})") from None
    if array.dtype == np.uint8:
        scale = 255.0
    elif array.dtype == np.uint16:
        scale = 65535.0
    elif array.dtype in (np.float32, np.float64):
        scale = None
    else:
        raise ValueError(f"{source!r}: pixel type {array.dtype} is not supported (uint8, uint16 or float)")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or array.ndim == 3 and array.shape[-1] in (3, 4)):
        raise ValueError(f"{source!r}: image of shape {array.shape} is neither grayscale (H, W) nor "
                         "colour (H, W, 3|4); split multi-page stacks first")
    if min(array.shape[:2]) < 16:
        raise ValueError(f"{source!r}: image {array.shape[:2]} is smaller than 16 x 16 pixels")
    values = array.astype(np.float64) / scale if scale else array.astype(np.float64)
    if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
        raise ValueError(f"{source!r}: floating pixel values must be finite and in [0, 1]")
    colour = values.ndim == 3
    channels = values[..., :3].transpose(2, 0, 1) if colour else values[None]
    model = pretrained(method, sigma, device)
    with torch.no_grad():
        noisy = torch.tensor(channels, dtype=torch.float32, device=device)
        restored = model(noisy).clamp(0, 1).cpu()
    out = restored.permute(1, 2, 0) if colour else restored[0]
    if colour and values.shape[-1] == 4:
        out = torch.cat([out, torch.tensor(values[..., 3:], dtype=torch.float32)], -1)
    image = out.numpy()
    extension = os.path.splitext(target)[1].lower()
    if scale == 255.0:
        data = np.round(image * 255).astype(np.uint8)
    elif scale == 65535.0 or extension == ".png":
        data = np.round(image * 65535).astype(np.uint16)
    else:
        data = image.astype(np.float32)
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise ValueError(f"output_path {target!r}: folder {folder!r} does not exist")
    temporary = os.path.join(folder, f".{os.path.basename(target)}.tmp{os.getpid()}{extension}")
    try:
        iio.imwrite(temporary, data)
        os.replace(temporary, target)
    except Exception as error:  # noqa: BLE001 - unknown extension, unwritable folder, ...
        if os.path.exists(temporary):
            os.remove(temporary)
        raise ValueError(f"cannot write {target!r} ({type(error).__name__}: {error})") from None
    return out
