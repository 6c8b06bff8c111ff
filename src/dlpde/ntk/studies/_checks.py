"""Field checks of the ntk study Configs, in the ``dlpde.shared.checks`` vocabulary."""

from __future__ import annotations

from dlpde.shared import check_choice, check_int, check_real

ACTIVATIONS = ("tanh", "relu", "erf")


def _sequence(config, name: str, allow_empty: bool) -> tuple:
    value = getattr(config, name)
    if isinstance(value, str) or not isinstance(value, (tuple, list)) or not (value or allow_empty):
        raise ValueError(f"{name} must be a {'' if allow_empty else 'non-empty '}tuple, got {value!r}")
    return tuple(value)


def check_fields(config, *, ints=None, reals=None, int_tuples=None, real_tuples=None, names=None) -> None:
    """``ints``: {field: minimum}; ``reals``: {field: (minimum, strict)} (``minimum`` None: any
    finite real); ``int_tuples``: {field: (minimum, allow_empty)}; ``real_tuples``: {field:
    (minimum, strict)} for non-empty tuples; ``names``: {field: allowed} for a str field or a
    non-empty tuple of them. ``seed`` (>= 0) and ``device`` (a str) are always checked."""
    for name, low in (ints or {}).items():
        check_int(getattr(config, name), name, minimum=low)
    for name, (low, strict) in (reals or {}).items():
        check_real(getattr(config, name), name, low, strict_minimum=strict)
    for name, (low, allow_empty) in (int_tuples or {}).items():
        for item in _sequence(config, name, allow_empty):
            check_int(item, f"{name} entry", minimum=low)
    for name, (low, strict) in (real_tuples or {}).items():
        for item in _sequence(config, name, False):
            check_real(item, f"{name} entry", low, strict_minimum=strict)
    for name, allowed in (names or {}).items():
        value = getattr(config, name)
        for item in (value,) if isinstance(value, str) else _sequence(config, name, False):
            check_choice(item, f"{name} entry" if not isinstance(value, str) else name, allowed)
    check_int(config.seed, "seed", minimum=0, maximum=2**63 - 1)
    if not isinstance(config.device, str):
        raise TypeError(f"device must be a str ('auto', 'cpu', 'cuda', 'cuda:N'), got {config.device!r}")
