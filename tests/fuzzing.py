"""A hypothesis fuzzer for dlpde's public surface (used by tests/test_fuzz.py).

For a callable, each parameter is drawn from a pool of plausible and hostile values (tensors of
several shapes, non-finite, integer, half-precision and empty tensors; negative, zero and huge
numbers; NaN and Inf; unknown strings; None; callables). A call *passes* when it

- returns, and, if every drawn input was finite, its output holds no NaN/Inf; or
- raises ``ValueError``, ``TypeError`` or ``NotImplementedError`` from a ``raise`` statement in
  dlpde's own source (not a ``TypeError`` bubbling out of torch, not an ``IndexError``, ...).

Classes are constructed the same way; an ``nn.Module`` that was built is then called with drawn
arguments for ``forward``. A call that runs past ``TIME_LIMIT`` seconds is abandoned and counted
as ``slow`` (not a failure: a valid argument may legitimately ask for much work).
"""

from __future__ import annotations

import dataclasses
import inspect
import linecache
import math
import os
import signal
import traceback
from collections.abc import Callable

import torch

import dlpde

DLPDE_DIR = os.path.dirname(dlpde.__file__)
TIME_LIMIT = 2.0
ALLOWED = (ValueError, TypeError, NotImplementedError)


def _tensor(shape, dtype=torch.float64, fill=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point:
        t = torch.rand(shape, generator=g, dtype=torch.float64).to(dtype) + 0.1
    else:
        t = torch.randint(0, 3, shape, generator=g).to(dtype)
    if fill is not None and t.numel():
        t.view(-1)[0] = fill
    return t


# (label, factory, finite?)
TENSORS = [
    ("t64[8,3]", lambda: _tensor((8, 3)), True),
    ("t32[8,3]", lambda: _tensor((8, 3), torch.float32), True),
    ("t64[8]", lambda: _tensor((8,)), True),
    ("t64[4,2,3]", lambda: _tensor((4, 2, 3)), True),
    ("t64[2,1,8,8]", lambda: _tensor((2, 1, 8, 8)), True),
    ("t64[3,3]", lambda: _tensor((3, 3)), True),
    ("t64[]", lambda: torch.tensor(0.5, dtype=torch.float64), True),
    ("t64[8,3]+nan", lambda: _tensor((8, 3), fill=math.nan), False),
    ("t64[8,3]+inf", lambda: _tensor((8, 3), fill=math.inf), False),
    ("i64[8,3]", lambda: _tensor((8, 3), torch.int64), True),
    ("f16[8,3]", lambda: _tensor((8, 3), torch.float16), True),
    ("t64[0,3]", lambda: _tensor((0, 3)), True),
    ("t64[8,0]", lambda: _tensor((8, 0)), True),
]
INTS = [("-1", lambda: -1, True), ("0", lambda: 0, True), ("1", lambda: 1, True), ("2", lambda: 2, True),
        ("3", lambda: 3, True), ("True", lambda: True, True)]
FLOATS = [("nan", lambda: math.nan, False), ("inf", lambda: math.inf, False), ("-inf", lambda: -math.inf, False),  # noqa: E501
          ("-1.0", lambda: -1.0, True), ("0.0", lambda: 0.0, True), ("0.5", lambda: 0.5, True),
          ("1.0", lambda: 1.0, True), ("1e6", lambda: 1e6, True), ("1e-12", lambda: 1e-12, True)]
STRINGS = [("'bogus'", lambda: "bogus", True), ("''", lambda: "", True), ("'cpu'", lambda: "cpu", True),
           ("'auto'", lambda: "auto", True)]
OTHERS = [("None", lambda: None, True), ("[1, 2]", lambda: [1, 2], True), ("object()", lambda: object(), True),  # noqa: E501
          ("lambda x: x.sum(-1)", lambda: (lambda x, *a, **k: x.sum(-1)), True),
          ("lambda *a: nan", lambda: (lambda *a, **k: torch.full((1,), math.nan)), True)]
POOL = TENSORS + INTS + FLOATS + STRINGS + OTHERS
BY_KIND = {"Tensor": TENSORS, "int": INTS, "float": FLOATS, "str": STRINGS, "Callable": OTHERS[3:]}


def _pool_for(parameter: inspect.Parameter):
    annotation = parameter.annotation
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    kinds = [k for k in BY_KIND if k in text]
    return [item for k in kinds for item in BY_KIND[k]] if kinds else []


class _Timeout(BaseException):
    pass


def _alarm(signum, frame):
    raise _Timeout


def _raised_by_dlpde(error: BaseException) -> bool:
    tb = error.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    if last is None:
        return False
    filename = last.tb_frame.f_code.co_filename
    if not os.path.abspath(filename).startswith(DLPDE_DIR):
        return False
    # the failing line must be a raise statement (not a torch call raising TypeError from C)
    for back in range(0, 4):
        line = linecache.getline(filename, last.tb_lineno - back).strip()
        if line.startswith("raise "):
            return True
        if back == 0 and line and not line.startswith(("f\"", "\"", "'", "f'", ")")):
            # the frame's own line is code, not the continuation of a multi-line raise
            break
    return False


def _nonfinite(value, depth=0) -> bool:
    if depth > 4:
        return False
    if isinstance(value, torch.Tensor):
        return value.is_floating_point() and value.numel() > 0 and not bool(torch.isfinite(value.detach()).all())  # noqa: E501
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return any(_nonfinite(v, depth + 1) for v in value[:64])
    if isinstance(value, dict):
        return any(_nonfinite(v, depth + 1) for v in list(value.values())[:64])
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(_nonfinite(getattr(value, f.name), depth + 1) for f in dataclasses.fields(value))
    return False


@dataclasses.dataclass
class Outcome:
    calls: int = 0
    returned: int = 0
    clean_errors: int = 0
    slow: int = 0
    failures: list = dataclasses.field(default_factory=list)


def _signature(obj) -> inspect.Signature | None:
    try:
        return inspect.signature(obj)
    except (TypeError, ValueError):
        return None


def draw_arguments(data, signature: inspect.Signature, skip_first: bool = False):
    """Draw (args, kwargs, labels, finite) for ``signature`` from the pool."""
    from hypothesis import strategies as st

    kwargs, labels, finite = {}, [], True
    params = list(signature.parameters.values())[1 if skip_first else 0:]
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        optional = p.default is not p.empty
        if optional and data.draw(st.booleans(), label=f"{p.name} default?"):
            continue
        typed = _pool_for(p)
        pool = typed if typed and data.draw(st.integers(0, 3)) else POOL
        label, factory, ok = data.draw(st.sampled_from(pool), label=p.name)
        kwargs[p.name] = factory()
        labels.append(f"{p.name}={label}")
        finite = finite and ok
    args = []
    for p in params:  # positional-only parameters cannot be passed by keyword
        if p.kind == p.POSITIONAL_ONLY and p.name in kwargs:
            args.append(kwargs.pop(p.name))
    return args, kwargs, labels, finite


def call_once(fn: Callable, args, kwargs, labels, finite, outcome: Outcome, name: str):
    """Call ``fn`` under the time limit and record the outcome; returns the result or None."""
    outcome.calls += 1
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT)
    try:
        result = fn(*args, **kwargs)
        if finite and _nonfinite(result):
            outcome.failures.append(f"{name}({', '.join(labels)}): non-finite output from finite input")
            return None
        outcome.returned += 1
        return result
    except _Timeout:
        outcome.slow += 1
        return None
    except ALLOWED as error:
        if _raised_by_dlpde(error):
            outcome.clean_errors += 1
        else:
            where = traceback.extract_tb(error.__traceback__)[-1]
            outcome.failures.append(f"{name}({', '.join(labels)}): {type(error).__name__} from "
                                    f"{os.path.basename(where.filename)}:{where.lineno}: {str(error)[:160]}")
        return None
    except Exception as error:  # noqa: BLE001 - the point is to catch what should not escape
        where = traceback.extract_tb(error.__traceback__)[-1]
        outcome.failures.append(f"{name}({', '.join(labels)}): {type(error).__name__} from "
                                f"{os.path.basename(where.filename)}:{where.lineno}: {str(error)[:160]}")
        return None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def fuzz(obj, name: str, max_examples: int = 25, seed: int = 0) -> Outcome:
    """Fuzz one public callable (function or class; for an ``nn.Module`` class, also ``forward``)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    outcome = Outcome()
    signature = _signature(obj)
    if signature is None:
        return outcome

    @hseed(seed)
    @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def run(data):
        torch.manual_seed(0)
        args, kwargs, labels, finite = draw_arguments(data, signature)
        result = call_once(obj, args, kwargs, labels, finite, outcome, name)
        if isinstance(obj, type) and isinstance(result, torch.nn.Module):
            forward = _signature(result.forward)
            if forward is not None:
                a, k, lab, fin = draw_arguments(data, forward)
                call_once(result, a, k, lab, fin and finite, outcome, f"{name}(...).forward")

    run()
    return outcome
