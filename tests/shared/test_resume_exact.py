"""Ctrl-C then ``--resume`` gives exactly the metrics of an uninterrupted run (issue: reliability).

The interrupt is delivered as a real SIGINT from inside the k-th optimiser step (a hook on
the optimiser's ``step``), i.e. in the middle of a step whose random batch has already been drawn:
the training loop must hold it to the step boundary and checkpoint the state of finished steps only.
"""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from dlpde.cli import main


def _comparable(metrics: dict) -> dict:
    flat = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}{k}.", v)
        elif "seconds" not in prefix:
            flat[prefix] = value

    walk("", metrics)
    return flat


@pytest.mark.parametrize(("study", "sets", "interrupt_at", "optimizer"), [
    ("hjb.lqr", ["steps=40"], 17, torch.optim.Adam),  # a training study (shared.train)
    # a VMC study with stochastic reconfiguration (an SGD step on the SR direction): walkers and
    # sampler state must be exact too
    ("symmetry.helium", ["steps=12"], 7, torch.optim.SGD),
    # a two-stage VMC study: inside the orbital pretraining (Adam), and inside the SR stage
    ("symmetry.atoms", ["atoms=li", "steps=6"], 3, torch.optim.Adam),
    ("symmetry.atoms", ["atoms=li", "steps=6"], 4, torch.optim.SGD),
])
@pytest.mark.filterwarnings("ignore:the energy series:RuntimeWarning")
def test_ctrl_c_then_resume_matches_the_uninterrupted_run(study, sets, interrupt_at, optimizer, tmp_path,
                                                          monkeypatch, capsys):
    overrides = [x for s in sets for x in ("--set", s)]
    base = ["run", study, "--preset", "smoke", "--device", "cpu", *overrides]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    uninterrupted = json.loads(next((tmp_path / "a").glob("*/*/metrics.json")).read_text())

    original = optimizer.step
    calls = {"n": 0}

    def step_with_ctrl_c(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == interrupt_at:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(optimizer, "step", step_with_ctrl_c)
    assert main([*base, "--out", str(tmp_path / "b")]) == 130
    monkeypatch.setattr(optimizer, "step", original)
    assert not list((tmp_path / "b").glob("*/*/metrics.json"))
    assert main([*base, "--out", str(tmp_path / "b"), "--resume"]) == 0
    resumed = json.loads(next((tmp_path / "b").glob("*/*/metrics.json")).read_text())
    assert _comparable(resumed) == _comparable(uninterrupted)
    timing = json.loads(next((tmp_path / "b").glob("*/*/timing.json")).read_text())
    assert timing["attempts"] == 2
