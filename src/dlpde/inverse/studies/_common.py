"""Helpers shared by the image-restoration studies of the inverse thread."""

from __future__ import annotations

import math

import torch

from dlpde.shared import check_bool, check_choice, check_int, check_real

from .._noise import psnr, ssim
from .._solvers import StoppingRule, total_variation_restoration

DEVICES = ("auto", "cpu", "cuda")


def check_fields(config, *, positive=(), nonnegative=(), reals=None, flags=(), names=None,
                 int_tuples=()) -> None:
    """Validate a study config's fields with the ``dlpde.shared.checks`` vocabulary.

    ``positive`` / ``nonnegative``: int fields >= 1 / >= 0; ``reals``: {field: (min, max,
    strict_min)} for float fields; ``flags``: bool fields; ``names``: {field: allowed} for
    tuples of names (non-empty, no repeats); ``int_tuples``: {field: length} of
    non-negative ints. ``seed`` (>= 0) and ``device`` are always checked.
    """
    for name in positive:
        check_int(getattr(config, name), name, minimum=1)
    for name in nonnegative:
        check_int(getattr(config, name), name, minimum=0)
    for name, (low, high, strict) in (reals or {}).items():
        check_real(getattr(config, name), name, low, high, strict_minimum=strict)
    for name in flags:
        check_bool(getattr(config, name), name)
    for name, allowed in (names or {}).items():
        value = getattr(config, name)
        if isinstance(value, str) or not isinstance(value, (tuple, list)) or not value:
            raise ValueError(f"{name} must be a non-empty tuple drawn from {tuple(allowed)}, got {value!r}")
        for item in value:
            check_choice(item, f"{name} entry", allowed)
        if len(set(value)) != len(value):
            raise ValueError(f"{name} must not repeat entries, got {value!r}")
    for name, length in dict(int_tuples).items():
        value = getattr(config, name)
        if not isinstance(value, (tuple, list)) or len(value) != length:
            raise ValueError(f"{name} must be {length} non-negative ints, got {value!r}")
        for item in value:
            check_int(item, f"{name} entry", minimum=0)
    check_int(config.seed, "seed", minimum=0, maximum=2**63 - 1)
    device = config.device
    if not isinstance(device, str) or not (device in DEVICES or device.startswith("cuda:")):
        raise ValueError(f"device must be one of 'auto', 'cpu', 'cuda', 'cuda:N', got {device!r}")


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
