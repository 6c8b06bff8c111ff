"""Every ntk study runs its smoke preset and writes a report; configs reject bad values."""

import dataclasses
import json
import subprocess
import sys

import pytest

from dlpde._registry import discover_studies
from dlpde.shared import ConfigError, execute
from dlpde.shared.studies import make_config

NTK_STUDIES = ["ntk.alpha_phase", "ntk.convergence", "ntk.lazy_vs_meanfield", "ntk.expansion"]


@pytest.mark.parametrize("name", NTK_STUDIES)
def test_smoke_preset(name, tmp_path):
    study = discover_studies()[name]
    run, metrics = execute(study, "smoke", device="cpu", out=tmp_path)
    assert (run.path / "report.md").exists() and (run.path / "metrics.json").exists()
    assert json.loads((run.path / "metrics.json").read_text()) is not None
    assert list(run.path.glob("*.png"))
    if name == "ntk.alpha_phase":
        assert metrics["drift_active_min"] > metrics["drift_lazy_max"]  # smaller alpha moves the kernel more
    if name == "ntk.expansion":
        assert metrics["alpha_slope_corrected"] < metrics["alpha_slope_lazy"] < 0


def test_alpha_phase_is_the_tour_study():
    studies = discover_studies()
    assert studies["ntk.alpha_phase"].in_tour
    assert not any(studies[name].in_tour for name in NTK_STUDIES[1:])


def test_configs_reject_bad_values():
    studies = discover_studies()
    with pytest.raises(ConfigError, match="drift_thresholds"):
        make_config(studies["ntk.alpha_phase"], "smoke", ["drift_thresholds=-1"])
    with pytest.raises(ConfigError, match="student_width"):
        make_config(studies["ntk.lazy_vs_meanfield"], "smoke", ["student_width=7"])
    with pytest.raises(ConfigError, match="activation"):
        make_config(studies["ntk.expansion"], "smoke", ["activation=sigmoid"])
    config = make_config(studies["ntk.lazy_vs_meanfield"], "quick", ["log10_scales=-1.5"])
    assert config.log10_scales == (-1.5,)
    assert dataclasses.replace(config, seed=3).seed == 3


def test_import_is_light():
    code = ("import sys, dlpde.ntk; bad = [m for m in ('matplotlib', 'jax', 'e3nn', 'skimage', "
            "'neural_tangents', 'tensorflow') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
