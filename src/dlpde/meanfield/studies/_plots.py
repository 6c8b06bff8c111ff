"""Plot helpers shared by the meanfield studies."""

from __future__ import annotations


def label_log_axis(axes, values) -> None:
    """Ticks of a logarithmic x axis at ``values`` exactly, with plain labels and no minor ticks."""
    from matplotlib.ticker import NullLocator

    values = sorted(set(values))
    axes.set_xticks(values, [f"{v:g}" for v in values])
    axes.xaxis.set_minor_locator(NullLocator())
