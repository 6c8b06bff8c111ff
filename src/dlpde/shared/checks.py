"""One vocabulary of argument checks, used at every public entry point of dlpde.

Each check either returns the (possibly converted) value or raises a ``TypeError`` (wrong kind
of object, wrong dtype) or ``ValueError`` (right kind, bad value) whose message names the
argument, shows the value and says what is allowed, e.g.::

    ValueError: n_train must be an integer >= 1, got -4
    TypeError: x must be a floating-point tensor (float32 or float64), got torch.int64
    ValueError: x must be finite, got 3 non-finite entries (nan/inf)
    ValueError: method must be one of 'exact', 'hutchinson', got 'bogus'

The checks are cheap (a finiteness check is one reduction) and never move data between devices.

- ``check_tensor``: type, floating dtype, number of dims, shape pattern, non-empty, finite, device.
- ``check_int``, ``check_positive_int``: Python/NumPy/0-d tensor integers (not bools) in a range.
- ``check_real``, ``check_positive``, ``check_probability``: finite real numbers in a range.
- ``check_choice``: one of a finite set of options.
- ``check_sequence``: a tuple/list whose items each pass one of the checks above
  (``check_sequence(widths, "widths", check_positive_int)``, or with ``check_choice`` and
  ``distinct=True`` for a subset of names).
- ``check_dtype``: float32 or float64; ``check_path``: a str or os.PathLike path.
- ``check_callable``, ``check_same_device``, ``check_finite_result``.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Iterable, Sequence

import torch

__all__ = [
    "check_tensor", "check_int", "check_positive_int", "check_real", "check_positive",
    "check_probability", "check_choice", "check_callable", "check_same_device",
    "check_finite_result", "check_bool", "check_sequence", "check_dtype", "check_path",
    "NonFiniteResultError",
]

_FLOATING = (torch.float32, torch.float64)


class NonFiniteResultError(FloatingPointError, ValueError):
    """A computation that should have given a finite answer produced NaN or Inf.

    Raised instead of returning NaN silently (e.g. an iterative solver whose step size makes it
    diverge). It is a ``ValueError`` too, because the cause is nearly always an argument.
    """


def _show(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_name(name) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name (the argument's name) must be a str, got {type(name).__name__}")
    return name


def _flag(value, what: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{what} must be True or False, got {_show(value)}")
    return value


def _bound(value, what: str):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise TypeError(f"{what} must be a real number or None, got {_show(value)}")
    return value


def _dtype_names(dtypes) -> str:
    return ", ".join(str(d).replace("torch.", "") for d in dtypes)


def check_tensor(
    x,
    name: str,
    *,
    dim: int | Sequence[int] | None = None,
    min_dim: int | None = None,
    shape: Sequence[int | str | None] | None = None,
    dtype: torch.dtype | Sequence[torch.dtype] | str | None = "floating",
    finite: bool = True,
    nonempty: bool = True,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Check that ``x`` is a tensor fit for a numerical kernel and return it.

    - ``dtype="floating"`` (default) allows float32 and float64 (float16/bfloat16 are refused:
      the kernels need the precision); ``"any"`` or ``None`` allows every dtype; a dtype or a
      sequence of dtypes allows exactly those.
    - ``dim``: the number of dimensions (or a sequence of allowed numbers); ``min_dim``: a lower
      bound.
    - ``shape``: a pattern such as ``(None, 3)`` or ``("batch", "d")``; ``None`` or a string
      matches any size; an integer must match exactly.
    - ``nonempty``: refuse tensors with zero elements; ``finite``: refuse NaN/Inf entries.
    - ``device``: the device the tensor must be on (compared by type and index).
    """
    _check_name(name)
    _flag(finite, "finite")
    _flag(nonempty, "nonempty")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if isinstance(dtype, str) and dtype not in ("floating", "any"):
        raise ValueError(f"dtype must be 'floating', 'any', None or torch dtypes, got {dtype!r}")
    if dtype == "floating":
        if x.dtype not in _FLOATING:
            raise TypeError(f"{name} must be a floating-point tensor (float32 or float64), got {x.dtype}")
    elif dtype not in (None, "any"):
        allowed = (dtype,) if isinstance(dtype, torch.dtype) else tuple(dtype)
        if x.dtype not in allowed:
            raise TypeError(f"{name} must have dtype {_dtype_names(allowed)}, got {x.dtype}")
    if dim is not None:
        allowed_dims = (dim,) if isinstance(dim, int) else tuple(dim)
        if x.dim() not in allowed_dims:
            want = " or ".join(map(str, allowed_dims))
            raise ValueError(f"{name} must have {want} dimensions, got shape {tuple(x.shape)}")
    if min_dim is not None and x.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimensions, got shape {tuple(x.shape)}")
    if shape is not None:
        pattern = tuple(shape)
        wanted = "(" + ", ".join("*" if s is None else str(s) for s in pattern) + ")"
        if x.dim() != len(pattern) or any(
            isinstance(s, int) and not isinstance(s, bool) and s != n for s, n in zip(pattern, x.shape)
        ):
            raise ValueError(f"{name} must have shape {wanted}, got {tuple(x.shape)}")
    if nonempty and x.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")
    if device is not None:
        want = torch.device(device)
        if x.device.type != want.type or (want.index is not None and x.device.index != want.index):
            raise ValueError(f"{name} must be on device {want}, got {x.device}")
    # One reduction in the common case: a finite sum proves every entry finite; only a non-finite
    # sum (a NaN/Inf entry, or an overflow of huge finite entries) pays for the exact count.
    if (finite and (x.is_floating_point() or x.is_complex()) and x.numel() > 0
            and not bool(torch.isfinite(x.detach().sum()))):
        bad = int((~torch.isfinite(x.detach())).sum())
        if bad:
            raise ValueError(f"{name} must be finite, got {bad} non-finite entries (nan/inf)")
    return x


