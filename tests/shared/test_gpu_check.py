"""benchmarks/gpu_check.py runs every registered kernel (here CPU against CPU, tiny sizes)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_tiny_on_cpu(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu",
                          "--tiny", "--repeats", "1", "--json", str(tmp_path / "g.json")],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads((tmp_path / "g.json").read_text())
    names = [k["name"] for k in result["kernels"]]
    assert "shared.integrate.dopri5" in names and "shared.laplacian.exact" in names
    threads = {name.split(".")[0] for name in names}
    assert {"shared", "hjb", "symmetry", "meanfield", "ntk", "inverse"} <= threads, threads
    assert any("pes" in name for name in names), "the symmetry.pes kernels are not registered"
    assert all(k["ok"] and k["max_abs_diff"] == 0.0 for k in result["kernels"])


def test_compare_kernel_detects_a_mismatch():
    import torch

    from dlpde.shared.kernels import KernelCheck, compare_kernel

    calls = []

    def build(device, tiny):
        calls.append(device)
        value = torch.ones(3, dtype=torch.float64, device=device) * (1.0 + 1e-3 * (len(calls) - 1))
        return lambda: value

    row = compare_kernel(KernelCheck("mismatch", build), "cpu", repeats=1)
    assert not row["ok"] and abs(row["max_abs_diff"] - 1e-3) < 1e-12
