"""The symmetry studies run end to end on their smoke presets and validate their configs; the
exact GUE sampler of the trap's ground state against the virial theorem."""

import dataclasses
import math

import pytest
import torch

from dlpde._registry import discover_studies
from dlpde.shared import execute
from dlpde.shared.testing import assert_monte_carlo_close
from dlpde.symmetry.studies import helium, sets, trap


@pytest.mark.filterwarnings("ignore:the energy series:RuntimeWarning")  # smoke chains are short
@pytest.mark.parametrize("name", ["symmetry.trap", "symmetry.helium", "symmetry.sets"])
def test_smoke_preset_runs(name, tmp_path):
    study = discover_studies()[name]
    run, metrics = execute(study, "smoke", out=tmp_path, device="cpu")
    for file in ("report.md", "metrics.json", "results.csv", "references.bib"):
        assert (run.path / file).exists()
    assert list(run.path.glob("*.png"))
    if name == "symmetry.trap":
        assert math.isfinite(metrics["none"]["backflow"]["N2"]["energy"])
        assert "target" in metrics
    elif name == "symmetry.helium":
        assert math.isfinite(metrics["slater_jastrow"]["energy"]) and "met_5mha" in metrics["best"]
    else:
        assert metrics["d2"]["best_at_largest_size"] in sets.MODELS


def test_trap_is_the_headline_and_presets_are_sized():
    studies = discover_studies()
    assert studies["symmetry.trap"].in_tour
    assert not studies["symmetry.helium"].in_tour and not studies["symmetry.sets"].in_tour
    full = trap.STUDY.presets["full"]
    assert full.n_particles == tuple(range(2, 9)) and full.target_n == 4
    assert set(full.interactions) == {"none", "contact"}


def test_configs_reject_bad_values():
    with pytest.raises(ValueError, match="n_particles"):
        trap.Config(n_particles=(1, 2))
    with pytest.raises(ValueError, match="ansatze"):
        helium.Config(ansatze=("slater", "backflow"))
    with pytest.raises(ValueError, match="eval_steps"):
        dataclasses.replace(helium.Config(), eval_steps=10)
    with pytest.raises(ValueError, match="models"):
        sets.Config(models=("transformer",))


@pytest.mark.parametrize("module", [trap, helium, sets], ids=["trap", "helium", "sets"])
@pytest.mark.parametrize(("field", "value"), [("seed", -1), ("dtype", "float16"), ("steps", -4), ("steps", 2.5),  # noqa: E501
                                              ("lr", float("nan")), ("device", 3)])
def test_every_config_validates_its_fields(module, field, value):
    """Each field is checked with the shared vocabulary (a ValueError or TypeError naming it), and
    every preset passes."""
    with pytest.raises((ValueError, TypeError), match=field):
        dataclasses.replace(module.Config(), **{field: value})
    for preset in module.STUDY.presets.values():
        dataclasses.replace(preset)


def test_vmc_configs_validate_walkers_and_optimizer():
    with pytest.raises(ValueError, match="walkers"):
        dataclasses.replace(trap.Config(), walkers=1)
    with pytest.raises(ValueError, match="optimizer"):
        dataclasses.replace(helium.Config(), optimizer="lbfgs")
    with pytest.raises(ValueError, match="burn_in"):
        dataclasses.replace(helium.Config(), burn_in=-1)


@pytest.mark.parametrize("n", [2, 5])
def test_gue_samples_follow_the_trap_ground_state(n):
    """<sum x^2> = N^2/2 (virial: <V> = E/2) under |psi_0|^2, and the pair density vanishes at contact."""
    x = trap.ground_state_samples(n, 20000, seed=1)
    second_moment = (x**2).sum((1, 2))
    error = float(second_moment.std() / math.sqrt(20000))
    assert_monte_carlo_close(float(second_moment.mean()), error, n**2 / 2, 5)
    i, j = torch.triu_indices(n, n, 1)
    gaps = (x[:, i, 0] - x[:, j, 0]).abs()
    assert float((gaps < 0.01).float().mean()) < 1e-3


def test_contact_shift_is_small_and_positive():
    shift, error = trap.contact_shift(3, trap.Config(contact_width=0.02))
    assert 0 < shift < 5e-3 and error < shift
