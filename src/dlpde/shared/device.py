"""Device and dtype resolution.

Device and dtype always come from the inputs or from explicit arguments; nothing here is global.
"""

from __future__ import annotations

import torch

_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "single": torch.float32,
    "double": torch.float64,
}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto" | "cpu" | "cuda" | "cuda:N" | torch.device | None`` into a ``torch.device``.

    ``"auto"`` (and ``None``) picks CUDA when available, else the CPU. Asking for CUDA on a
    machine without it raises ``ValueError`` rather than failing later inside a kernel.
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, torch.device):
        resolved = device
    elif isinstance(device, str):
        try:
            resolved = torch.device(device)
        except RuntimeError as error:
            raise ValueError(
                f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
            ) from error
    else:
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was requested but CUDA is not available here")
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be a CPU or CUDA device, got {device!r}")
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None = None, default: torch.dtype = torch.float32):
    """Turn ``"float32" | "float64" | torch.dtype | None`` into a floating ``torch.dtype``.

    ``None`` gives ``default`` (float32 unless the caller says otherwise).
    """
    if dtype is None:
        return default
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
        return dtype
    if isinstance(dtype, str):
        key = dtype.removeprefix("torch.")
        if key not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        return _DTYPES[key]
    raise TypeError(f"dtype must be a str or torch.dtype, got {type(dtype).__name__}")
