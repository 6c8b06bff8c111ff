"""Field checks for the study Configs of the symmetry thread (the dlpde.shared vocabulary), so
that ``dlpde run <study> --set walkers=-4`` is a one-line ConfigError."""

from __future__ import annotations

from dlpde.shared import check_choice, check_int, check_real, check_sequence

DTYPES = ("float32", "float64")


def check_fields(config, *, positive=(), non_negative=(), positive_reals=(), minimum=None) -> None:
    """``positive``: integer fields >= 1; ``non_negative``: integer fields >= 0; ``positive_reals``:
    finite reals > 0; ``minimum``: ``{field: lower bound}`` for further integer fields."""
    for name in positive:
        check_int(getattr(config, name), name, minimum=1)
    for name in non_negative:
        check_int(getattr(config, name), name, minimum=0)
    for name in positive_reals:
        check_real(getattr(config, name), name, 0.0, strict_minimum=True)
    for name, low in (minimum or {}).items():
        check_int(getattr(config, name), name, minimum=low)
    if hasattr(config, "seed"):
        check_int(config.seed, "seed", minimum=0)
    if hasattr(config, "dtype"):
        check_choice(config.dtype, "dtype", DTYPES)
    if hasattr(config, "device") and not isinstance(config.device, str):
        raise TypeError(f"device must be a str ('auto', 'cpu', 'cuda', 'cuda:N'), got {config.device!r}")


def check_int_tuple(values, name: str, minimum: int = 1) -> None:
    """A non-empty tuple of integers >= ``minimum``."""
    check_sequence(values, name, check_int, minimum=minimum)


def check_subset(values, name: str, allowed) -> None:
    """A non-empty tuple of distinct choices from ``allowed``."""
    check_sequence(values, name, check_choice, tuple(allowed), distinct=True)
