"""Metrics against scikit-image / closed forms, noise models by n-sigma Monte Carlo bounds, data."""

import math
import subprocess
import sys

import pytest
import torch

from dlpde.inverse import (
    TEST_IMAGES,
    TRAINING_IMAGES,
    GaussianNoise,
    PoissonNoise,
    available_images,
    load_image,
    nmse_db,
    noise_level_for_snr,
    psnr,
    random_ellipses,
    random_patches,
    shepp_logan_phantom,
    ssim,
    training_images,
)
from dlpde.shared.testing import assert_monte_carlo_close


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(0)
    clean = torch.rand(40, 50, generator=g, dtype=torch.float64)
    noisy = (clean + 0.1 * torch.randn(40, 50, generator=g, dtype=torch.float64)).clamp(0, 1)
    reference = structural_similarity(noisy.numpy(), clean.numpy(), gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False, data_range=1.0)
    assert float(ssim(noisy, clean)) == pytest.approx(reference, abs=1e-10)
    assert float(ssim(clean, clean)) == pytest.approx(1.0, abs=1e-12)


def test_psnr_and_nmse_closed_forms():
    clean = torch.zeros(2, 8, 8, dtype=torch.float64)
    noisy = clean + 0.1
    assert torch.allclose(psnr(noisy, clean), torch.full((2,), 20.0, dtype=torch.float64))
    x = torch.ones(4, 10, dtype=torch.float64)
    assert nmse_db(1.1 * x, x) == pytest.approx(-20.0)


def test_gaussian_noise_statistics_and_reproducibility():
    z = torch.zeros(200_000, dtype=torch.float64)
    noise = GaussianNoise(0.3)
    y = noise(z, 7)
    n = y.numel()
    assert_monte_carlo_close(float(y.mean()), 0.3 / math.sqrt(n), 0.0)
    assert_monte_carlo_close(float(y.var()), 0.09 * math.sqrt(2 / n), 0.09)
    assert torch.equal(y, noise(z, 7))
    assert noise_level_for_snr(torch.full((10,), 2.0), 20.0) == pytest.approx(0.2)


def test_poisson_noise_statistics():
    z = torch.full((200_000,), 0.4, dtype=torch.float64)
    y = PoissonNoise(peak=30.0)(z, 8)
    n, variance = y.numel(), 0.4 / 30
    assert_monte_carlo_close(float(y.mean()), math.sqrt(variance / n), 0.4)
    assert_monte_carlo_close(float(y.var()), variance * math.sqrt(2 / n) * 1.1, variance)
    with pytest.raises(ValueError, match="non-negative"):
        PoissonNoise(10.0)(-z, 0)


def test_images_load_without_network_and_split_is_disjoint():
    assert not set(TEST_IMAGES) & set(TRAINING_IMAGES)
    assert set(TEST_IMAGES) | set(TRAINING_IMAGES) <= set(available_images())
    camera = load_image("camera")
    assert camera.shape == (512, 512) and 0 <= float(camera.min()) and float(camera.max()) <= 1
    assert load_image("grace_hopper", 64).shape == (64, 64)
    with pytest.raises(ValueError, match="must not be used for training"):
        training_images(names=("camera", "moon"))
    with pytest.raises(ValueError, match="name must be one of"):
        load_image("lena")


def test_patches_and_phantoms():
    images = [torch.rand(40, 30), torch.rand(50, 60)]
    patches = random_patches(images, 5, 16, 3)
    assert patches.shape == (5, 16, 16)
    assert torch.equal(patches, random_patches(images, 5, 16, 3))
    phantom = shepp_logan_phantom(64)
    assert float(phantom.max()) == pytest.approx(1.0) and float(phantom.min()) >= 0
    assert phantom[0, 0] == 0  # outside the head
    ellipses = random_ellipses(3, 32, 4)
    assert ellipses.shape == (3, 32, 32) and torch.equal(ellipses, random_ellipses(3, 32, 4))


def test_body_phantoms_fill_a_large_ellipse():
    """random_ellipses(body=True): the support is the outer ellipse, whose area pi a b (a in
    [0.6, 0.9], b in [0.75, 0.95], on the [-1, 1]^2 square of area 4) bounds the pixel count
    (up to a one-pixel boundary band); the rim (value 1) is brighter than the lowered interior."""
    size = 96
    phantoms = random_ellipses(6, size, 2, body=True, dtype=torch.float64)
    assert float(phantoms.min()) >= 0 and float(phantoms.max()) <= 1
    band = 4 * math.pi * 0.95 / size  # perimeter <= 2 pi * 0.95 times one pixel (2 / size)
    for phantom in phantoms:
        area = 4 * float((phantom > 0).double().mean())
        assert math.pi * 0.6 * 0.75 - band <= area <= math.pi * 0.9 * 0.95 + band
        assert float(phantom.max()) == 1.0 and float(phantom[size // 2 - 2:size // 2 + 2].mean()) < 0.8
        assert phantom[0, 0] == 0 and phantom[-1, -1] == 0
    with pytest.raises(TypeError):
        random_ellipses(2, 16, 1, body="yes")


def test_import_pulls_no_heavy_modules():
    code = ("import sys, dlpde.inverse; bad = [m for m in ('matplotlib', 'skimage', 'pywt', 'e3nn', "
            "'jax') if m in sys.modules]; print(bad); assert not bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_monte_carlo_check_catches_wrong_noise_level():
    """The n-sigma check used above fails on a deliberately mis-scaled noise model."""
    z = torch.zeros(200_000, dtype=torch.float64)
    y = GaussianNoise(0.31)(z, 7)  # claims 0.3
    with pytest.raises(AssertionError):
        assert_monte_carlo_close(float(y.var()), 0.09 * math.sqrt(2 / y.numel()), 0.09)
