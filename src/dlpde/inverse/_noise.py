"""Noise models y = A x + noise, with explicit random generators, and image-quality metrics."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dlpde.shared import make_generator

__all__ = ["GaussianNoise", "PoissonNoise", "noise_level_for_snr", "psnr", "ssim", "nmse_db"]


def _randn_like(x: torch.Tensor, generator) -> torch.Tensor:
    """Standard normal numbers shaped like ``x``, drawn from ``generator`` on its own device."""
    g = make_generator(generator, "cpu") if not isinstance(generator, torch.Generator) else generator
    return torch.randn(x.shape, generator=g, device=g.device, dtype=x.dtype).to(x.device)


class GaussianNoise:
    """Additive white Gaussian noise: y = z + sigma * n, n ~ N(0, I).

    ``sigma`` is on the scale of the data (images in [0, 1]: sigma = 25 / 255 for "sigma 25").
    """

    def __init__(self, sigma: float):
        if not (sigma >= 0 and math.isfinite(sigma)):
            raise ValueError(f"sigma must be non-negative and finite, got {sigma}")
        self.sigma = float(sigma)

    def __call__(self, clean: torch.Tensor, generator) -> torch.Tensor:
        """``clean`` (any shape) plus noise drawn from ``generator`` (a seed or torch.Generator)."""
        return clean + self.sigma * _randn_like(clean, generator)

    def negative_log_likelihood(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """||y - z||^2 / (2 sigma^2) (up to a constant), summed over all but the first dim."""
        return ((y - z) ** 2).flatten(1).sum(1) / (2 * self.sigma**2)


class PoissonNoise:
    """Photon-counting noise: y = Poisson(peak * z) / peak for an intensity z >= 0.

    ``peak`` is the photon count of intensity 1 (larger is less noisy; var(y) = z / peak).
    """

    def __init__(self, peak: float):
        if not (peak > 0 and math.isfinite(peak)):
            raise ValueError(f"peak must be positive and finite, got {peak}")
        self.peak = float(peak)

    def __call__(self, clean: torch.Tensor, generator) -> torch.Tensor:
        if bool((clean < 0).any()):
            raise ValueError("Poisson noise needs a non-negative intensity")
        g = make_generator(generator, "cpu") if not isinstance(generator, torch.Generator) else generator
        rate = (self.peak * clean).to(g.device)
        return torch.poisson(rate, generator=g).to(clean.device) / self.peak

    def negative_log_likelihood(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """sum(peak z - peak y log(peak z)) (up to a constant), over all but the first dim."""
        rate = (self.peak * z).clamp_min(1e-12)
        return (rate - self.peak * y * torch.log(rate)).flatten(1).sum(1)


def noise_level_for_snr(clean: torch.Tensor, snr_db: float) -> float:
    """The Gaussian sigma giving SNR = 10 log10(mean(z^2) / sigma^2) = ``snr_db`` on ``clean``."""
    power = float((clean.double() ** 2).mean())
    return math.sqrt(power / 10 ** (snr_db / 10))


def _check_pair(estimate, reference):
    if not isinstance(estimate, torch.Tensor) or not isinstance(reference, torch.Tensor):
        raise TypeError("estimate and reference must be tensors")
    if estimate.shape != reference.shape:
        raise ValueError(f"estimate {tuple(estimate.shape)} and reference {tuple(reference.shape)} "
                         "must have the same shape")


def psnr(estimate: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio 10 log10(range^2 / mean((x - x_ref)^2)) in dB, per image.

    Images ``(..., H, W)``; returns shape ``(...)``.
    """
    _check_pair(estimate, reference)
    mse = ((estimate - reference) ** 2).mean(dim=(-2, -1))
    return 10 * torch.log10(data_range**2 / mse)


def nmse_db(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    """10 log10(sum ||x - x_ref||^2 / sum ||x_ref||^2) over the whole batch (the LISTA NMSE)."""
    _check_pair(estimate, reference)
    error = ((estimate.double() - reference.double()) ** 2).sum()
    return float(10 * torch.log10(error / (reference.double() ** 2).sum()))


def ssim(estimate: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0,
         window_sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004) with an 11 x 11 Gaussian window, per image.

    SSIM = mean over valid windows of (2 mu_x mu_y + C1)(2 s_xy + C2) /
    ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2)), C_i = (k_i range)^2, population covariances,
    windows fully inside the image (as scikit-image with gaussian_weights=True,
    use_sample_covariance=False). Images ``(..., H, W)``; returns ``(...)``.
    """
    _check_pair(estimate, reference)
    radius = int(3.5 * window_sigma + 0.5)
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
