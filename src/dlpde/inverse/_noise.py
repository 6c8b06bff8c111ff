"""Noise models y = A x + noise, with explicit random generators, and image-quality metrics."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dlpde.shared import check_positive, check_real, check_tensor

from ._checks import check_generator

__all__ = ["GaussianNoise", "PoissonNoise", "noise_level_for_snr", "psnr", "ssim", "nmse_db"]


def _randn_like(x: torch.Tensor, generator) -> torch.Tensor:
    """Standard normal numbers shaped like ``x``, drawn from ``generator`` on its own device."""
    g = check_generator(generator)
    return torch.randn(x.shape, generator=g, device=g.device, dtype=x.dtype).to(x.device)


class GaussianNoise:
    """Additive white Gaussian noise: y = z + sigma * n, n ~ N(0, I).

    ``sigma`` is on the scale of the data (images in [0, 1]: sigma = 25 / 255 for "sigma 25").
    """

    def __init__(self, sigma: float):
        self.sigma = check_positive(sigma, "sigma", allow_zero=True)

    def __call__(self, clean: torch.Tensor, generator) -> torch.Tensor:
        """``clean`` (any shape) plus noise drawn from ``generator`` (a seed or torch.Generator)."""
        check_tensor(clean, "clean", finite=False)
        return clean + self.sigma * _randn_like(clean, generator)

    def negative_log_likelihood(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """||y - z||^2 / (2 sigma^2) (up to a constant), summed over all but the first dim."""
        return ((y - z) ** 2).flatten(1).sum(1) / (2 * self.sigma**2)


class PoissonNoise:
    """Photon-counting noise: y = Poisson(peak * z) / peak for an intensity z >= 0.

    ``peak`` is the photon count of intensity 1 (larger is less noisy; var(y) = z / peak).
    """

    def __init__(self, peak: float):
        self.peak = check_positive(peak, "peak")

    def __call__(self, clean: torch.Tensor, generator) -> torch.Tensor:
        check_tensor(clean, "clean")
        if bool((clean < 0).any()):
            raise ValueError("Poisson noise needs a non-negative intensity")
        g = check_generator(generator)
        rate = (self.peak * clean).to(g.device)
        return torch.poisson(rate, generator=g).to(clean.device) / self.peak

    def negative_log_likelihood(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """sum(peak z - peak y log(peak z)) (up to a constant), over all but the first dim."""
        rate = (self.peak * z).clamp_min(1e-12)
        return (rate - self.peak * y * torch.log(rate)).flatten(1).sum(1)


def noise_level_for_snr(clean: torch.Tensor, snr_db: float) -> float:
    """The Gaussian sigma giving SNR = 10 log10(mean(z^2) / sigma^2) = ``snr_db`` on ``clean``."""
    check_tensor(clean, "clean")
    snr_db = check_real(snr_db, "snr_db", -300.0, 300.0)
    power = float((clean.double() ** 2).mean())
    return math.sqrt(power / 10 ** (snr_db / 10))


def _check_pair(estimate, reference, min_dim=2):
    check_tensor(estimate, "estimate", min_dim=min_dim)
    check_tensor(reference, "reference", min_dim=min_dim)
    if estimate.shape != reference.shape:
        raise ValueError(f"estimate {tuple(estimate.shape)} and reference {tuple(reference.shape)} "
                         "must have the same shape")


def psnr(estimate: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio 10 log10(range^2 / mean((x - x_ref)^2)) in dB, per image.

    Images ``(..., H, W)``; returns shape ``(...)``. Identical images (mse = 0) would give +inf:
    the mse is floored at the smallest normal number of the dtype, so the PSNR stays finite
    (about 3000 dB in float64, 350 dB in float32) and still ranks "identical" above everything.
    """
    _check_pair(estimate, reference)
    data_range = check_positive(data_range, "data_range")
    mse = ((estimate - reference) ** 2).mean(dim=(-2, -1)).clamp_min(torch.finfo(estimate.dtype).tiny)
    return 10 * torch.log10(data_range**2 / mse)


def nmse_db(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    """10 log10(sum ||x - x_ref||^2 / sum ||x_ref||^2) over the whole batch (the LISTA NMSE).

    ``reference`` must not be all zero; an exact estimate (error 0) gives the floor
    10 log10(tiny) = -3077 dB (the smallest normal float64) instead of -inf."""
    _check_pair(estimate, reference, min_dim=1)
    energy = (reference.double() ** 2).sum()
    if float(energy) == 0.0:
        raise ValueError("reference must not be all zero (the NMSE divides by its energy)")
    error = ((estimate.double() - reference.double()) ** 2).sum().clamp_min(torch.finfo(torch.float64).tiny)
    return float(10 * torch.log10(error / energy))


def ssim(estimate: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0,
         window_sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) with an 11 x 11 Gaussian window, per image.

    SSIM = mean over valid windows of (2 mu_x mu_y + C1)(2 s_xy + C2) /
    ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2)), C_i = (k_i range)^2, population covariances,
    windows fully inside the image (as scikit-image with gaussian_weights=True,
    use_sample_covariance=False). Images ``(..., H, W)``; returns ``(...)``.
    """
    _check_pair(estimate, reference)
    data_range = check_positive(data_range, "data_range")
    window_sigma = check_positive(window_sigma, "window_sigma", maximum=100.0)
    k1, k2 = check_positive(k1, "k1", maximum=1.0), check_positive(k2, "k2", maximum=1.0)
    radius = int(3.5 * window_sigma + 0.5)
    if min(estimate.shape[-2:]) < 2 * radius + 1:
        raise ValueError(f"images {tuple(estimate.shape[-2:])} are smaller than the SSIM window "
                         f"{2 * radius + 1} x {2 * radius + 1} (window_sigma {window_sigma:g})")
    r = torch.arange(-radius, radius + 1, device=estimate.device, dtype=estimate.dtype)
    g = torch.exp(-r**2 / (2 * window_sigma**2))
    g = g / g.sum()
    window = (g[:, None] * g[None, :])[None, None]
    lead = estimate.shape[:-2]
    x = estimate.reshape(-1, 1, *estimate.shape[-2:])
    y = reference.reshape(-1, 1, *reference.shape[-2:])

    def blur(z):
        return F.conv2d(z, window)

    mu_x, mu_y = blur(x), blur(y)
    s_xx = blur(x * x) - mu_x**2
    s_yy = blur(y * y) - mu_y**2
    s_xy = blur(x * y) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    value = ((2 * mu_x * mu_y + c1) * (2 * s_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (s_xx + s_yy + c2))
    return value.mean(dim=(-3, -2, -1)).reshape(lead)
