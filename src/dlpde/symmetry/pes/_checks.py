"""Argument checks shared by the potential-energy-surface models (the dlpde.shared vocabulary,
plus the few kinds of argument only this subpackage has)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from dlpde.shared import check_int, check_positive_int, check_real

_DTYPES = (torch.float32, torch.float64)


def _is_sequence(value) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, (str, bytes, torch.Tensor, dict))


def check_elements(elements) -> tuple[int, ...]:
    """A non-empty collection of atomic numbers in 1..118; returns them sorted and unique."""
    if isinstance(elements, (str, bytes)) or not isinstance(elements, Iterable):
        raise TypeError(f"elements must be a collection of atomic numbers, got {type(elements).__name__}")
    if isinstance(elements, torch.Tensor):
        if elements.is_floating_point() or elements.dim() != 1:
            raise TypeError("elements must be a 1-D integer tensor or a sequence of atomic numbers")
        elements = elements.tolist()
    values = tuple(sorted({check_int(z, "each element", minimum=1, maximum=118) for z in elements}))
    if not values:
        raise ValueError("elements must not be empty")
    return values


def check_widths(hidden, name: str = "hidden") -> tuple[int, ...]:
    """A sequence of positive layer widths."""
    if not _is_sequence(hidden):
        raise TypeError(f"{name} must be a sequence of positive ints, got {type(hidden).__name__}")
    return tuple(check_positive_int(h, f"each of {name}") for h in hidden)


def check_reals(values, name: str, minimum: float | None = None) -> tuple[float, ...]:
    """A non-empty sequence of finite reals (each ``>= minimum``)."""
    if not _is_sequence(values):
        raise TypeError(f"{name} must be a sequence of numbers, got {type(values).__name__}")
    values = tuple(check_real(v, f"each of {name}", minimum) for v in values)
    if not values:
        raise ValueError(f"{name} must not be empty")
    return values


def check_seed(seed) -> int:
    return check_int(seed, "seed", minimum=0)


def check_model(model):
    """A potential: an ``nn.Module`` with floating-point parameters (``AtomicPotential`` or alike)."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be an nn.Module potential, got {type(model).__name__}")
    if not any(p.is_floating_point() for p in model.parameters()):
        raise ValueError("model has no floating-point parameters")
    return model


def check_dataset(dataset, name: str = "dataset"):
    from ._data import PESDataset

    if not isinstance(dataset, PESDataset):
        raise TypeError(f"{name} must be a PESDataset, got {type(dataset).__name__}")
    if len(dataset) < 1:
        raise ValueError(f"{name} is empty")
    return dataset
