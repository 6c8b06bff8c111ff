"""The smoke presets of the meanfield studies run end to end, write their reports and make sense."""

import json

import pytest

from dlpde.meanfield.studies import cnn, resnet, two_layer
from dlpde.shared import ConfigError, execute
from dlpde.shared.studies import make_config


def _two_layer_checks(metrics):
    # more particles, closer to the limit; the 1-D solver refines in its nodes
    assert metrics["wasserstein_max_t"][1] < metrics["wasserstein_max_t"][0]
    errors = metrics["radial_solver"]["node_errors"]
    assert errors[-1] < errors[0]


def _cnn_checks(metrics):
    # the linear CNN follows the moment closure built from its mean patches
    closure = metrics["linear_closure"]
    assert closure["max_moment_difference"] < 1e-5 * closure["moment_scale"]


def _resnet_checks(metrics):
    assert "bias_vs_depth" in metrics["rates"]
    linear = metrics["linear"]
    # the networks trained by mean_field_sgd are those of the unit-moment solver
    assert linear["network_check"] < 1e-10
    # the first-order Richardson extrapolation is far closer to the reference than the finest raw depth
    assert linear["reference_error"] < linear["reference_raw_error"] / 4
    for key in ("slope_vs_width_se", "slope_vs_depth_se", "embed_limit_slope_vs_dim_se"):
        assert linear[key] >= 0


@pytest.mark.parametrize(
    "module, check", [(two_layer, _two_layer_checks), (cnn, _cnn_checks), (resnet, _resnet_checks)]
)
def test_smoke_preset_runs(tmp_path, module, check):
    run, metrics = execute(module.STUDY, "smoke", device="cpu", out=tmp_path)
    check(metrics)
    report = (run.path / "report.md").read_text()
    assert "![" in report and ".png)" in report and (run.path / "metrics.json").exists()
    assert json.loads((run.path / "config.json").read_text())["device"] == "cpu"


def test_configs_reject_bad_values():
    with pytest.raises(ConfigError, match="save_times"):
        make_config(two_layer.STUDY, "smoke", ["save_times=0,2"])
    with pytest.raises(ConfigError, match="seeds_per_size"):
        make_config(two_layer.STUDY, "smoke", ["seeds_per_size=1"])
    with pytest.raises(ConfigError, match="reference_width"):
        make_config(cnn.STUDY, "smoke", ["reference_width=8"])
    with pytest.raises(ConfigError, match="embed_dims"):
        make_config(resnet.STUDY, "smoke", ["embed_dims=2,8"])
    with pytest.raises(ConfigError, match="rate_widths"):
        make_config(resnet.STUDY, "smoke", ["rate_widths=4,4"])
    assert two_layer.STUDY.in_tour and not cnn.STUDY.in_tour and not resnet.STUDY.in_tour
