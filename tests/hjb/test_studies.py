"""Smoke presets of the hjb studies, config validation, the GPU-check kernels on the CPU, and a light
``import dlpde.hjb``."""

import subprocess
import sys

import pytest

from dlpde._registry import discover_studies
from dlpde.hjb._networks import MinOfHeadsNetwork
from dlpde.shared.kernels import compare_kernel
from dlpde.shared.studies import ConfigError, execute


@pytest.mark.parametrize("name", ["hjb.crossing", "hjb.viscosity", "hjb.lqr", "hjb.control"])
def test_smoke_presets_run_and_write_reports(name, tmp_path):
    study = discover_studies()[name]
    run, metrics = execute(study, "smoke", out=tmp_path, device="cpu")
    report = (run.path / "report.md").read_text()
    assert "| metric |" in report or "<details>" in report or "| --- |" in report or "|---|" in report
    assert (run.path / "metrics.json").exists()
    assert metrics


def test_crossing_is_the_headline_and_configs_are_validated(tmp_path):
    studies = discover_studies()
    assert studies["hjb.crossing"].in_tour
    with pytest.raises(ConfigError, match="steps"):
        execute(studies["hjb.crossing"], "smoke", overrides=["dims=1,2"], out=tmp_path)
    with pytest.raises(ConfigError, match="methods"):
        execute(studies["hjb.crossing"], "smoke", overrides=["methods=dgm,pinn"], out=tmp_path)
    with pytest.raises(ConfigError, match="time_marching"):
        execute(studies["hjb.control"], "smoke", overrides=["time_marching=0.5"], out=tmp_path)


def test_gpu_check_kernels_run_on_the_cpu():
    from dlpde.hjb._kernels import KERNELS

    for check in KERNELS:
        row = compare_kernel(check, "cpu", tiny=True, repeats=1)
        assert row["ok"], row


def test_import_is_light():
    code = (
        "import sys, dlpde.hjb; heavy = [m for m in ('matplotlib', 'e3nn', 'jax', 'skimage', 'scipy') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_crossing_runs_the_min_of_heads_characteristic_solver(tmp_path):
    study = discover_studies()["hjb.crossing"]
    _, metrics = execute(study, "smoke", out=tmp_path, device="cpu",
                         overrides=["characteristic_network=min_of_heads", "methods=characteristic,dgm"])
    errors = metrics["d1"]["characteristic"]
    assert all(0 < errors[k] < float("inf") for k in ("u_all", "u_near", "grad_all"))
    with pytest.raises(ConfigError, match="hopf_lax_weight"):
        execute(study, "smoke", out=tmp_path,
                overrides=["characteristic_network=min_of_heads", "hopf_lax_weight=1"])
    with pytest.raises(ConfigError, match="characteristic_network"):
        execute(study, "smoke", out=tmp_path, overrides=["characteristic_network=resnet"])
    with pytest.raises(ConfigError, match="head_dims"):  # smoke runs d = 1 only
        execute(study, "smoke", out=tmp_path,
                overrides=["characteristic_network=min_of_heads", "head_dims=2"])
    from dlpde.hjb.studies.crossing import uses_heads

    quick = study.presets["quick"]
    assert [uses_heads(quick, d) for d in quick.dims] == [True, False, False]


def test_crossing_head_width_sets_the_width_of_the_heads_only(tmp_path, monkeypatch):
    from dlpde.hjb.studies import crossing

    widths = []

    def recording(dim, heads, width, *args, **kwargs):
        widths.append(width)
        return MinOfHeadsNetwork(dim, heads, width, *args, **kwargs)

    monkeypatch.setattr(crossing, "MinOfHeadsNetwork", recording)
    study = discover_studies()["hjb.crossing"]
    for head_width, expected in ((0, 8), (5, 5)):  # smoke: width 8; 0 means "as width"
        execute(study, "smoke", out=tmp_path / str(head_width), device="cpu", overrides=[
            "characteristic_network=min_of_heads", "methods=characteristic", f"head_width={head_width}"])
        assert widths.pop() == expected
    with pytest.raises(ConfigError, match="head_width"):
        execute(study, "smoke", out=tmp_path, overrides=["head_width=-1"])
