"""Argument checks the meanfield entry points share (built on ``dlpde.shared.checks``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dlpde.shared import (
    INTEGRATORS,
    check_choice,
    check_positive,
    check_positive_int,
    check_real,
    check_tensor,
)


def check_times(values, name: str, low: float, high: float) -> list[float]:
    """A non-empty, non-decreasing sequence (list, tuple, 1-D array or tensor) of times in ``[low, high]``."""
    if isinstance(values, np.ndarray):
        values = values.tolist() if values.ndim == 1 else values
    if isinstance(values, torch.Tensor):
        values = check_tensor(values, name, dim=1).tolist()
    elif isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a sequence of times, got {type(values).__name__}")
    if len(values) == 0:
        raise ValueError(f"{name} must hold at least one time, got none")
    times = [check_real(v, f"{name}[{i}]", low, high) for i, v in enumerate(values)]
    if any(b < a for a, b in zip(times, times[1:])):
        raise ValueError(f"{name} must be non-decreasing, got {times}")
    return times


def check_integration(method, steps, rtol, atol) -> tuple[str, int | None, float, float]:
    """``method`` of ``dlpde.shared.INTEGRATORS``; ``steps`` a positive int (or None for dopri5)."""
    method = check_choice(method, "method", sorted(INTEGRATORS))
    if steps is not None:
        steps = check_positive_int(steps, "steps")
    elif not INTEGRATORS[method].adaptive:
        raise ValueError(f"method {method!r} is a fixed-step method and needs steps (a positive int)")
    return method, steps, check_positive(rtol, "rtol"), check_positive(atol, "atol", allow_zero=True)


def check_field_value(value, reference: torch.Tensor, what: str) -> torch.Tensor:
    """The output of a user's vector field: a finite floating tensor of ``reference``'s shape."""
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise TypeError(f"{what} must return a floating-point tensor, got {type(value).__name__}")
    if value.shape != reference.shape:
        raise ValueError(f"{what} must return the shape {tuple(reference.shape)} of its input, "
                         f"got {tuple(value.shape)}")
    check_tensor(value, f"the value of {what}", dtype="any")
    return value
