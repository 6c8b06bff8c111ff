"""Matplotlib helpers: figures built on the Agg canvas, saved as PNG and PDF, never shown.

Figures are created with ``matplotlib.figure.Figure`` directly (no ``pyplot``), so no global
backend or figure registry is touched and nothing ever opens a window.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["new_figure", "save_figure", "image_grid"]


def new_figure(nrows: int = 1, ncols: int = 1, width: float = 4.0, height: float = 3.2, **kwargs):
    """``(fig, axes)`` with ``axes`` squeezed as in ``plt.subplots``; sizes are per panel."""
    from .checks import check_positive, check_positive_int

    check_positive_int(nrows, "nrows", maximum=64)
    check_positive_int(ncols, "ncols", maximum=64)
    check_positive(width, "width", maximum=100)
    check_positive(height, "height", maximum=100)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=True, **kwargs)
    return fig, axes


def save_figure(fig, path: str | os.PathLike, dpi: int = 130) -> list[Path]:
    """Save ``fig`` as ``<path>.png`` and ``<path>.pdf`` (atomically); return both paths."""
    import io

    from .checks import check_positive_int
    from .runs import atomic_write_bytes

    if not callable(getattr(fig, "savefig", None)):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    if not isinstance(path, (str, os.PathLike)) or str(path) == "":
        raise TypeError(f"path must be a non-empty str or os.PathLike, got {path!r}")
    check_positive_int(dpi, "dpi", maximum=2400)
    stem = Path(path)
    if stem.suffix in (".png", ".pdf"):
        stem = stem.with_suffix("")
    paths = []
    for fmt in ("png", "pdf"):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=dpi)
        paths.append(atomic_write_bytes(buffer.getvalue(), stem.with_suffix("." + fmt)))
    return paths


def image_grid(images, titles=None, ncols: int | None = None, cmap: str = "gray", size=2.6,
               vmin=0.0, vmax=1.0):
    """A figure showing 2-D arrays side by side (e.g. restoration panels)."""
    import numpy as np

    from .checks import check_positive, check_positive_int, check_real

    if isinstance(images, (str, bytes)) or not hasattr(images, "__iter__"):
        raise TypeError(f"images must be a sequence of 2-D arrays or tensors, got {type(images).__name__}")
    images = [np.asarray(im.detach().cpu() if hasattr(im, "detach") else im) for im in images]
    if not images or any(im.ndim not in (2, 3) or im.size == 0 or not np.issubdtype(im.dtype, np.number)
                         for im in images):
        raise ValueError("images must be a non-empty sequence of non-empty numeric 2-D (or RGB) arrays")
    n = len(images)
    if titles is not None and (isinstance(titles, str) or len(titles) != n):
        raise ValueError(f"titles must be a sequence of {n} strings")
    ncols = n if ncols is None else check_positive_int(ncols, "ncols")
    check_positive(size, "size", maximum=100)
    check_real(vmin, "vmin")
    check_real(vmax, "vmax", minimum=vmin, strict_minimum=True)
    import matplotlib

    if cmap not in matplotlib.colormaps:
        raise ValueError(f"cmap must be a matplotlib colormap name, got {cmap!r}")
    nrows = -(-n // ncols)
    fig, axes = new_figure(nrows, ncols, width=size, height=size)
    axes = np.atleast_1d(axes).ravel()
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap=cmap, vmin=vmin, vmax=vmax)
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    return fig
