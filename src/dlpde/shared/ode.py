"""Integrators for batched ODE states, forward or backward in time.

``dy/dt = f(t, y)`` with ``y`` a tensor of any shape (typically ``(batch, dim)``; pack several
fields into one tensor, e.g. characteristics as ``cat([x, p, z], -1)``) and ``t`` a Python float.
Integrating from ``t0`` to ``t1 < t0`` runs backward in time (negative steps). Every operation
is a differentiable torch op, so gradients flow to ``y0`` and to parameters ``f`` closes over.

Methods (``integrate(..., method=...)``):

- ``"euler"`` (order 1), ``"heun"`` (order 2, explicit trapezoid), ``"rk4"`` (order 4): fixed
  step, ``steps`` steps over ``[t0, t1]`` (distributed over the segments between ``save_at``
  times in proportion to their length, so saved times are hit exactly);
- ``"dopri5"`` (order 5 with an embedded order-4 error estimate, Dormand & Prince 1980):
  adaptive, accepting a step when ``max_b rms_i(err / (atol + rtol max(|y|, |y_new|))) <= 1``
  with the batch-maximum of per-row RMS norms, so every trajectory meets the tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

__all__ = ["Euler", "Heun", "RK4", "Dopri5", "INTEGRATORS", "integrate"]


class _ExplicitRungeKutta:
    """An explicit Runge-Kutta method given by its Butcher tableau."""

    name: str
    order: int
    adaptive = False
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]

    def stages(self, f: Callable, t: float, y: torch.Tensor, h: float, k0=None):
        ks = [f(t, y) if k0 is None else k0]
        for i in range(1, len(self.c)):
            increment = sum(aij * kj for aij, kj in zip(self.a[i], ks) if aij != 0.0)
            ks.append(f(t + self.c[i] * h, y + h * increment))
        return ks

    def step(self, f: Callable, t: float, y: torch.Tensor, h: float) -> torch.Tensor:
        ks = self.stages(f, t, y, h)
        return y + h * sum(bi * ki for bi, ki in zip(self.b, ks) if bi != 0.0)

    def __repr__(self):
        return f"{type(self).__name__}(order={self.order})"


class Euler(_ExplicitRungeKutta):
    name, order = "euler", 1
    a, b, c = ((),), (1.0,), (0.0,)


class Heun(_ExplicitRungeKutta):
    name, order = "heun", 2
    a, b, c = ((), (1.0,)), (0.5, 0.5), (0.0, 1.0)


class RK4(_ExplicitRungeKutta):
    name, order = "rk4", 4
    a = ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0))
    b = (1 / 6, 1 / 3, 1 / 3, 1 / 6)
    c = (0.0, 0.5, 0.5, 1.0)


class Dopri5(_ExplicitRungeKutta):
    """Dormand-Prince 5(4) with first-same-as-last and a PI-free standard step controller."""

    name, order = "dopri5", 5
    adaptive = True
    c = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
    a = (
        (),
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
        (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
    )
    b = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
    b_low = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)

    def step_with_error(self, f, t, y, h, k0=None):
        ks = self.stages(f, t, y, h, k0)
        y_new = y + h * sum(bi * ki for bi, ki in zip(self.b, ks) if bi != 0.0)
        error = h * sum((bi - bl) * ki for bi, bl, ki in zip(self.b, self.b_low, ks))
        return y_new, error, ks[-1]


INTEGRATORS = {cls.name: cls for cls in (Euler, Heun, RK4, Dopri5)}


def _error_norm(error, y, y_new, rtol, atol):
    scale = atol + rtol * torch.maximum(y.detach().abs(), y_new.detach().abs())
    ratio = (error.detach() / scale) ** 2
    if ratio.dim() >= 2:
        per_row = ratio.reshape(ratio.shape[0], -1).mean(1).sqrt()
        return float(per_row.max())
    return float(ratio.mean().sqrt())


def _check_times(t0, t1, save_at):
    for name, value in (("t0", t0), ("t1", t1)):
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if save_at is None:
        return [float(t1)]
    times = [float(s) for s in save_at]
    if not times:
        raise ValueError("save_at must hold at least one time")
    direction = 1.0 if t1 >= t0 else -1.0
    lo, hi = min(t0, t1), max(t0, t1)
    previous = float(t0)
    for s in times:
        if not (lo - 1e-12 <= s <= hi + 1e-12):
            raise ValueError(f"save_at times must lie in [{lo}, {hi}], got {s}")
        if direction * (s - previous) < -1e-12:
            raise ValueError("save_at times must be ordered in the direction of integration")
        previous = s
    return times


def integrate(
    f: Callable[[float, torch.Tensor], torch.Tensor],
    y0: torch.Tensor,
    t0: float,
    t1: float,
    method: str = "rk4",
    steps: int | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-9,
    save_at: Sequence[float] | None = None,
    first_step: float | None = None,
    max_steps: int = 100_000,
) -> torch.Tensor:
    """Integrate ``dy/dt = f(t, y)`` from ``t0`` to ``t1`` (backward in time when ``t1 < t0``).

    Returns ``y(t1)`` (shape of ``y0``), or, with ``save_at=[s_0, ..., s_{K-1}]`` ordered in the
    direction of integration, the stack ``(K, *y0.shape)`` of ``y(s_k)`` (``s_0 = t0`` gives
    ``y0`` back). Fixed-step methods need ``steps``; ``"dopri5"`` uses ``rtol``/``atol``.
    """
    if not isinstance(y0, torch.Tensor) or not y0.is_floating_point():
        raise TypeError("y0 must be a floating-point torch.Tensor")
    if method not in INTEGRATORS:
        raise ValueError(f"method must be one of {sorted(INTEGRATORS)}, got {method!r}")
    if not bool(torch.isfinite(y0).all()):
        raise ValueError("y0 contains non-finite values")
    times = _check_times(t0, t1, save_at)
    scheme = INTEGRATORS[method]()
    span = abs(float(t1) - float(t0))

    outputs = []
    y, t = y0, float(t0)
    if scheme.adaptive:
        if rtol <= 0 or atol < 0:
            raise ValueError(f"rtol must be > 0 and atol >= 0, got rtol={rtol}, atol={atol}")
        state = {"h": first_step, "k0": None, "steps": 0}
        for target in times:
            y, t = _adaptive_segment(scheme, f, y, t, target, rtol, atol, state, max_steps)
            outputs.append(y)
    else:
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive int for method {method!r}, got {steps!r}")
        for target in times:
            length = abs(target - t)
            n = 0 if length == 0 else max(1, round(steps * length / span))
            for i in range(n):
                h = (target - t) / (n - i)
                y = scheme.step(f, t, y, h)
                t = t + h
            t = target
            outputs.append(y)
    return outputs[-1] if save_at is None else torch.stack(outputs)


def _initial_step(f, t, y, direction, order, rtol, atol, k0):
    """Hairer-Norsett-Wanner's starting step guess."""
    scale = atol + rtol * y.detach().abs()
    d0 = float(((y.detach() / scale) ** 2).mean().sqrt())
    d1 = float(((k0.detach() / scale) ** 2).mean().sqrt())
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    y1 = y + direction * h0 * k0
    d2 = float((((f(t + direction * h0, y1) - k0).detach() / scale) ** 2).mean().sqrt()) / h0
    if max(d1, d2) <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
    return min(100 * h0, h1)


