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
  adaptive. With ``step_control="batch"`` (default) all rows share one step, accepted when
  ``max_b rms_i(err / (atol + rtol max(|y|, |y_new|))) <= 1`` (the batch maximum of per-row RMS
  norms), so every trajectory meets the tolerance. With ``step_control="row"`` every row ``b``
  has its own time ``t_b`` and step ``h_b``, accepted or rejected by its own RMS norm (as in
  torchode, Lienen & Guennemann 2022): the rows are stepped together as one tensor, rejected rows
  are masked, rows that reached the target leave the working set; no Python work per row. ``f``
  is then called with ``t`` a ``(rows,)`` tensor (one time per row) instead of a float.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from .checks import (
    NonFiniteResultError,
    check_callable,
    check_choice,
    check_finite_result,
    check_positive,
    check_positive_int,
    check_tensor,
)

__all__ = ["Euler", "Heun", "RK4", "Dopri5", "INTEGRATORS", "integrate"]


def _combine(weights, tensors):
    """``sum_j w_j k_j`` over the non-zero weights, accumulated in place in one new tensor."""
    out = None
    for w, k in zip(weights, tensors):
        if w == 0.0:
            continue
        if out is None:
            out = k * w
        else:
            out.add_(k, alpha=w)
    return out


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
            ks.append(f(t + self.c[i] * h, torch.add(y, _combine(self.a[i], ks), alpha=h)))
        return ks

    def step(self, f: Callable, t: float, y: torch.Tensor, h: float) -> torch.Tensor:
        ks = self.stages(f, t, y, h)
        return torch.add(y, _combine(self.b, ks), alpha=h)

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
        y_new = torch.add(y, _combine(self.b, ks), alpha=h)
        error = _combine([h * (bi - bl) for bi, bl in zip(self.b, self.b_low)], ks)
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
    step_control: str = "batch",
) -> torch.Tensor:
    """Integrate ``dy/dt = f(t, y)`` from ``t0`` to ``t1`` (backward in time when ``t1 < t0``).

    Returns ``y(t1)`` (shape of ``y0``), or, with ``save_at=[s_0, ..., s_{K-1}]`` ordered in the
    direction of integration, the stack ``(K, *y0.shape)`` of ``y(s_k)`` (``s_0 = t0`` gives
    ``y0`` back). Fixed-step methods need ``steps``; ``"dopri5"`` uses ``rtol``/``atol`` and
    ``step_control``: ``"batch"`` (one step size for all rows) or ``"row"`` (one per row of
    ``y0``, which must then have at least 2 dimensions ``(rows, ...)``; ``f`` receives ``t`` as a
    ``(rows,)`` tensor). ``max_steps`` bounds the attempted steps (per row with ``"row"``).
    """
    check_tensor(y0, "y0", dtype="floating")
    method = check_choice(method, "method", sorted(INTEGRATORS))
    f = check_callable(f, "f")
    step_control = check_choice(step_control, "step_control", ("batch", "row"))
    max_steps = check_positive_int(max_steps, "max_steps")
    times = _check_times(t0, t1, save_at)
    scheme = INTEGRATORS[method]()
    span = abs(float(t1) - float(t0))

    outputs = []
    y, t = y0, float(t0)
    if scheme.adaptive:
        rtol = check_positive(rtol, "rtol")
        atol = check_positive(atol, "atol", allow_zero=True)
        if first_step is not None:
            first_step = check_positive(first_step, "first_step")
        if step_control == "row":
            if y0.dim() < 2:
                raise ValueError(f"step_control='row' needs y0 of shape (rows, ...), got {tuple(y0.shape)}")
            return _integrate_rows(
                scheme, f, y0, float(t0), times, rtol, atol, first_step, max_steps, save_at
            )
        state = {"h": first_step, "k0": None, "steps": 0}
        for target in times:
            y, t = _adaptive_segment(scheme, f, y, t, target, rtol, atol, state, max_steps)
            outputs.append(y)
    else:
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
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
            raise ValueError(
                f"dopri5 exceeded max_steps={max_steps} at t={t}; raise max_steps or loosen rtol"
            )
        remaining = abs(target - t)
        last = h >= remaining
        h_try = remaining if last else h
        y_new, error, k_last = scheme.step_with_error(f, t, y, direction * h_try, state["k0"])
        err = _error_norm(error, y, y_new, rtol, atol)
        if not math.isfinite(err):
            raise NonFiniteResultError(f"dopri5 produced a non-finite state at t={t}")
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
            raise ValueError(f"dopri5 step size underflow at t={t}; loosen rtol/atol")
    state["h"] = h
    return y, t


# --------------------------------------------------------------------------------------------
# per-row step-size control


def _row_norm(value: torch.Tensor) -> torch.Tensor:
    """RMS over every axis but the first, shape ``(rows,)``."""
    return value.reshape(value.shape[0], -1).square().mean(1).sqrt()


