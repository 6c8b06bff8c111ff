"""The symmetry benchmarks and GPU-check kernels run in their tiny modes (timings are not asserted;
the accuracy columns are)."""

import json

from benchmarks import symmetry_laplacian, symmetry_sr, symmetry_vmc

from dlpde.shared.kernels import compare_kernel
from dlpde.symmetry._kernels import KERNELS


def test_laplacian_benchmark_tiny(tmp_path):
    out = tmp_path / "laplacian.json"
    assert symmetry_laplacian.main(["--tiny", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert rows and rows[0]["naive_max_deviation"] < 1e-8  # the peer agrees with the exact Laplacian
    assert rows[0]["forward_relative_deviation"] < 1e-12  # the forward Laplacian too
    assert rows[0]["hutchinson4_probe_spread"] > 0  # Hutchinson is an estimate


def test_vmc_benchmark_tiny(tmp_path):
    out = tmp_path / "vmc.json"
    assert symmetry_vmc.main(["--tiny", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {r["ansatz"] for r in rows} == {"explicit", "slater_jastrow", "backflow", "vandermonde"}
    assert all(r["local_energies_per_second"] > 0 for r in rows)


def test_sr_benchmark_tiny(tmp_path):
    out = tmp_path / "sr.json"
    assert symmetry_sr.main(["--tiny", "--json", str(out)]) == 0
    row = json.loads(out.read_text())["rows"][0]
    assert row["walkers"] < row["parameters"]
    assert row["kernel_relative_difference"] < 1e-10  # the kernel solve is the converged SR update
    assert row["kernel_residual"] < 1e-10


def test_gpu_check_kernels_tiny_on_cpu():
    assert [k.name.split(".")[0] for k in KERNELS] == ["symmetry"] * len(KERNELS)
    for check in KERNELS:
        assert compare_kernel(check, "cpu", tiny=True, repeats=1)["ok"], check.name