def _adaptive_segment(scheme, f, y, t, target, rtol, atol, state, max_steps):
    direction = 1.0 if target >= t else -1.0
    if target == t:
        return y, t
    if state["k0"] is None:
        state["k0"] = f(t, y)
    if state["h"] is None:
        state["h"] = _initial_step(f, t, y, direction, scheme.order, rtol, atol, state["k0"])
    h = abs(state["h"])
    while direction * (target - t) > 0:
        if state["steps"] >= max_steps:
            raise RuntimeError(f"dopri5 exceeded max_steps={max_steps} at t={t}")
        remaining = abs(target - t)
        last = h >= remaining
        h_try = remaining if last else h
        y_new, error, k_last = scheme.step_with_error(f, t, y, direction * h_try, state["k0"])
        err = _error_norm(error, y, y_new, rtol, atol)
        if not math.isfinite(err):
            raise FloatingPointError(f"dopri5 produced a non-finite state at t={t}")
        state["steps"] += 1
        factor = 10.0 if err == 0 else min(10.0, max(0.2, 0.9 * err ** (-1.0 / 5.0)))
        if err <= 1.0:
            t = target if last else t + direction * h_try
            y = y_new
            state["k0"] = k_last
            h = h_try * factor if not last else max(h, h_try * factor)
        else:
            h = h_try * max(0.2, factor)
        if h < 1e-14 * max(1.0, abs(t)):
            raise RuntimeError(f"dopri5 step size underflow at t={t}")
    state["h"] = h
    return y, t
