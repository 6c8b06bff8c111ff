"""Every error a user can cause on the command line is one line and exit code 2 (issue: reliability).

Bad config values, bad paths, seeds out of range, corrupted run folders, malicious checkpoints and
diverging training: one line on stderr naming the problem, exit code 2, no traceback, never 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dlpde.cli import main

EXTRA = ("tests.shared.example_study",)


def _one_line_exit_2(args, capsys, expect: str):
    code = main(args, extra_modules=EXTRA)
    err = capsys.readouterr().err.strip()
    assert code == 2, (code, err)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert expect in err, err
    return err


@pytest.mark.parametrize(("extra", "expect"), [
    (["--set", "steps=-4"], "steps"),
    (["--set", "steps=0"], "steps"),
    (["--set", "device=quantum"], "quantum"),
    (["--device", "quantum"], "quantum"),
    (["--seed", str(2**70)], "seed"),
    (["--seed", "2**70"], "seed"),
    (["--set", "lr=nan"], "lr"),
    (["--set", "activation=bogus"], "activation"),
    (["--set", "nosuchkey=1"], "nosuchkey"),
])
def test_bad_values_are_one_line_and_exit_2(extra, expect, tmp_path, capsys):
    _one_line_exit_2(["run", "example.fit", "--preset", "smoke", "--out", str(tmp_path), *extra],
                     capsys, expect)


def test_an_unwritable_output_folder_is_one_line(capsys):
    _one_line_exit_2(["run", "example.fit", "--preset", "smoke", "--out", "/proc/x"], capsys, "/proc/x")


def _finished_run(tmp_path) -> Path:
    assert main(["run", "example.fit", "--preset", "smoke", "--out", str(tmp_path)], extra_modules=EXTRA) == 0
    return tmp_path / "example.fit" / "smoke-seed0"


@pytest.mark.parametrize("name", ["metrics.json", "config.json"])
def test_a_corrupted_run_folder_on_resume_is_one_line(name, tmp_path, capsys):
    folder = _finished_run(tmp_path)
    (folder / name).write_text('{"truncated": ')
    capsys.readouterr()
    _one_line_exit_2(["run", "example.fit", "--preset", "smoke", "--out", str(tmp_path), "--resume"],
                     capsys, name)


def test_a_corrupted_checkpoint_on_resume_is_one_line(tmp_path, capsys, monkeypatch):
    args = ["run", "example.fit", "--preset", "quick", "--out", str(tmp_path), "--set", "fail_at_step=12"]
    monkeypatch.setenv("EXAMPLE_STUDY_CRASH", "1")
    assert main(args, extra_modules=EXTRA) == 130
    monkeypatch.delenv("EXAMPLE_STUDY_CRASH")
    checkpoint = tmp_path / "example.fit" / "quick-seed0" / "checkpoints" / "model.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    capsys.readouterr()
    _one_line_exit_2([*args, "--resume"], capsys, "model.pt")


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > pwned.txt",))


def test_a_malicious_checkpoint_in_a_run_folder_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["run", "example.fit", "--preset", "quick", "--out", str(tmp_path), "--set", "fail_at_step=12"]
    monkeypatch.setenv("EXAMPLE_STUDY_CRASH", "1")
    assert main(args, extra_modules=EXTRA) == 130
    monkeypatch.delenv("EXAMPLE_STUDY_CRASH")
    checkpoint = tmp_path / "example.fit" / "quick-seed0" / "checkpoints" / "model.pt"
    torch.save({"step": 3, "params": [_Payload()], "optimizer": {}, "history": []}, checkpoint)
    capsys.readouterr()
    _one_line_exit_2([*args, "--resume"], capsys, "refusing to load")
    assert not (tmp_path / "pwned.txt").exists()


def test_diverging_training_is_exit_2_naming_the_step(tmp_path, capsys):
    err = _one_line_exit_2(["run", "example.fit", "--preset", "quick", "--out", str(tmp_path),
                            "--set", "lr=1e6"], capsys, "step")
    assert "diverged" in err
    assert not (tmp_path / "example.fit" / "quick-seed0" / "metrics.json").exists()


def test_time_adds_up_across_resumes(tmp_path, monkeypatch, capsys):
    args = ["run", "example.fit", "--preset", "quick", "--out", str(tmp_path), "--set", "fail_at_step=12"]
    monkeypatch.setenv("EXAMPLE_STUDY_CRASH", "1")
    assert main(args, extra_modules=EXTRA) == 130
    folder = tmp_path / "example.fit" / "quick-seed0"
    first = json.loads((folder / "timing.json").read_text())
    assert first["attempts"] == 1 and first["cpu_seconds"] > 0
    (folder / "checkpoints" / ".model.pt.abc123.tmp").write_bytes(b"half-written")  # a stale temporary
    monkeypatch.delenv("EXAMPLE_STUDY_CRASH")
    assert main([*args, "--resume"], extra_modules=EXTRA) == 0
    total = json.loads((folder / "timing.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    assert total["attempts"] == 2 and total["cpu_seconds"] > first["cpu_seconds"]
    assert metrics["total_cpu_seconds"] == pytest.approx(total["cpu_seconds"])
    assert not list(folder.glob("**/.*.tmp"))


def test_denoise_command_restores_an_image_file_and_refuses_bad_files(tmp_path, capsys):
    import imageio.v3 as iio
    import numpy as np
    from skimage import data
    from skimage.metrics import peak_signal_noise_ratio

    clean = data.camera()[128:192, 128:192] / 255.0
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape), 0, 1)
    iio.imwrite(tmp_path / "noisy.png", (noisy * 255).round().astype(np.uint8))
    out = str(tmp_path / "out.png")
    assert main(["denoise", str(tmp_path / "noisy.png"), "--sigma", "25", "--out", out]) == 0
    restored = iio.imread(tmp_path / "out.png") / 255.0
    assert restored.shape == clean.shape
    before = peak_signal_noise_ratio(clean, noisy, data_range=1)
    after = peak_signal_noise_ratio(clean, restored, data_range=1)
    assert after > before + 3, (before, after)
    capsys.readouterr()
    (tmp_path / "bad.png").write_bytes(b"not an image")
    other = str(tmp_path / "x.png")
    _one_line_exit_2(["denoise", str(tmp_path / "bad.png"), "--out", other], capsys, "bad.png")
    _one_line_exit_2(["denoise", str(tmp_path / "noisy.png"), "--sigma", "7", "--out", other],
                     capsys, "sigma")


def test_cpu_time_counts_the_work_of_child_processes(tmp_path, monkeypatch):
    def cpu_seconds(out):
        assert main(["run", "example.fit", "--preset", "quick", "--out", str(out)], extra_modules=EXTRA) == 0
        metrics = json.loads((out / "example.fit" / "quick-seed0" / "metrics.json").read_text())
        return metrics["total_cpu_seconds"]

    cpu_seconds(tmp_path / "warm-up")  # imports and caches: the two measured runs are alike
    alone = cpu_seconds(tmp_path / "alone")
    monkeypatch.setenv("EXAMPLE_STUDY_CHILD_CPU", "1.5")  # CPU seconds the child process spends
    with_child = cpu_seconds(tmp_path / "with-child")
    assert with_child - alone >= 1.2
