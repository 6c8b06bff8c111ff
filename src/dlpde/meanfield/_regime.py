"""Which regime is a network in? A coordinate check over widths (Yang & Hu 2021, Tensor Programs IV).

A parameterisation says how initial scales, multipliers and the learning rate depend on the width
``n``. As ``n -> infinity`` a network trained by SGD ends in one of four regimes, told apart by how
the per-coordinate sizes of its activations and of their updates scale with ``n``:

- **lazy / NTK**: the output moves by O(1) but each hidden coordinate moves by O(n^-1/2) relative
  to its size (the features freeze; the empirical NTK is O(1) and stays put), e.g. the NTK
  parameterisation ``f = n^-1/2 sum_i a_i sigma(<w_i, x>)`` with a fixed learning rate;
- **mean-field / feature learning**: the output and the hidden coordinates both move by O(1),
  e.g. ``f = n^-1 sum_i a_i sigma(<w_i, x>)`` trained in mean-field time (learning rate ``n h``,
  as ``MeanFieldLangevin`` does) -- muP for a two-layer net;
- **unstable / exploding**: the output update, the output or a hidden coordinate grows with
  ``n``, e.g. the standard parameterisation (``a ~ N(0, 1/n)``, no multiplier) with a fixed
  learning rate: the NTK is O(n) and one step moves the output by O(n);
- **trivial / vanishing**: the output update (or the hidden coordinates) vanish as ``n`` grows:
  the network does not train in the limit.

``coordinate_check`` builds the model at each width, records the RMS over coordinates of every
hidden layer's output (forward hooks on the leaf submodules whose output size changes with the
width) and of the network output, takes ``steps`` full-batch SGD steps on the mean squared error,
records the RMS of the changes, and computes the output-traced empirical NTK
(``dlpde.shared.tangent.empirical_ntk``, also ``dlpde.ntk.empirical_ntk``) before and after.
Each quantity ``q(n)`` is summarised by the least-squares exponent ``e`` of ``q ~ n^e`` and the
regime is read off the exponents with a tolerance (``CoordinateCheck.verdict``).

Learning rate: a single global rule is enough for SGD, since a per-layer learning-rate scaling can
be moved into a multiplier of the factory's forward (the abc-symmetry of Yang & Hu): the step at
width ``n`` is ``lr`` for ``"standard"`` and ``"ntk"`` and ``lr n`` for ``"meanfield"``/``"mup"``
(mean-field time), or ``lr(n)`` when ``lr`` is a callable.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from dlpde.shared import (
    check_callable,
    check_choice,
    check_int,
    check_positive,
    check_positive_int,
    check_same_device,
    check_tensor,
    make_generator,
)
from dlpde.shared.tangent import empirical_ntk
from dlpde.shared.testing import convergence_order

__all__ = ["coordinate_check", "CoordinateCheck", "PARAMETERIZATIONS", "REGIMES"]

PARAMETERIZATIONS = ("standard", "ntk", "meanfield", "mup")
REGIMES = ("lazy/NTK", "mean-field/feature learning", "unstable/exploding", "trivial/vanishing")
_LR_EXPONENT = {"standard": 0.0, "ntk": 0.0, "meanfield": 1.0, "mup": 1.0}


@dataclasses.dataclass
class CoordinateCheck:
    """Result of ``coordinate_check``.

    ``sizes[name]`` holds one value per width (RMS over coordinates and seeds):
    ``"output"`` (the network output at initialisation), ``"output_update"`` (its change after the
    training steps), ``"ntk"`` (mean diagonal of the output-traced empirical NTK at
    initialisation), ``"effective_ntk"`` (``lr(n)`` times it: the kernel of the function-space
    step), ``"ntk_change"`` (relative Frobenius change of the NTK over training), and for each
    hidden layer ``L`` (a submodule name): ``"[L]"`` (its output at initialisation),
    ``"[L]/update"`` (its change) and ``"[L]/relative_update"`` (``update / activation``).
    ``exponents[name]`` is the fitted ``e`` of ``size ~ width^e``. ``hidden`` names the hidden
    layers (output size changing with the width).
    """

    widths: tuple[int, ...]
    parameterization: str
    learning_rates: tuple[float, ...]
    steps: int
    hidden: tuple[str, ...]
    sizes: dict
    exponents: dict
    verdict: str
    reason: str
    tolerance: float

    def summary(self) -> str:
        """A plain-text table: one row per quantity, its size at each width and its exponent."""
        columns = "".join(f"{'n=' + str(n):>12}" for n in self.widths)
        head = f"{'quantity':<34}{columns}{'exponent':>10}"
        rows = [head, "-" * len(head)]
        for name, values in self.sizes.items():
            cells = "".join(f"{v:>12.3e}" for v in values)
            rows.append(f"{name:<34}{cells}{self.exponents.get(name, math.nan):>10.3f}")
        rows.append(f"regime: {self.verdict} ({self.reason})")
        return "\n".join(rows)

    def plot(self, path, names: Sequence[str] | None = None):
        """Log-log plot of the sizes against the width (PNG and PDF via ``dlpde.shared.save_figure``)."""
        from dlpde.shared import new_figure, save_figure

        fig, ax = new_figure()
        for name in names or list(self.sizes):
            values = np.asarray(self.sizes[name], dtype=float)
            if np.all(values > 0):
                ax.loglog(self.widths, values, marker="o", label=f"{name} ({self.exponents[name]:+.2f})")
        ax.set_xlabel("width n")
        ax.set_ylabel("RMS size per coordinate")
        ax.set_title(f"{self.parameterization}: {self.verdict}")
        ax.legend(fontsize=7)
        return save_figure(fig, path)


def _step_sizes(lr, widths, parameterization):
    if callable(lr):
        return [check_positive(lr(n), f"lr({n})") for n in widths]
    base = check_positive(lr, "lr")
    return [base * n ** _LR_EXPONENT[parameterization] for n in widths]


def _rms(t: torch.Tensor) -> float:
    return float(t.detach().double().pow(2).mean().sqrt())


def _leaf_outputs(model, x, names):
    """Outputs of the named submodules in one forward pass (hooks removed afterwards)."""
    modules = dict(model.named_modules())
    outputs, handles = {}, []

    def hook(name):
        def record(module, inputs, output):
            if isinstance(output, torch.Tensor):
                outputs[name] = output.detach().clone()
        return record

    try:
        for name in names:
            handles.append(modules[name].register_forward_hook(hook(name)))
        with torch.no_grad():
            out = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return out, outputs


def _build(make_model, width, parameterization, generator):
    try:
        model = make_model(width, parameterization, generator)
    except Exception as error:  # noqa: BLE001 - name the failing call, keep the cause chained
        raise ValueError(f"make_model({width}, {parameterization!r}, generator) raised "
                         f"{type(error).__name__}: {error}") from error
    if not isinstance(model, nn.Module):
        raise TypeError(f"make_model(width, parameterization, generator) must return an nn.Module, "
                        f"got {type(model).__name__}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"the model built at width {width} has no trainable parameters")
    return model, params


def coordinate_check(
    make_model: Callable[[int, str, torch.Generator], nn.Module],
    widths: Sequence[int],
    parameterization: str,
    data: tuple[torch.Tensor, torch.Tensor],
    *,
    steps: int = 3,
    lr: float | Callable[[int], float] = 0.1,
    seeds: int = 3,
    layers: Sequence[str] | None = None,
    tolerance: float = 0.25,
    seed: int = 0,
) -> CoordinateCheck:
    """Coordinate check of a model family over ``widths``: sizes, fitted width exponents, regime.

    Args:
        make_model: ``make_model(width, parameterization, generator) -> nn.Module`` builds the
            network of that width, initialised from ``generator`` (a CPU ``torch.Generator``),
            with the parameterisation's initial scales and multipliers in its ``forward``.
        widths: at least three increasing widths (a factor 8 or more between the ends keeps the
            exponents within about 0.1 for a two-layer net).
        parameterization: ``"standard"``, ``"ntk"``, ``"meanfield"`` or ``"mup"``; passed to
            ``make_model`` and fixing the default learning-rate rule (module docstring).
        data: ``(x, y)`` with ``x`` of shape ``(N, *event)`` and ``y`` the shape of the model output.
        steps: full-batch SGD steps on ``mean((f - y)^2) / 2``; lr: the base step (or ``lr(width)``).
        seeds: initialisations per width (sizes are RMS over seeds). layers: names of the
            submodules to record (default: every leaf submodule); those whose number of outputs
            per sample changes with the width are the hidden layers used for the verdict.
        tolerance: an exponent within ``tolerance`` of 0 counts as O(1).

    Returns a ``CoordinateCheck`` (``summary()`` prints the table). When training diverges the
    sizes may be huge, inf or nan (an honest measurement, not an error). Verdict, from the exponents
    (``tol = tolerance``): non-finite sizes, or an output, output update or hidden activation
    growing faster than ``n^tol`` -> unstable/exploding; an output update or hidden activation
    shrinking faster than ``n^-tol`` -> trivial/vanishing; otherwise, hidden layers whose largest
    relative-update exponent is below ``-tol`` (without hidden layers: the NTK change) ->
    lazy/NTK, else mean-field/feature learning.
    """
    check_callable(make_model, "make_model")
    if isinstance(widths, (str, bytes, torch.Tensor)) or not isinstance(widths, Sequence):
        raise TypeError(f"widths must be a sequence of ints, got {type(widths).__name__}")
    widths = tuple(check_positive_int(n, f"widths[{i}]") for i, n in enumerate(widths))
    if len(widths) < 3 or any(b <= a for a, b in zip(widths, widths[1:])):
        raise ValueError(f"widths must hold at least three increasing widths, got {widths}")
    parameterization = check_choice(parameterization, "parameterization", PARAMETERIZATIONS)
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError("data must be a pair (x, y) of tensors")
    x, y = data
    check_tensor(x, "x", min_dim=1)
    check_tensor(y, "y", min_dim=1)
    check_same_device(x=x, y=y)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"x and y must have one row per sample, got {x.shape[0]} and {y.shape[0]} rows")
    steps = check_positive_int(steps, "steps")
    seeds = check_positive_int(seeds, "seeds")
    tolerance = check_positive(tolerance, "tolerance", maximum=1.0)
    seed = check_int(seed, "seed", 0, 2**40)
    if layers is not None:
        if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
            raise TypeError(f"layers must be a sequence of submodule names, got {type(layers).__name__}")
        layers = tuple(layers)
    rates = _step_sizes(lr, widths, parameterization)

    squares: dict[str, list[float]] = {}
    feature_sizes: dict[str, list[int]] = {}
    for index, (width, rate) in enumerate(zip(widths, rates)):
        sums: dict[str, float] = {}
        for repeat in range(seeds):
            generator = make_generator(seed * 1_000_003 + repeat, "cpu")
            model, params = _build(make_model, width, parameterization, generator)
            names = layers if layers is not None else tuple(
                name for name, m in model.named_modules() if name and not list(m.children()))
            unknown = set(names) - set(dict(model.named_modules()))
            if unknown:
                raise ValueError(f"layers names unknown submodules {sorted(unknown)}")
            out0, hidden0 = _leaf_outputs(model, x, names)
            if not isinstance(out0, torch.Tensor) or out0.shape != y.shape:
                shown = tuple(out0.shape) if isinstance(out0, torch.Tensor) else type(out0).__name__
                raise ValueError(f"the model output must have the shape {tuple(y.shape)} of y, got {shown}")
            kernel0 = empirical_ntk(model, x)
            for _ in range(steps):
                loss = 0.5 * ((model(x) - y) ** 2).mean()
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                with torch.no_grad():
                    for p, g in zip(params, grads):
                        if g is not None:
                            p.sub_(rate * g)
            out1, hidden1 = _leaf_outputs(model, x, names)
            kernel1 = empirical_ntk(model, x)
            values = {
                "output": out0.pow(2).mean(),
                "output_update": (out1 - out0).pow(2).mean(),
                "ntk": kernel0.diagonal().mean() ** 2,
                "effective_ntk": (rate * kernel0.diagonal().mean()) ** 2,
                "ntk_change": ((kernel1 - kernel0).pow(2).sum() / kernel0.pow(2).sum()),
            }
            for name, h0 in hidden0.items():
                if name in hidden1 and h0.dim() >= 1 and h0.shape[0] == x.shape[0]:
                    # coordinates per sample (features, or channels x positions of a conv layer)
                    feature_sizes.setdefault(name, [0] * len(widths))[index] = h0[0].numel()
                    values[f"[{name}]"] = h0.pow(2).mean()
                    values[f"[{name}]/update"] = (hidden1[name] - h0).pow(2).mean()
            for name, value in values.items():
                sums[name] = sums.get(name, 0.0) + float(value)
        for name, total in sums.items():
            squares.setdefault(name, [math.nan] * len(widths))[index] = total / seeds

    # hidden layers: output size changing with the width; fixed-size layers (e.g. the readout
    # before its multiplier) hold no width-n coordinates and are left out
    hidden = tuple(f"[{name}]" for name, counts in feature_sizes.items() if len(set(counts)) > 1)
    sizes = {}
    for name, values in squares.items():
        base = name.split("/")[0]
        if base.startswith("[") and base not in hidden:
            continue
        sizes[name] = [math.sqrt(v) for v in values]
        if name in hidden:
            updates = [math.sqrt(u) for u in squares[f"{name}/update"]]
            sizes[f"{name}/relative_update"] = [
                u / s if s > 0 else math.nan for u, s in zip(updates, sizes[name])
            ]
    exponents = {name: _exponent(widths, values) for name, values in sizes.items()}
    verdict, reason = _verdict(sizes, exponents, hidden, tolerance)
    return CoordinateCheck(widths, parameterization, tuple(rates), steps, hidden, sizes, exponents,
                           verdict, reason, tolerance)


def _exponent(widths, values) -> float:
    values = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(values)) or not np.all(values > 0):
        return math.nan if not np.all(np.isfinite(values)) else -math.inf
    return convergence_order(widths, values)


def _verdict(sizes, exponents, hidden, tol):
    if any(not np.all(np.isfinite(v)) for v in sizes.values()):
        bad = sorted(n for n, v in sizes.items() if not np.all(np.isfinite(v)))
        return "unstable/exploding", f"non-finite sizes: {', '.join(bad)}"
    growing = [n for n in ("output", "output_update", *hidden) if exponents[n] > tol]
    if growing:
        shown = ", ".join(f"{n} ~ n^{exponents[n]:.2f}" for n in growing)
        return "unstable/exploding", f"growing with width: {shown}"
    vanishing = [n for n in ("output_update", *hidden) if exponents[n] < -tol]
    if vanishing:
        shown = ", ".join(f"{n} ~ n^{exponents[n]:.2f}" for n in vanishing)
        return "trivial/vanishing", f"vanishing with width: {shown}"
    if hidden:
        name = max(hidden, key=lambda n: exponents[f"{n}/relative_update"])
        key = f"{name}/relative_update"
    else:
        key = "ntk_change"
    e = exponents[key]
    if e < -tol:
        return "lazy/NTK", f"O(1) output update, {key} ~ n^{e:.2f}"
    return "mean-field/feature learning", f"O(1) output update, {key} ~ n^{e:.2f}"