def _as_int(value, name: str) -> int:
    if isinstance(value, bool) or isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        # floats that happen to be whole (3.0) are refused too: a count is an int
        raise TypeError(f"{name} must be an integer, got {_show(value)}")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_floating_point() or value.dtype == torch.bool:
            raise TypeError(f"{name} must be an integer, got {_show(value)}")
        return int(value.item())
    if isinstance(value, numbers.Integral):
        return int(value)
    raise TypeError(f"{name} must be an integer, got {type(value).__name__}")


def check_int(value, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (not a bool, not a float) with ``minimum <= value <= maximum``; returns ``int``."""
    _check_name(name)
    _bound(minimum, "minimum")
    _bound(maximum, "maximum")
    v = _as_int(value, name)
    if minimum is not None and v < minimum or maximum is not None and v > maximum:
        if minimum is not None and maximum is not None:
            want = f"an integer in [{minimum}, {maximum}]"
        elif minimum is not None:
            want = f"an integer >= {minimum}"
        else:
            want = f"an integer <= {maximum}"
        raise ValueError(f"{name} must be {want}, got {v}")
    return v


def check_positive_int(value, name: str, maximum: int | None = None) -> int:
    """An integer ``>= 1`` (sizes, counts, steps)."""
    return check_int(value, name, minimum=1, maximum=maximum)


def check_bool(value, name: str) -> bool:
    """A Python or NumPy bool (not an int that would silently mean True)."""
    _check_name(name)
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {_show(value)}")


def check_real(
    value,
    name: str,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    strict_minimum: bool = False,
    strict_maximum: bool = False,
    finite: bool = True,
) -> float:
    """A real number (int, float, NumPy scalar or one-element tensor) in a range; returns ``float``.

    ``strict_minimum`` / ``strict_maximum`` make the bounds open. NaN is always refused; Inf is
    refused unless ``finite=False``.
    """
    _check_name(name)
    _bound(minimum, "minimum")
    _bound(maximum, "maximum")
    for flag, what in ((strict_minimum, "strict_minimum"), (strict_maximum, "strict_maximum"),
                       (finite, "finite")):
        _flag(flag, what)
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex():
            raise TypeError(f"{name} must be a real number, got {_show(value)}")
        value = value.item()
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if math.isnan(v) or finite and math.isinf(v):
        raise ValueError(f"{name} must be a finite number, got {v}")
    low_bad = minimum is not None and (v <= minimum if strict_minimum else v < minimum)
    high_bad = maximum is not None and (v >= maximum if strict_maximum else v > maximum)
    if low_bad or high_bad:
        parts = []
        if minimum is not None:
            parts.append(f"{'>' if strict_minimum else '>='} {minimum:g}")
        if maximum is not None:
            parts.append(f"{'<' if strict_maximum else '<='} {maximum:g}")
        raise ValueError(f"{name} must be {' and '.join(parts)}, got {v:g}")
    return v


def check_positive(value, name: str, *, allow_zero: bool = False, maximum: float | None = None) -> float:
    """A finite number ``> 0`` (or ``>= 0`` with ``allow_zero``)."""
    _flag(allow_zero, "allow_zero")
    return check_real(value, name, minimum=0.0, maximum=maximum, strict_minimum=not allow_zero)


def check_probability(value, name: str, *, open_low: bool = False, open_high: bool = False) -> float:
    """A number in ``[0, 1]`` (ends made open with ``open_low`` / ``open_high``)."""
    _flag(open_low, "open_low")
    _flag(open_high, "open_high")
    return check_real(value, name, 0.0, 1.0, strict_minimum=open_low, strict_maximum=open_high)


def check_choice(value, name: str, choices: Iterable):
    """``value`` must equal one of ``choices``; returns it."""
    _check_name(name)
    if isinstance(choices, (str, bytes, torch.Tensor)) or not isinstance(choices, Iterable):
        raise TypeError(f"choices must be a collection of options, got {type(choices).__name__}")
    options = tuple(choices)
    if isinstance(value, torch.Tensor):
        ok = False
    else:
        try:
            ok = any(value is c or isinstance(value, str) == isinstance(c, str) and bool(value == c)
                     for c in options)
        except (TypeError, ValueError, RuntimeError):  # incomparable values
            ok = False
    if isinstance(value, bool) and not any(isinstance(c, bool) for c in options):
        ok = False
    if not ok:
        allowed = ", ".join(repr(c) for c in options)
        raise ValueError(f"{name} must be one of {allowed}, got {_show(value)}")
    return value


def check_callable(value, name: str) -> Callable:
    _check_name(name)
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {type(value).__name__}")
    return value


def check_same_device(**tensors: torch.Tensor) -> torch.device:
    """All the named tensors on one device; returns it. ``check_same_device(x=x, y=y)``."""
    devices = {name: t.device for name, t in tensors.items() if isinstance(t, torch.Tensor)}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{n} on {d}" for n, d in devices.items())
        raise ValueError(f"arguments must be on one device, got {listed}")
    return next(iter(devices.values())) if devices else torch.device("cpu")


def check_finite_result(value: torch.Tensor, what: str, hint: str = "") -> torch.Tensor:
    """Raise ``NonFiniteResultError`` if a computed tensor holds NaN/Inf; return it otherwise.

    ``what`` names the computation (``"ista iterate"``); ``hint`` says which argument to change.
    """
    if not isinstance(what, str) or not isinstance(hint, str):
        raise TypeError("what and hint must be str")
    if isinstance(value, torch.Tensor) and value.is_floating_point() and value.numel():
        if not bool(torch.isfinite(value.detach()).all()):
            tail = f"; {hint}" if hint else ""
            raise NonFiniteResultError(f"{what} became non-finite (nan/inf){tail}")
    return value


def check_sequence(values, name: str, check: Callable, *args, nonempty: bool = True,
                   distinct: bool = False, **kwargs) -> tuple:
    """A tuple or list whose every item passes ``check(item, f"{name}[i]", *args, **kwargs)``;
    returns the checked items as a tuple. Strings are refused (they are sequences of characters).

    >>> check_sequence((16, 32), "widths", check_positive_int)
    (16, 32)
    >>> check_sequence(("relu", "tanh"), "activations", check_choice, ("relu", "tanh", "erf"), distinct=True)
    ('relu', 'tanh')
    """
    _check_name(name)
    check_callable(check, "check")
    _flag(nonempty, "nonempty")
    _flag(distinct, "distinct")
    if isinstance(values, (str, bytes)) or not isinstance(values, (tuple, list)):
        raise TypeError(f"{name} must be a tuple or list, got {_show(values)}")
    if nonempty and not values:
        raise ValueError(f"{name} must have at least one entry, got {values!r}")
    items = tuple(check(v, f"{name}[{i}]", *args, **kwargs) for i, v in enumerate(values))
    if distinct and len(set(items)) != len(items):
        raise ValueError(f"{name} must not repeat entries, got {values!r}")
    return items


def check_dtype(dtype, name: str = "dtype") -> torch.dtype:
    """``torch.float32`` or ``torch.float64`` (the dtypes the kernels are written for); returns it."""
    _check_name(name)
    if not isinstance(dtype, torch.dtype) or dtype not in _FLOATING:
        raise TypeError(f"{name} must be torch.float32 or torch.float64, got {dtype!r}")
    return dtype


def check_path(path, name: str = "path", *, allow_none: bool = False) -> str | None:
    """A filesystem path (``str`` or ``os.PathLike``), returned as a ``str`` (``None`` passes
    through when ``allow_none``)."""
    _check_name(name)
    _flag(allow_none, "allow_none")
    if path is None and allow_none:
        return None
    if not isinstance(path, (str, os.PathLike)):
        tail = " or None" if allow_none else ""
        raise TypeError(f"{name} must be a path (str or os.PathLike){tail}, got {type(path).__name__}")
    path = os.fspath(path)
    if not isinstance(path, str) or not path or "\x00" in path:
        raise ValueError(f"{name} must be a non-empty path without NUL characters, got {path!r}")
    return path
