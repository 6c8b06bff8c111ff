"""The hjb benchmarks' tiny modes (seconds): they run, write their JSON and measure what they claim."""

import importlib.util
import json
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_characteristics_benchmark_tiny(tmp_path):
    result = _load("hjb_characteristics").main(["--tiny", "--json", str(tmp_path / "c.json")])
    assert json.loads((tmp_path / "c.json").read_text())["tiny"] is True
    # every contender (peers skipped when not installed) against the exact harmonic solution,
    # at rtol 1e-8, atol 1e-10
    assert {"dlpde_row_closed_form", "dlpde_batch_closed_form", "scipy_loop_scaled"} <= set(result["seconds"])
    assert result["max_difference"] < 1e-6


def test_hopf_lax_benchmark_tiny(tmp_path):
    result = _load("hjb_hopf_lax").main(["--tiny", "--dim", "20", "--json", str(tmp_path / "h.json")])
    assert json.loads((tmp_path / "h.json").read_text()) == result
    assert result["tiny"] is True and result["solver_points"] == 50
    assert result["numpy_max_difference"] < 1e-10  # dlpde's closed form vs the NumPy formula
    assert result["convex_solver_fraction_within_1e-8"] == 1.0  # exact at every point
    assert result["multi_start_fraction_within_1e-8"] >= 0.8  # multi-start minimisation
    assert result["hopf_quadratic_max_difference"] < 1e-9 and result["hopf_l1_max_difference"] < 1e-9
