"""The benchmarks' tiny modes run, and their accuracy columns hold."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_operator_benchmark_tiny(tmp_path):
    path = tmp_path / "ops.json"
    result = _load("inverse_operators").main(["--tiny", "--json", str(path)])
    assert json.loads(path.read_text())["tiny"] is True
    radon, fbp, convolution = result["rows"]
    assert radon["relative_difference"] < 0.05  # phantom edges: interpolation differs (2e-5 on smooth)
    assert convolution["max_difference"] < 1e-12
    assert fbp["dlpde_error"] < 1.5 * fbp["peer_error"] + 0.05


def test_restoration_benchmark_tiny(tmp_path):
    result = _load("inverse_restoration").main(["--tiny", "--json", str(tmp_path / "r.json")])
    names = [row["method"] for row in result["rows"]]
    assert names[0].startswith("TV") and any(n.startswith("TRD") for n in names)
    assert all(row["seconds_per_image"] > 0 for row in result["rows"])


def test_pretrained_benchmark_tiny(tmp_path):
    result = _load("inverse_pretrained").main(["--tiny", "--json", str(tmp_path / "p.json")])
    assert len(result["rows"]) == 2
    for row in result["rows"]:  # every method improves on the noisy crop; TV weight inside its bracket
        assert all(row[m] > row["noisy"] + 3 for m in ("TV", "trd", "dncnn", "unet"))
        assert 0.3 * 25 / 255 <= row["TV_weight"] <= 2.0 * 25 / 255


@pytest.mark.parametrize("study", ["lista", "denoise", "deblur", "tomography"])
def test_study_smoke(study, tmp_path):
    from dlpde._registry import discover_studies
    from dlpde.shared.studies import execute

    run, metrics = execute(discover_studies()[f"inverse.{study}"], "smoke", device="cpu", out=tmp_path)
    assert (run.path / "report.md").exists() and metrics
    assert all(v == v for v in metrics.values() if isinstance(v, float))  # no NaN
