"""Per-task ``cpu_seconds`` of the hjb studies add up over interruptions and resumes.

The timer's arithmetic is checked exactly with a fake CPU clock; the study test interrupts
``hjb.lqr`` with a real SIGINT inside an optimiser step, resumes it, and checks that the task's
reported CPU time includes what the interrupted attempt recorded.
"""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

from dlpde._registry import discover_studies
from dlpde.hjb.studies import _common
from dlpde.hjb.studies._common import CpuTimer
from dlpde.shared.runs import CorruptRunFolderError
from dlpde.shared.studies import execute


@pytest.fixture
def clock(monkeypatch):
    now = {"t": 100.0}
    monkeypatch.setattr(_common.time, "process_time", lambda: now["t"])
    return now


def _ledger(path):
    return json.loads(path.read_text())["cpu_seconds"]


def test_ctrl_c_then_resume_adds_up_exactly(clock, tmp_path):
    ledger = tmp_path / "task.pt.cpu.json"
    with pytest.raises(KeyboardInterrupt):
        with CpuTimer(ledger, resume=False):
            clock["t"] += 5.0
            raise KeyboardInterrupt
    assert _ledger(ledger) == 5.0
    with CpuTimer(ledger, resume=True) as timer:
        clock["t"] += 2.0
    assert timer.seconds == 7.0 and _ledger(ledger) == 7.0
    with CpuTimer(ledger, resume=False) as fresh:  # a fresh run does not inherit the ledger
        clock["t"] += 1.0
    assert fresh.seconds == 1.0
    with CpuTimer() as plain:  # without a ledger: the time inside the block, nothing written
        clock["t"] += 0.5
    assert plain.seconds == 0.5


def test_sigkill_keeps_the_time_up_to_the_last_checkpoint_step(clock, tmp_path):
    ledger = tmp_path / "task.pt.cpu.json"
    timer = CpuTimer(ledger, resume=False, every=10).__enter__()
    clock["t"] += 3.0
    timer.callback(8, {})  # step 9 done: no checkpoint, no ledger
    assert not ledger.exists()
    timer.callback(9, {})  # step 10 done: the checkpoint and the ledger are written
    clock["t"] += 4.0  # then the process is killed: no __exit__
    assert _ledger(ledger) == 3.0
    with CpuTimer(ledger, resume=True) as resumed:
        clock["t"] += 6.0
    assert resumed.seconds == 9.0


@pytest.mark.parametrize("text", ["{not json", '{"cpu_seconds": -1}', '{"cpu_seconds": "3"}', "[1]"])
def test_a_corrupted_ledger_is_a_named_error(text, tmp_path):
    ledger = tmp_path / "task.pt.cpu.json"
    ledger.write_text(text)
    with pytest.raises(CorruptRunFolderError, match="ledger"):
        with CpuTimer(ledger, resume=True):
            pass


def test_resumed_lqr_task_reports_the_cpu_time_of_both_attempts(tmp_path, monkeypatch):
    study = discover_studies()["hjb.lqr"]
    original = torch.optim.Adam.step
    calls = {"n": 0}

    def step_with_ctrl_c(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 30:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, *args, **kwargs)

    overrides = ["steps=60", "methods=dgm,characteristic"]
    monkeypatch.setattr(torch.optim.Adam, "step", step_with_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        execute(study, "smoke", overrides=overrides, out=tmp_path, device="cpu")
    monkeypatch.setattr(torch.optim.Adam, "step", original)
    (ledger,) = tmp_path.glob("*/*/checkpoints/*.cpu.json")  # only the interrupted task has one
    first_attempt = _ledger(ledger)
    assert first_attempt > 0
    _, metrics = execute(study, "smoke", overrides=overrides, out=tmp_path, device="cpu", resume=True)
    assert ledger.name == "d3_dgm.pt.cpu.json"  # the first task
    reported = metrics["d3.dgm"]["cpu_seconds"]
    assert reported == pytest.approx(_ledger(ledger), rel=1e-12) and reported > first_attempt
