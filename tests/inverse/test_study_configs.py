"""Every inverse study Config validates its fields: all presets build, and each bad value given
on the command line (``--set key=value``) is a one-line ConfigError naming the field."""

import pytest

from dlpde.inverse.studies import deblur, denoise, lista, tomography
from dlpde.shared import ConfigError
from dlpde.shared.studies import make_config

STUDIES = {"denoise": denoise.STUDY, "deblur": deblur.STUDY, "lista": lista.STUDY,
           "tomography": tomography.STUDY}
BAD = {
    "denoise": ["batch=-4", "warm_from=30", "stages=0", "sigmas=0", "sigmas=300", "sigmas=30",
                "diffusion_lr=nan", "patch=8", "methods=TRD,bogus", "test_images=moon", "test_size=3",
                "dncnn_steps=-1,5", "trd_steps=100"],
    "deblur": ["size=0", "steps=-1", "noise=0", "lr=-1", "blurs=box", "test_images=moon", "patch=4096",
               "tv_evaluations=1", "gaussian_sigma=inf"],
    "lista": ["measurements=0", "layers=-1", "probability=0", "probability=1.5", "steps_per_stage=1,2,-3",
              "methods=LISTA,LISTA", "measurements=600", "lr=0", "test_size=0"],
    "tomography": ["size=4", "angles=0", "noise=-0.1", "steps=-2", "depth=1", "hidden=0", "lr=inf",
                   "tv_evaluations=0"],
}


@pytest.mark.parametrize("name", STUDIES)
def test_presets_build(name):
    for preset in STUDIES[name].presets:
        config = make_config(STUDIES[name], preset)
        assert isinstance(config, STUDIES[name].config)


@pytest.mark.parametrize(("name", "override"), [(n, o) for n, overrides in BAD.items() for o in overrides])
def test_bad_values_are_config_errors(name, override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=key.rstrip("s") if key == "sigmas" else key):
        make_config(STUDIES[name], "smoke", [override])