def _initial_step_rows(f, t, y, direction, order, rtol, atol, k0):
    """Hairer-Norsett-Wanner's starting step, one per row."""
    scale = atol + rtol * y.detach().abs()
    d0 = _row_norm(y.detach() / scale)
    d1 = _row_norm(k0.detach() / scale)
    h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1.clamp_min(1e-300))
    shape = (-1,) + (1,) * (y.dim() - 1)
    y1 = y + (direction * h0).reshape(shape) * k0
    d2 = _row_norm((f(t + direction * h0, y1) - k0).detach() / scale) / h0
    largest = torch.maximum(d1, d2)
    h1 = torch.where(
        largest <= 1e-15,
        torch.clamp(h0 * 1e-3, min=1e-6),
        (0.01 / largest.clamp_min(1e-300)) ** (1.0 / (order + 1)),
    )
    return torch.minimum(100 * h0, h1)


def _integrate_rows(scheme, f, y0, t0, times, rtol, atol, first_step, max_steps, save_at):
    """Dormand-Prince with one time, step size and accept/reject decision per row.

    Each iteration steps the rows that have not reached the current target (the working set,
    gathered only when it shrinks); a rejected row keeps its state and retries with a smaller
    step; the last step of a row is shortened to land on the target exactly.
    """
    rows = y0.shape[0]
    shape = (-1,) + (1,) * (y0.dim() - 1)
    b_error = [bi - bl for bi, bl in zip(scheme.b, scheme.b_low)]
    c = scheme.c
    exponent = -1.0 / scheme.order

    y = y0
    t = torch.full((rows,), t0, dtype=y0.dtype, device=y0.device)
    k0 = f(t, y)
    h = None if first_step is None else torch.full((rows,), first_step, dtype=y0.dtype, device=y0.device)
    attempts = torch.zeros(rows, dtype=torch.long, device=y0.device)
    outputs = []
    for target in times:
        direction = 1.0 if target >= float(t[0]) else -1.0
        if h is None and target != t0:
            h = _initial_step_rows(f, t, y, direction, scheme.order, rtol, atol, k0)
        # remaining > 0 for every row at the start of a segment (all rows share the times)
        active = torch.full((rows,), target != float(t[0]), dtype=torch.bool, device=y0.device)
        index = None  # None: every row is in the working set
        while True:
            n_active = int(active.sum()) if index is None else int(active[index].sum())
            if n_active == 0:
                break
            if index is None and n_active < rows or index is not None and n_active < index.numel():
                index = active.nonzero().squeeze(-1)
            take = (lambda v: v) if index is None else (lambda v: v[index])
            ya, ta, ha, ka = take(y), take(t), take(h), take(k0)
            remaining = (target - ta) * direction
            last = ha >= remaining
            step = direction * torch.where(last, remaining, ha)
            step_b = step.reshape(shape)
            stages = [ka]
            for i in range(1, len(c)):
                stages.append(f(ta + c[i] * step, torch.addcmul(ya, step_b, _combine(scheme.a[i], stages))))
            y_new = torch.addcmul(ya, step_b, _combine(scheme.b, stages))
            error = step_b * _combine(b_error, stages)
            scale = atol + rtol * torch.maximum(ya.detach().abs(), y_new.detach().abs())
            err = _row_norm(error.detach() / scale)
            check_finite_result(err, "dopri5 error estimate", hint="the state became non-finite")
            accept = err <= 1.0
            factor = torch.where(
                err == 0,
                torch.full_like(err, 10.0),
                (0.9 * err.clamp_min(1e-300) ** exponent).clamp(0.2, 10.0),
            )
            step_abs = step.abs()
            h_new = torch.where(accept & last, torch.maximum(ha, step_abs * factor), step_abs * factor)
            t_new = torch.where(accept, torch.where(last, torch.full_like(ta, target), ta + step), ta)
            accept_b = accept.reshape(shape)
            y_next = torch.where(accept_b, y_new, ya)
            k_next = torch.where(accept_b, stages[-1], ka)
            done = accept & last
            if index is None:
                y, t, h, k0 = y_next, t_new, h_new, k_next
                active = ~done
                attempts = attempts + 1
            else:
                y = y.index_copy(0, index, y_next)
                k0 = k0.index_copy(0, index, k_next)
                t = t.index_copy(0, index, t_new)
                h = h.index_copy(0, index, h_new)
                active = active.index_copy(0, index, ~done)
                attempts = attempts.index_add(0, index, torch.ones_like(index))
            if bool((h_new < 1e-14 * ta.abs().clamp_min(1.0)).any()):
                raise ValueError(f"dopri5 step size underflow near t={float(ta.min())}; loosen rtol/atol")
            if int(attempts.max()) > max_steps:
                raise ValueError(f"dopri5 exceeded max_steps={max_steps} on some rows; raise max_steps")
        outputs.append(y)
    return outputs[-1] if save_at is None else torch.stack(outputs)
