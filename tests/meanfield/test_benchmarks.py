"""The meanfield benchmark runs in its tiny mode and the two implementations agree."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_particle_steps_benchmark_tiny(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "meanfield_particle_steps.py"),
            "--tiny",
            "--repeats",
            "1",
            "--json",
            str(tmp_path / "b.json"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert [r["n"] for r in rows] == [100, 1000]
    assert all(r["max_abs_difference"] < 1e-9 and r["dlpde_steps_per_second"] > 0 for r in rows)
