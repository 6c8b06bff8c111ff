"""Argument checks shared by the inverse modules (built on ``dlpde.shared.checks``)."""

from __future__ import annotations

import torch

from dlpde.shared import check_int, check_positive_int, check_tensor

FLOAT_DTYPES = (torch.float32, torch.float64)


def check_generator(generator, name: str = "generator", allow_none: bool = False):
    """A ``torch.Generator`` (returned as is), or an integer seed turned into a CPU generator."""
    if generator is None and allow_none:
        return None
    if isinstance(generator, torch.Generator):
        return generator
    seed = check_int(generator, name, minimum=0)
    return torch.Generator().manual_seed(seed)


def check_operator(operator, name: str = "operator"):
    from ._operators import LinearOperator

    if not isinstance(operator, LinearOperator):
        raise TypeError(f"{name} must be a dlpde.inverse.LinearOperator, got {type(operator).__name__}")
    return operator


def check_image(x, name: str, min_dim: int = 2, finite: bool = True) -> torch.Tensor:
    """A floating tensor of images (..., H, W), non-empty, finite unless ``finite=False``."""
    return check_tensor(x, name, min_dim=min_dim, finite=finite)


def check_shape(shape, name: str = "input_shape") -> tuple[int, ...]:
    """A non-empty tuple/list/torch.Size of positive ints."""
    if isinstance(shape, torch.Size):
        shape = tuple(shape)
    if not isinstance(shape, (tuple, list)) or not shape:
        raise TypeError(f"{name} must be a non-empty tuple of positive ints, got {shape!r}")
    return tuple(check_positive_int(s, f"{name} entry") for s in shape)


def check_names(names, name: str, allowed) -> tuple[str, ...]:
    """A tuple/list of strings, each one of ``allowed``."""
    if isinstance(names, str) or not isinstance(names, (tuple, list)):
        raise TypeError(f"{name} must be a tuple of names, got {names!r}")
    bad = [n for n in names if not isinstance(n, str) or n not in allowed]
    if bad:
        raise ValueError(f"{name}: unknown {bad!r}; allowed {tuple(allowed)}")
    return tuple(names)


def probe_sample(sample, generator: torch.Generator, dim: int, name: str = "sample"):
    """Call ``sample`` once on a copy of ``generator`` (its state is left untouched) and check
    that it returns two finite floating tensors of one shape with ``dim`` dimensions."""
    from dlpde.shared import check_callable

    check_callable(sample, name)
    probe = torch.Generator(device=generator.device).set_state(generator.get_state())
    try:
        out = sample(probe)
    except Exception as error:  # noqa: BLE001 - reported as a bad argument, with the cause
        raise TypeError(f"{name}(generator) must return a pair of tensors; it raised "
                        f"{type(error).__name__}: {error}") from error
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TypeError(f"{name}(generator) must return a pair of tensors, got {type(out).__name__}")
    first = check_tensor(out[0], f"{name}(generator)[0]", dim=dim)
    second = check_tensor(out[1], f"{name}(generator)[1]", dim=dim)
    if dim == 3 and first.shape != second.shape:
        raise ValueError(f"{name}(generator) must return two tensors of one shape (B, H, W), got "
                         f"{tuple(first.shape)} and {tuple(second.shape)}")
    return out
