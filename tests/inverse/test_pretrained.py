"""Shipped pretrained denoisers: every weights file loads with weights_only=True and reproduces
its record (PSNR on a fixed test crop within 0.02 dB, the loss on fixed training batches within
1e-4 relative: float32 reductions may differ in the last digits across machines); 3 more
training steps from the weights at the recipe's final learning rate keep the stored metrics
(within 0.25 dB and 5 % of the loss: the weights are a trained point of that recipe; the optimiser
state is not shipped, so a fresh Adam makes lr-sized steps in every parameter at first,
measured drift 0.14 dB / 2.4 % for TRD, 0.05 dB / 0.6 % for DnCNN and U-Net);
``denoise_file`` on PNG/TIFF files and its errors."""

import hashlib
import json

import numpy as np
import pytest
import torch

from dlpde.inverse import (
    PRETRAINED_METHODS,
    PRETRAINED_SIGMAS,
    denoise_file,
    pretrained,
    pretrained_record,
    psnr,
)
from dlpde.inverse._pretrained import (
    CHECK_SIZE,
    WEIGHTS_DIR,
    _test_pair,
    build_denoiser,
    denoiser_test_psnr,
    reference_loss,
    train_denoiser,
)

KEYS = [(m, s) for m in PRETRAINED_METHODS for s in PRETRAINED_SIGMAS]


def test_weights_are_small_and_listed():
    files = sorted(WEIGHTS_DIR.glob("*.pt"))
    assert {f.stem for f in files} == {f"{m}-sigma{s}" for m, s in KEYS}
    assert sum(f.stat().st_size for f in files) < 4 * 2**20


@pytest.mark.parametrize(("method", "sigma"), KEYS)
def test_shipped_weights_reproduce_their_record(method, sigma):
    record = pretrained_record(method, sigma)
    weights = WEIGHTS_DIR / f"{method}-sigma{sigma}.pt"
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == record["sha256"]
    assert not set(record["data"]["training_images"]) & set(record["data"]["test_images"])
    model = pretrained(method, sigma)
    assert not model.training
    check = denoiser_test_psnr(model, sigma, size=CHECK_SIZE)
    for name, value in record["metrics"]["check_psnr"].items():
        assert check[name] == pytest.approx(value, abs=0.02)
    loss = reference_loss(model, sigma, record["recipe"])
    assert loss == pytest.approx(record["metrics"]["reference_loss"], rel=1e-4)
    # independent of the record: a clear gain over the noisy input on the held-out crop
    clean, noisy = _test_pair("camera", sigma, CHECK_SIZE)
    assert check["camera"] > float(psnr(noisy.clamp(0, 1).double(), clean.double())) + 5.0


@pytest.mark.parametrize("method", PRETRAINED_METHODS)
def test_retraining_a_few_steps_keeps_the_stored_metrics(method):
    sigma = 25
    record = pretrained_record(method, sigma)
    model = build_denoiser(method, record["architecture"])
    model.load_state_dict(pretrained(method, sigma).state_dict())
    # the learning rate at the end of the recipe's cosine schedule (TRD: of its joint phase)
    final_lr = record["recipe"]["joint_lr" if method == "trd" else "lr"] * record["recipe"]["final_lr_factor"]
    recipe = {**record["recipe"], "steps": 3, "lr": final_lr, "joint_lr": final_lr, "greedy_steps": 0}
    history = train_denoiser(model, method, sigma, recipe, seed=1)
    assert len(history) >= 1 and all(np.isfinite(row["loss"]) for row in history)
    check = denoiser_test_psnr(model, sigma, size=CHECK_SIZE)
    for name, value in record["metrics"]["check_psnr"].items():
        assert check[name] == pytest.approx(value, abs=0.25)
    assert reference_loss(model, sigma, record["recipe"]) == pytest.approx(
        record["metrics"]["reference_loss"], rel=0.05)


def test_pretrained_rejects_unknown_keys():
    with pytest.raises(ValueError, match="sigma"):
        pretrained("trd", 30)
    with pytest.raises(ValueError, match="method"):
        pretrained("bm3d", 25)
    with pytest.raises(ValueError, match="sigma"):
        pretrained("trd", True)


