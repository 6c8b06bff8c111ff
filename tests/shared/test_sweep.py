"""Sweeps and engines: local process pool, a real local Ray cluster, resume, failures, plots."""

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dlpde.cli import main
from dlpde.shared.engines import InlineEngine, LocalEngine, make_engine

ROOT = Path(__file__).resolve().parents[2]
EXTRA = ("tests.shared.sweep_study",)


def read_summary(folder):
    with open(Path(folder) / "summary.csv", newline="") as handle:
        return {row["trial"]: row for row in csv.DictReader(handle)}


def square(x):
    return x * x


def test_engines_map_same_results():
    inline = dict(InlineEngine().map(square, [1, 2, 3], progress=False))
    local = dict(LocalEngine(workers=2).map(square, [1, 2, 3], indices=[5, 6, 7], progress=False))
    assert inline == {0: 1, 1: 4, 2: 9} and local == {5: 1, 6: 4, 7: 9}
    with pytest.raises(ValueError, match="engine"):
        make_engine("slurm")
    with pytest.raises(ValueError, match="workers"):
        LocalEngine(workers=0)


def test_local_sweep_resume_failures_and_plot(tmp_path, capsys):
    out = tmp_path / "s"
    args = ["sweep", "example.grid", "--preset", "smoke", "--grid", "scale=0.5,1,2,13", "--grid",
            "n_points=2,3", "--seeds", "0-1", "--set", "fail_scale=13", "--retries", "1", "--engine",
            "local", "--workers", "2", "--out", str(out), "--metric", "mean_value"]
    assert main(args, extra_modules=EXTRA) == 1  # the scale=13 trials fail
    rows = read_summary(out)
    assert len(rows) == 4 * 2 * 2
    failed = [r for r in rows.values() if r["status"] == "failed"]
    assert len(failed) == 4 and all(r["scale"] == "13" for r in failed)
    assert all(r["attempts"] == "2" and "fails on purpose" in r["error"] for r in failed)
    finished = [r for r in rows.values() if r["status"] == "finished"]
    assert len(finished) == 12 and all(float(r["mean_value"]) > 0 for r in finished)
    assert "nested.max_value" in finished[0]
    # each trial is a normal run folder
    trial = out / "trials" / finished[0]["trial"]
    assert {"config.json", "env.json", "metrics.json", "report.md", "status.json"} <= {
        p.name for p in trial.iterdir()}
    assert (out / "mean_value.png").exists()  # 2-D grid: heatmap
    # resuming skips finished trials (their folders are untouched) and retries failed ones
    stamp = (trial / "metrics.json").stat().st_mtime_ns
    assert main(args, extra_modules=EXTRA) == 1
    assert (trial / "metrics.json").stat().st_mtime_ns == stamp
    assert read_summary(out)[finished[0]["trial"]]["attempts"] == "0"
    # sweep-plot: a line plot over one key, averaged over the other and the seeds
    assert main(["sweep-plot", str(out), "--metric", "mean_value", "--x", "scale", "--y", "n_points"]) == 0
    assert main(["sweep-plot", str(out), "--metric", "nope"]) == 2
    assert "unknown metric 'nope'" in capsys.readouterr().err


def test_flaky_trial_is_retried(tmp_path):
    out = tmp_path / "f"
    args = ["sweep", "example.grid", "--preset", "smoke", "--grid", "flaky=true", "--engine", "inline",
            "--out", str(out), "--retries", "1"]
    assert main(args, extra_modules=EXTRA) == 0
    (row,) = read_summary(out).values()
    assert row["status"] == "finished" and row["attempts"] == "2"
    out2 = tmp_path / "g"
    assert main([*args[:-4], "--out", str(out2), "--retries", "0"], extra_modules=EXTRA) == 1


def test_interrupted_sweep_resumes(tmp_path, monkeypatch):
    """Ctrl-C after the first trial: finished trials stay, the rerun does only the rest."""
    import dlpde.sweep as sweep_module

    out = tmp_path / "i"
    args = ["sweep", "example.grid", "--preset", "smoke", "--grid", "scale=1,2,3", "--engine", "inline",
            "--out", str(out)]
    original = sweep_module.run_trial
    calls = []

    def interrupt_second(task):
        calls.append(task)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(task)

    monkeypatch.setattr(sweep_module, "run_trial", interrupt_second)
    assert main(args, extra_modules=EXTRA) == 130
    rows = read_summary(out)
    assert sorted(r["status"] for r in rows.values()) == ["finished", "pending", "pending"]
    monkeypatch.setattr(sweep_module, "run_trial", original)
    calls.clear()
    monkeypatch.setattr(sweep_module, "run_trial", lambda task: calls.append(task) or original(task))
    assert main(args, extra_modules=EXTRA) == 0
    assert len(calls) == 2
    assert all(r["status"] == "finished" for r in read_summary(out).values())


