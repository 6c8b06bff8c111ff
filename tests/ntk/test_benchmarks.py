"""The neural-tangents benchmark runs in --tiny mode (its dlpde half at least, each measurement in
its own subprocess) and every method computes the same kernel."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_tiny(tmp_path):
    out = tmp_path / "ntk.json"
    script = ROOT / "benchmarks" / "ntk_vs_neural_tangents.py"
    subprocess.run([sys.executable, str(script), "--tiny", "--repeats", "1", "--json", str(out)], check=True,
                   capture_output=True, text=True, cwd=ROOT)
    result = json.loads(out.read_text())
    assert [(r["case"], r["dtype"]) for r in result["analytic"]] == [
        ("fc_depth3_relu", "float32"), ("fc_depth3_relu", "float64"), ("cnn_gap", "float32")]
    for row in result["analytic"]:
        assert row["dlpde_cpu_seconds"] > 0 and row["dlpde_peak_bytes"] > 0
    methods = {r["method"]: r for r in result["empirical"]}
    assert {"dlpde_jacobian", "dlpde_ntk_vp", "dlpde_structured", "naive_loop"} <= set(methods)
    for row in result["empirical"]:  # every method computes the same kernel
        assert row["max_relative_difference"] < 1e-10
    if result["peer_skipped"] is None:
        for row in result["analytic"]:
            # float64: neural-tangents' arc-cosine steps lose ~1e-8 near rho = 1 (dlpde is exact there)
            tolerance = 1e-3 if row["dtype"] == "float32" else 1e-7
            assert row["max_relative_difference"] < tolerance
            assert row["time_ratio"] > 0 and row["memory_ratio"] > 0