def _noisy_crop(size=64, channels=None):
    clean, noisy = _test_pair("camera", 25, size)
    if channels:
        clean = torch.stack([clean, clean.T, clean.flip(0)][:channels], -1)
        g = torch.Generator().manual_seed(3)
        noisy = clean + 25 / 255 * torch.randn(clean.shape, generator=g)
    return clean, noisy.clamp(0, 1)


def test_denoise_file_png_matches_the_model_and_gains(tmp_path):
    import imageio.v3 as iio

    clean, noisy = _noisy_crop()
    source, target = tmp_path / "in.png", tmp_path / "out.png"
    iio.imwrite(source, np.round(noisy.numpy() * 255).astype(np.uint8))
    returned = denoise_file(source, target, method="dncnn", sigma=25, device="cpu")
    written = torch.tensor(iio.imread(target), dtype=torch.float64) / 255
    quantised = torch.tensor(iio.imread(source), dtype=torch.float32) / 255
    with torch.no_grad():
        direct = pretrained("dncnn", 25)(quantised[None])[0].clamp(0, 1)
    assert torch.allclose(returned, direct, atol=1e-6)
    assert float((written - direct.double()).abs().max()) <= 0.5 / 255 + 1e-9  # uint8 rounding only
    assert float(psnr(written, clean.double())) > float(psnr(quantised.double(), clean.double())) + 5.0
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temporary file


def test_denoise_file_colour_tiff_denoises_each_channel(tmp_path):
    import imageio.v3 as iio

    clean, noisy = _noisy_crop(48, channels=3)
    source, target = tmp_path / "in.tif", tmp_path / "out.tif"
    iio.imwrite(source, np.round(noisy.numpy() * 65535).astype(np.uint16))
    out = denoise_file(str(source), str(target), method="trd", sigma=25, device="cpu")
    assert out.shape == (48, 48, 3) and iio.imread(target).dtype == np.uint16
    read = torch.tensor(iio.imread(source).astype(np.float64) / 65535, dtype=torch.float32)
    with torch.no_grad():
        channel = pretrained("trd", 25)(read[None, ..., 1])[0].clamp(0, 1)
    assert torch.allclose(out[..., 1], channel, atol=1e-6)


def test_denoise_file_errors(tmp_path):
    import imageio.v3 as iio

    with pytest.raises(ValueError, match="not a readable file"):
        denoise_file(tmp_path / "missing.png", tmp_path / "o.png")
    garbage = tmp_path / "garbage.png"
    garbage.write_text("not an image")
    with pytest.raises(ValueError, match="cannot read"):
        denoise_file(garbage, tmp_path / "o.png")
    stack = tmp_path / "stack.tif"
    iio.imwrite(stack, np.zeros((5, 32, 32, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="neither grayscale"):
        denoise_file(stack, tmp_path / "o.tif")
    tiny = tmp_path / "tiny.png"
    iio.imwrite(tiny, np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match="smaller than 16"):
        denoise_file(tiny, tmp_path / "o.png")
    floats = tmp_path / "f.tif"
    iio.imwrite(floats, np.full((32, 32), 2.0, dtype=np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        denoise_file(floats, tmp_path / "o.tif")
    good = tmp_path / "good.png"
    iio.imwrite(good, np.zeros((32, 32), dtype=np.uint8))
    with pytest.raises(ValueError, match="does not exist"):
        denoise_file(good, tmp_path / "no" / "o.png")
    with pytest.raises(TypeError, match="input_path"):
        denoise_file(3, tmp_path / "o.png")
    with pytest.raises(ValueError, match="sigma"):
        denoise_file(good, tmp_path / "o.png", sigma=20)


def test_records_are_json_with_the_recipe():
    for method, sigma in KEYS:
        record = json.loads((WEIGHTS_DIR / f"{method}-sigma{sigma}.json").read_text())
        assert record["method"] == method and record["sigma"] == sigma
        assert record["recipe"]["steps"] >= 1 and record["cpu_seconds"] > 0
