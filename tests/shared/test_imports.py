"""Importing dlpde or a thread stays light: no matplotlib, e3nn, jax or scikit-image."""

import subprocess
import sys

import pytest

HEAVY = ("matplotlib", "e3nn", "jax", "skimage", "neural_tangents", "ray", "ase", "pywt")


@pytest.mark.parametrize("module", ["dlpde", "dlpde.shared", "dlpde.hjb", "dlpde.symmetry", "dlpde.meanfield",
                                    "dlpde.ntk", "dlpde.inverse"])
def test_import_pulls_no_optional_framework(module):
    code = (f"import sys, {module}; heavy = {HEAVY!r}; "
            "print(','.join(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} imported {out.stdout.strip()}"


def test_subpackages_are_reachable_from_the_top():
    import dlpde

    for name in ("shared", "hjb", "symmetry", "meanfield", "ntk", "inverse"):
        assert getattr(dlpde, name).__name__ == f"dlpde.{name}"
        assert isinstance(getattr(dlpde, name).__all__, list)
    with pytest.raises(AttributeError):
        _ = dlpde.nothing
