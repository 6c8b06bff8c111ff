"""Helpers shared by the image-restoration studies of the inverse thread."""

from __future__ import annotations

import math

import torch

from .._noise import psnr, ssim
from .._solvers import StoppingRule, total_variation_restoration


def scores(estimate: torch.Tensor, clean: torch.Tensor) -> dict:
    """PSNR and SSIM (data range 1) of one image (H, W), clipped to [0, 1] first."""
    estimate = estimate.detach().double().clamp(0, 1)
    clean = clean.double()
    return {"psnr": float(psnr(estimate, clean)), "ssim": float(ssim(estimate, clean))}


def best_weight_tv(operator, y: torch.Tensor, clean: torch.Tensor, low: float, high: float,
                   evaluations: int = 8, iterations: int = 300, nonnegative: bool = False
                   ) -> tuple[torch.Tensor, float]:
    """TV restoration with the PSNR-best weight (an oracle: the clean image is known), found by
    golden-section search on log(weight) in [low, high]. Returns (estimate, weight)."""
    cache = {}
    # Once for all weights, in the data's dtype (the solver ignores it where it uses the closed form).
    norm = operator.norm(input_shape=clean.shape[-2:], iterations=50, tolerance=1e-6, dtype=y.dtype,
                         device=y.device)

    def value(log_weight):
        if log_weight not in cache:
            result = total_variation_restoration(
                operator, y, math.exp(log_weight),
                stopping=StoppingRule(max_iterations=iterations, tolerance=1e-5),
                nonnegative=nonnegative, operator_norm=norm)
            cache[log_weight] = (float(psnr(result.solution.clamp(0, 1), clean).mean()),
                                 result.solution)
        return cache[log_weight][0]

    a, b = math.log(low), math.log(high)
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    for _ in range(max(0, evaluations - 2)):
        if value(c) >= value(d):
            b, d = d, c
            c = b - ratio * (b - a)
        else:
            a, c = c, d
            d = a + ratio * (b - a)
    value(c), value(d)
    best = max(cache, key=lambda k: cache[k][0])
    return cache[best][1], math.exp(best)


def noisy_copy(clean: torch.Tensor, noise, seed: int) -> torch.Tensor:
    """The noisy observation of ``clean`` with a generator seeded by ``seed`` (reproducible)."""
    return noise(clean, torch.Generator().manual_seed(seed))


def markdown_table(header: list[str], rows: list[list]) -> str:
    def cell(v):
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
