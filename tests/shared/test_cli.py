"""The dlpde command: listing, running, resuming, citing, the tour, and one-line errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dlpde.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXTRA = ("tests.shared.example_study",)


def run_cli(*args, env_extra=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), DLPDE_EXTRA_STUDIES="tests.shared.example_study",
               **(env_extra or {}))
    script = Path(sys.executable).parent / "dlpde"  # the console script pip installed
    command = [str(script)] if script.exists() else [sys.executable, "-m", "dlpde.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)


def test_list_through_the_installed_entry_point():
    out = run_cli("list")
    assert out.returncode == 0 and "example.fit" in out.stdout, out.stderr


def test_help_and_version(capsys):
    for flag, text in (("--help", "tour"), ("--version", "dlpde 0.")):
        with pytest.raises(SystemExit) as exit_info:
            main([flag])
        assert exit_info.value.code == 0 and text in capsys.readouterr().out
    assert main([]) == 0 and "COMMAND" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["run", "nope.study"], "unknown study 'nope.study'"),
    (["run", "example.fit", "--preset", "huge"], "unknown preset 'huge'"),
    (["run", "example.fit", "--set", "width=x"], "width='x': expected an integer"),
    (["run", "example.fit", "--set", "nokey=1"], "unknown config key 'nokey'"),
    (["run", "example.fit", "--set", "activation=gelu"], "allowed values are tanh, relu"),
    (["run", "example.fit", "--set", "steps=0"], "steps must be >= 1"),
    (["run", "example.fit", "--set", "width"], "expects key=value"),
    (["run", "example.fit", "--seed", "-3"], "non-negative integer"),
    (["run"], "required"),
    (["frobnicate"], "invalid choice"),
    (["cite", "nope.study"], "unknown study"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, capsys, tmp_path):
    assert main([*args, "--out", str(tmp_path)] if args[:1] == ["run"] and len(args) > 1 else args,
                extra_modules=EXTRA) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("dlpde: error:") and message in err


def test_bad_device_is_one_line(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    assert main(["run", "example.fit", "--device", "cuda", "--out", str(tmp_path)], extra_modules=EXTRA) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_run_writes_the_run_folder(tmp_path, capsys):
    assert main(["run", "example.fit", "--preset", "smoke", "--out", str(tmp_path), "--set", "width=4",
                 "--set", "sizes=1,2,3", "--seed", "2"], extra_modules=EXTRA) == 0
    assert "final_loss" in capsys.readouterr().out
    folder = tmp_path / "example.fit" / "smoke-seed2"
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "env.json", "metrics.json", "report.md", "references.bib", "history.csv",
            "loss.png", "loss.pdf"} <= names
    config = json.loads((folder / "config.json").read_text())
    assert config["width"] == 4 and config["sizes"] == [1, 2, 3] and config["seed"] == 2
    assert config["device"] in ("cpu", "cuda")
    env = json.loads((folder / "env.json").read_text())
    assert env["seed"] == 2 and env["torch"] and "git_commit" in env
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["sum_sizes"] == 6 and metrics["n_history"] == 5
    assert "@inproceedings{paszke2019pytorch" in (folder / "references.bib").read_text()
    report = (folder / "report.md").read_text()
    assert "| width | 4 |" in report and "![training loss](loss.png)" in report
    # a second run does not overwrite the first
    assert main(["run", "example.fit", "--preset", "smoke", "--out", str(tmp_path), "--seed", "2"],
                extra_modules=EXTRA) == 0
    assert (tmp_path / "example.fit" / "smoke-seed2-2" / "metrics.json").exists()


def test_interrupted_run_resumes_from_checkpoint(tmp_path, monkeypatch, capsys):
    args = ["run", "example.fit", "--preset", "quick", "--out", str(tmp_path), "--set", "fail_at_step=12"]
    monkeypatch.setenv("EXAMPLE_STUDY_CRASH", "1")
    assert main(args, extra_modules=EXTRA) == 130  # Ctrl-C at step 12
    assert "--resume" in capsys.readouterr().err
    monkeypatch.delenv("EXAMPLE_STUDY_CRASH")
    folder = tmp_path / "example.fit" / "quick-seed0"
    assert not (folder / "metrics.json").exists()
    import torch

    assert torch.load(folder / "checkpoints" / "model.pt", weights_only=False)["step"] == 12
    assert main([*args, "--resume"], extra_modules=EXTRA) == 0
    assert main(["run", "example.fit", "--preset", "quick", "--out", str(tmp_path / "b"), "--set",
                 "fail_at_step=12"], extra_modules=EXTRA) == 0
    a = json.loads((folder / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "example.fit" / "quick-seed0" / "metrics.json").read_text())
    assert a["final_loss"] == b["final_loss"] and a["n_history"] == b["n_history"] == 20
    # resuming with a different config is refused
    assert main(["run", "example.fit", "--preset", "quick", "--out", str(tmp_path), "--set",
                 "fail_at_step=3", "--resume"], extra_modules=EXTRA) == 2


def test_cite(capsys):
    assert main(["cite", "example.fit"], extra_modules=EXTRA) == 0
    out = capsys.readouterr().out
    assert "@software{dlpde" in out and "paszke2019pytorch" in out


def test_tour_writes_html_and_markdown(tmp_path, capsys):
    assert main(["tour", "--only", "example.fit", "--preset", "smoke", "--out", str(tmp_path)],
                extra_modules=EXTRA) == 0
    out = capsys.readouterr().out
    assert "Threads with no study yet" in out or "example.fit" in out
    (tour,) = list(tmp_path.glob("tour-*"))
    page = (tour / "report.html").read_text()
    assert "data:image/png;base64," in page and "example.fit" in page
    md = (tour / "report.md").read_text()
    assert "example.fit" in md and "example.fit/loss.png" in md
    assert main(["tour", "--only", "nope.x", "--out", str(tmp_path)], extra_modules=EXTRA) == 2
