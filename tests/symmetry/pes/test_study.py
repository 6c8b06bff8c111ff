"""The study runs end to end (smoke preset) and validates its configuration."""

from __future__ import annotations

import json

import pytest

from dlpde.shared import execute
from dlpde.shared.studies import ConfigError, make_config
from dlpde.symmetry.studies.pes import STUDY


def test_smoke_preset(tmp_path, monkeypatch):
    monkeypatch.setenv("DLPDE_CACHE", str(tmp_path / "cache"))
    run, metrics = execute(STUDY, "smoke", out=tmp_path / "runs", device="cpu")
    report = (run.path / "report.md").read_text()
    for section in ("Learning curves", "Equivariance errors", "Geometry optimisation of LJ13"):
        assert section in report
    assert (run.path / "learning_curves.png").exists() and (run.path / "parity.png").exists()
    saved = json.loads((run.path / "metrics.json").read_text())
    for model in ("equivariant", "moment_tensor", "symmetry_function"):
        assert saved["lj13"][model]["equivariance_energy"] < 1e-9
    assert saved["lj13"]["coordinate_mlp"]["equivariance_energy"] > 1e-6
    assert metrics["lj13"]["moment_tensor"]["8"]["energy_mae"] >= 0


@pytest.mark.parametrize("override", ["systems=argon", "models=kernel", "train_sizes=0", "batch_size=0",
                                      "moment_tensor_level=1", "emt_perturbation=2"])
def test_config_errors(override):
    with pytest.raises(ConfigError):
        make_config(STUDY, "quick", [override])