def test_bad_sweep_input(capsys, tmp_path):
    for args, message in [
        (["sweep", "example.grid", "--grid", "scale"], "--grid expects"),
        (["sweep", "example.grid", "--grid", "nokey=1,2"], "unknown config key"),
        (["sweep", "example.grid", "--grid", "scale=a,b"], "expected a number"),
        (["sweep", "example.grid", "--seeds", "3-1"], "--seeds"),
        (["sweep", "example.grid", "--engine", "slurm"], "engine"),
        (["sweep"], "study name"),
        (["sweep", "example.grid", "--file", str(tmp_path / "none.toml")], "does not exist"),
    ]:
        assert main([*args, "--out", str(tmp_path / "x")], extra_modules=EXTRA) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (args, err)


def test_sweep_file(tmp_path):
    (tmp_path / "s.toml").write_text(
        'study = "example.grid"\npreset = "smoke"\nseeds = "0-1"\nengine = "inline"\n'
        f'out = "{tmp_path / "out"}"\n[grid]\nscale = [0.5, 2.0]\n[set]\nn_points = 2\n')
    assert main(["sweep", "--file", str(tmp_path / "s.toml")], extra_modules=EXTRA) == 0
    rows = read_summary(tmp_path / "out")
    assert len(rows) == 4 and {r["scale"] for r in rows.values()} == {"0.5", "2.0"}
    config = json.loads(next((tmp_path / "out" / "trials").glob("*/config.json")).read_text())
    assert config["n_points"] == 2


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    pytest.importorskip("ray")
    ray_bin = shutil.which("ray") or str(Path(sys.executable).parent / "ray")
    port = free_port()
    # A throwaway cluster on 127.0.0.1: no token authentication, so that a token left in
    # ~/.ray by another Ray instance cannot lock the test's client out.
    auth_mode = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    env = dict(os.environ, PYTHONPATH=str(ROOT), DLPDE_EXTRA_STUDIES=EXTRA[0], RAY_USAGE_STATS_ENABLED="0")
    temp = tmp_path_factory.mktemp("ray")
    start = subprocess.run([ray_bin, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                            "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
                            f"--temp-dir={temp}"], env=env, capture_output=True, text=True, timeout=180)
    if start.returncode != 0:
        pytest.fail(f"ray start failed: {start.stderr[-2000:]}")
    yield f"127.0.0.1:{port}"
    import ray

    if ray.is_initialized():
        ray.shutdown()
    subprocess.run([ray_bin, "stop", "--force"], env=env, capture_output=True, timeout=120)
    time.sleep(1)
    if auth_mode is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = auth_mode


def test_ray_engine_matches_local_engine(tmp_path, ray_cluster):
    base = ["--preset", "smoke", "--grid", "scale=0.5,1,2,4", "--seeds", "0-1", "--workers", "2"]
    assert main(["sweep", "example.grid", *base, "--engine", "local", "--out", str(tmp_path / "local")],
                extra_modules=EXTRA) == 0
    assert main(["sweep", "example.grid", *base, "--engine", "ray", "--address", ray_cluster, "--out",
                 str(tmp_path / "ray")], extra_modules=EXTRA) == 0
    local, ray_rows = read_summary(tmp_path / "local"), read_summary(tmp_path / "ray")
    assert local.keys() == ray_rows.keys() and len(local) == 8
    for key in local:
        assert ray_rows[key]["status"] == "finished"
        assert ray_rows[key]["mean_value"] == local[key]["mean_value"]  # identical, not close
    assert (tmp_path / "ray" / "mean_value.png").exists()
    # a study's own grid through the engines: `dlpde run --engine ray` equals `--engine local`
    metrics = {}
    for engine in ("local", "ray"):
        extra = ["--address", ray_cluster] if engine == "ray" else []
        assert main(["run", "example.grid", "--preset", "full", "--engine", engine, *extra, "--out",
                     str(tmp_path / f"run-{engine}")], extra_modules=EXTRA) == 0
        folder = tmp_path / f"run-{engine}" / "example.grid" / "full-seed0"
        metrics[engine] = json.loads((folder / "metrics.json").read_text())
    assert metrics["ray"]["values"] == metrics["local"]["values"]
