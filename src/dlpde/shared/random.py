"""Explicit random number generators: the only source of randomness in dlpde."""

from __future__ import annotations

import numbers

import torch

from .device import resolve_device


def make_generator(seed: int | torch.Generator | None, device="cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``.

    An existing generator is returned unchanged (so functions can accept either a seed or a
    generator). ``None`` draws a fresh seed from the operating system. The same seed gives the
    same numbers on the same device.
    """
    if isinstance(seed, torch.Generator):
        return seed
    device = resolve_device(device)
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
        return generator
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, a torch.Generator or None, got {seed!r}")
    if not 0 <= seed <= 2**63 - 1:
        raise ValueError(f"seed must be an integer in [0, 2**63 - 1], got {seed}")
    generator.manual_seed(int(seed))
    return generator


def spawn_seed(generator: torch.Generator) -> int:
    """Draw a fresh 63-bit seed from ``generator`` (for child generators, e.g. per trial)."""
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
