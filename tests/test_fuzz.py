"""Fuzz every public name of every subpackage (generated from ``__all__``).

A public function or class, called with hostile arguments, must either return a finite answer
(from finite input) or raise ``ValueError``/``TypeError``/``NotImplementedError`` from dlpde's own
checks. ``tests/fuzzing.py`` has the rules; ``EXCLUDED`` names what is not fuzzed and why.
Set ``DLPDE_FUZZ_REPORT=path.json`` to collect the counts.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import types

import pytest

from dlpde._registry import public_subpackages
from tests import fuzzing

SUBPACKAGES = public_subpackages()  # a new public subpackage is fuzzed without editing this file

# name -> why it is not fuzzed here
EXCLUDED = {
    "dlpde.shared.execute": "runs a whole study and writes run folders; the CLI tests cover its errors",
}
MAX_EXAMPLES = int(os.environ.get("DLPDE_FUZZ_EXAMPLES", "20"))


def _preimport_optional_frameworks():
    """Import what the public functions import lazily, so a time-limited call never interrupts an
    import half-way (which would leave a broken module behind for the next call)."""
    import matplotlib

    matplotlib.use("Agg")
    for name in ("matplotlib.pyplot", "e3nn.o3", "e3nn.nn", "skimage.data", "skimage.metrics",
                 "skimage.restoration", "skimage.transform", "scipy.ndimage", "scipy.stats",
                 "scipy.integrate", "scipy.optimize", "ase", "ase.build", "ase.calculators.emt",
                 "ase.calculators.lj", "ase.cluster", "ase.optimize", "pywt", "bm3d", "tqdm"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


_preimport_optional_frameworks()


def public_callables():
    for module_name in SUBPACKAGES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            qualified = f"{module_name}.{name}"
            if isinstance(obj, types.ModuleType) or not callable(obj):
                continue
            if inspect.isclass(obj) and issubclass(obj, BaseException):
                continue
            marks = []
            if qualified in EXCLUDED:
                marks = [pytest.mark.skip(reason=EXCLUDED[qualified])]
            yield pytest.param(obj, qualified, id=qualified, marks=marks)


@pytest.mark.parametrize(("obj", "name"), list(public_callables()))
def test_public_callable_survives_hostile_arguments(obj, name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything that writes files writes here
    monkeypatch.setenv("MPLBACKEND", "Agg")
    outcome = fuzzing.fuzz(obj, name, max_examples=MAX_EXAMPLES)
    report = os.environ.get("DLPDE_FUZZ_REPORT")
    if report:
        with open(report, "a") as fh:
            fh.write(json.dumps({"name": name, "calls": outcome.calls, "returned": outcome.returned,
                                 "clean_errors": outcome.clean_errors, "slow": outcome.slow,
                                 "failures": outcome.failures}) + "\n")
    assert not outcome.failures, "\n".join(sorted(set(outcome.failures))[:12])


def _unchecked_mean_of_head(x, n):
    return x[:n].mean() / n


def _checked_mean_of_head(x, n):
    from dlpde.shared import check_positive_int, check_tensor

    check_tensor(x, "x", min_dim=1)
    n = check_positive_int(n, "n", maximum=x.shape[0])
    return x[:n].mean() / n


def test_fuzzer_catches_a_deliberately_unchecked_function():
    outcome = fuzzing.fuzz(_unchecked_mean_of_head, "unchecked", max_examples=60)
    assert outcome.failures, "the fuzzer passed a function with no argument checks"
    kinds = " ".join(outcome.failures)
    assert "non-finite output" in kinds or "ZeroDivisionError" in kinds or "from" in kinds


def test_fuzzer_passes_the_same_function_with_checks():
    outcome = fuzzing.fuzz(_checked_mean_of_head, "checked", max_examples=60)
    assert not outcome.failures, outcome.failures[:5]
    assert outcome.clean_errors > 0
