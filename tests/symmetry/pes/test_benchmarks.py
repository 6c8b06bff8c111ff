"""Benchmarks and GPU-check kernels run (tiny sizes) and agree with themselves on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dlpde.shared.kernels import compare_kernel
from dlpde.symmetry.pes._kernels import KERNELS

ROOT = Path(__file__).resolve().parents[3]


def test_speed_benchmark_tiny(tmp_path):
    out = tmp_path / "pes_speed.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "pes_speed.py"), "--tiny", "--json", str(out)],
                   check=True, capture_output=True, text=True)
    rows = json.loads(out.read_text())["results"]
    methods = {row["method"] for row in rows}
    assert methods == {"ase_emt", "equivariant", "moment_tensor", "symmetry_function", "coordinate_mlp"}
    assert all(row["configs_per_second"] > 0 for row in rows)


def test_gpu_check_kernels_tiny():
    names = [check.name for check in KERNELS]
    assert "symmetry.pes.equivariant_energy_forces" in names
    for check in KERNELS:
        row = compare_kernel(check, "cpu", tiny=True, repeats=1)
        assert row["ok"] and row["max_abs_diff"] == 0.0
