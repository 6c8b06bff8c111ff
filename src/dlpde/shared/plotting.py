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
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=True, **kwargs)
    return fig, axes


def save_figure(fig, path: str | os.PathLike, dpi: int = 130) -> list[Path]:
    """Save ``fig`` as ``<path>.png`` and ``<path>.pdf`` (atomically); return both paths."""
    import io

    from .runs import atomic_write_bytes

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

    images = [np.asarray(im.detach().cpu() if hasattr(im, "detach") else im) for im in images]
    n = len(images)
    ncols = ncols or n
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
