"""Sweeps: one study over the Cartesian product of config grids and seeds.

Each grid point is a normal run folder of ``dlpde run`` (config, provenance, metrics, figures,
report) under ``<out>/trials/<label>-<hash>``, the hash being that of the trial's whole config,
so a re-run of the same sweep skips finished trials and resumes unfinished ones. A trial that
raises is retried ``retries`` times and then recorded as failed with its error, without stopping
the others. ``summary.csv`` (one row per trial: grid keys, seed, status, attempts, time,
metrics, error) is rewritten atomically as trials finish, and ``plot_sweep`` draws a line plot
(one grid key) or a heatmap (two keys) of any metric, averaged over seeds.

Engines (``dlpde.shared.engines``): ``local`` (a process pool, the default, one worker per
core) and ``ray`` (Ray tasks on an existing cluster at ``address`` or on a local instance).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import itertools
import json
import math
import re
import time
import traceback
from pathlib import Path

from ._registry import discover_studies
from .shared.engines import make_engine
from .shared.runs import atomic_write_json, atomic_write_text, to_jsonable
from .shared.studies import ConfigError, execute, flatten_metrics, make_config

__all__ = ["SweepSpec", "parse_seeds", "load_sweep_file", "plan_trials", "run_trial", "run_sweep",
           "plot_sweep"]


@dataclasses.dataclass
class SweepSpec:
    """What a sweep runs: a study, a preset, grids (key -> values as text), seeds, fixed overrides."""

    study: str
    preset: str = "quick"
    grid: dict = dataclasses.field(default_factory=dict)
    seeds: list = dataclasses.field(default_factory=lambda: [0])
    fixed: dict = dataclasses.field(default_factory=dict)
    device: str = "auto"
    engine: str = "local"
    address: str | None = None
    workers: int | None = None
    retries: int = 1
    cpus_per_trial: int = 1
    gpus_per_trial: float | None = None
    out: str = "sweeps"
    metric: str | None = None


def parse_seeds(text) -> list[int]:
    """``"0-9"``, ``"0,3,5"``, ``"2"`` or a list -> sorted unique non-negative seeds."""
    if isinstance(text, int):
        return [text]
    if isinstance(text, (list, tuple)):
        items = [str(v) for v in text]
    else:
        items = [part.strip() for part in str(text).split(",") if part.strip()]
    seeds: set[int] = set()
    for item in items:
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        if not match:
            raise ConfigError(f"--seeds: expected e.g. 0-9 or 0,3,5, got {text!r}")
        lo, hi = int(match.group(1)), int(match.group(2) or match.group(1))
        if hi < lo:
            raise ConfigError(f"--seeds: empty range {item!r}")
        seeds.update(range(lo, hi + 1))
    if not seeds:
        raise ConfigError("--seeds: no seeds given")
    return sorted(seeds)


def parse_grid(items) -> dict:
    """``["width=64,128", "alpha=0.1,1"]`` -> ``{"width": ["64", "128"], "alpha": ["0.1", "1"]}``."""
    grid = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--grid expects key=v1,v2,..., got {item!r}")
        key, values = item.split("=", 1)
        values = [v.strip() for v in values.split(",") if v.strip()]
        if not values:
            raise ConfigError(f"--grid {key}: no values")
        grid[key.strip()] = values
    return grid


def load_sweep_file(path) -> dict:
    """A TOML sweep description: ``study``, ``preset``, ``seeds``, ``engine``, ``address``,
    ``workers``, ``retries``, ``device``, ``out``, ``metric``, and tables ``[grid]`` (key = list
    of values) and ``[set]`` (fixed overrides)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"sweep file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"sweep file {path}: {error}") from None
    allowed = {f.name for f in dataclasses.fields(SweepSpec)} | {"set"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"sweep file {path}: unknown keys {unknown}; allowed: {sorted(allowed)}")
    if "grid" in data:
        data["grid"] = {k: [str(v) for v in (vs if isinstance(vs, list) else [vs])]
                        for k, vs in data["grid"].items()}
    if "set" in data:
        data["fixed"] = {k: ",".join(map(str, v)) if isinstance(v, list) else str(v)
                         for k, v in data.pop("set").items()}
    if "seeds" in data:
        data["seeds"] = parse_seeds(data["seeds"])
    return data


@dataclasses.dataclass(frozen=True)
class Trial:
    key: str
    point: dict
    seed: int


def _label(point: dict, seed: int) -> str:
    text = "_".join(f"{k}={v}" for k, v in point.items()) + f"_seed={seed}"
    return re.sub(r"[^A-Za-z0-9._=-]", "-", text.lstrip("_"))[:80]


def plan_trials(spec: SweepSpec, study) -> list[Trial]:
    """The Cartesian product of the grids and seeds, each type-checked against the config."""
    keys = list(spec.grid)
    trials = []
    for values in itertools.product(*(spec.grid[k] for k in keys)):
        point = dict(zip(keys, values))
        for seed in spec.seeds:
            overrides = {**spec.fixed, **point}
            config = make_config(study, spec.preset, [f"{k}={v}" for k, v in overrides.items()],
                                 seed, spec.device)
            digest = hashlib.sha256(json.dumps(
                {"study": study.name, "preset": spec.preset, "config": to_jsonable(config)},
                sort_keys=True).encode()).hexdigest()[:10]
            trials.append(Trial(f"{_label(point, seed)}-{digest}", point, seed))
    return trials


def run_trial(task) -> dict:
    """Run one trial in this (worker) process; never raises for a failing study.

    ``task = (study, preset, overrides, seed, device, folder, retries, extra_modules)``.
    Returns ``{"status": "finished"|"failed", "metrics", "error", "attempts", "seconds"}`` and
    records the same in ``<folder>/status.json``.
    """
    name, preset, overrides, seed, device, folder, retries, extra_modules = task
    folder = Path(folder)
    start = time.perf_counter()
    errors, last = [], ""
    result = None
    for attempt in range(1, retries + 2):
        try:
            study = discover_studies(extra_modules)[name]
            _, metrics = execute(study, preset, overrides, seed, device, folder=folder, resume=True)
            result = {"status": "finished", "metrics": to_jsonable(metrics), "error": "",
                      "attempts": attempt}
            break
        except Exception as error:  # recorded, retried, never propagated
            errors.append(f"{type(error).__name__}: {error}")
            last = traceback.format_exc()
    if result is None:
        result = {"status": "failed", "metrics": {}, "error": errors[-1], "attempts": retries + 1,
                  "traceback": last}
    result["seconds"] = time.perf_counter() - start
    atomic_write_json(result, folder / "status.json")
    return result


def _summary_rows(spec, trials, results):
    rows = []
    for trial in trials:
        result = results.get(trial.key, {"status": "pending", "metrics": {}, "error": "",
                                         "attempts": 0, "seconds": ""})
        row = {"trial": trial.key, **trial.point, "seed": trial.seed, "status": result["status"],
               "attempts": result["attempts"], "seconds": result["seconds"]}
        for key, value in flatten_metrics(result.get("metrics", {})).items():
            if isinstance(value, (int, float, str, bool)) and key not in row:
                row[key] = value
        row["error"] = result.get("error", "")
        rows.append(row)
    return rows


def _write_summary(out: Path, rows):
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(buffer.getvalue(), out / "summary.csv")


def run_sweep(spec: SweepSpec, extra_modules=()) -> tuple[Path, list[dict]]:
    """Run (or resume) a sweep; return the output folder and the summary rows."""
    studies = discover_studies(extra_modules)
    if spec.study not in studies:
        raise ConfigError(f"unknown study {spec.study!r}; available: {', '.join(studies)}")
    study = studies[spec.study]
    if spec.retries < 0:
        raise ConfigError(f"retries must be >= 0, got {spec.retries}")
    trials = plan_trials(spec, study)
    out = Path(spec.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json({**dataclasses.asdict(spec), "grid_keys": list(spec.grid),
                       "n_trials": len(trials)}, out / "sweep.json")
    gpus = spec.gpus_per_trial if spec.gpus_per_trial is not None else (1 if spec.device == "cuda" else 0)
    engine = make_engine(spec.engine, spec.address, spec.workers, spec.cpus_per_trial, gpus) \
        if spec.engine != "inline" else make_engine("inline")
    results: dict[str, dict] = {}
    todo = []
    for trial in trials:
        folder = out / "trials" / trial.key
        if (folder / "metrics.json").exists():
            results[trial.key] = {"status": "finished", "attempts": 0, "error": "", "seconds": 0.0,
                                  "metrics": json.loads((folder / "metrics.json").read_text())}
        else:
            todo.append(trial)
    overrides = {t.key: [f"{k}={v}" for k, v in {**spec.fixed, **t.point}.items()] for t in todo}
    tasks = [(study.name, spec.preset, overrides[t.key], t.seed, spec.device,
              str(out / "trials" / t.key), spec.retries, tuple(extra_modules)) for t in todo]
    from tqdm.auto import tqdm

    bar = tqdm(total=len(trials), initial=len(trials) - len(todo), desc=f"sweep {study.name}",
               disable=None, dynamic_ncols=True)
    failed = 0
    try:
        for index, result in engine.map(run_trial, tasks, indices=list(range(len(todo))), progress=False):
            results[todo[index].key] = result
            failed += result["status"] == "failed"
            finished = sum(r["status"] == "finished" for r in results.values())
            running = min(len(todo) - (len(results) - (len(trials) - len(todo))),
                          spec.workers or len(todo))
            bar.update(1)
            bar.set_postfix(finished=finished, failed=failed, running=max(running, 0))
            _write_summary(out, _summary_rows(spec, trials, results))
    finally:
        bar.close()
        _write_summary(out, _summary_rows(spec, trials, results))
    rows = _summary_rows(spec, trials, results)
    return out, rows


def _numeric(value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def plot_sweep(folder, metric: str, x: str | None = None, y: str | None = None) -> list[Path]:
    """Plot ``metric`` from ``<folder>/summary.csv``: a line plot against one grid key (mean and
    standard deviation over seeds and any other keys) or a heatmap over two. Writes
    ``<folder>/<metric>.png`` and ``.pdf``."""
    folder = Path(folder)
    if not (folder / "summary.csv").exists() or not (folder / "sweep.json").exists():
        raise ConfigError(f"{folder} is not a sweep folder (no summary.csv / sweep.json)")
    spec = json.loads((folder / "sweep.json").read_text())
    with open(folder / "summary.csv", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["status"] == "finished"]
    grid_keys = spec["grid_keys"]
    if rows and metric not in rows[0]:
        skip = {"trial", "seed", "status", "attempts", "seconds", "error", *grid_keys}
        available = [k for k in rows[0] if k not in skip and _numeric(rows[0][k]) is not None]
        raise ConfigError(f"unknown metric {metric!r}; available: {', '.join(available)}")
    if not rows:
        raise ConfigError(f"{folder}: no finished trials to plot")
    for name, key in (("--x", x), ("--y", y)):
        if key is not None and key not in grid_keys:
            raise ConfigError(f"{name} {key!r} is not a grid key; grid keys: {', '.join(grid_keys)}")
    x = x or (grid_keys[0] if grid_keys else "seed")
    if y is None and len(grid_keys) >= 2:
        y = next(k for k in grid_keys if k != x)
    order = {k: spec["grid"].get(k, sorted({r[k] for r in rows})) for k in {x, y} - {None}}

    def stats(select):
        values = [_numeric(r[metric]) for r in rows if select(r)]
        values = [v for v in values if v is not None]
        if not values:
            return math.nan, 0.0
        mean = sum(values) / len(values)
        var = sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1)
        return mean, math.sqrt(var)

    from .shared.plotting import new_figure, save_figure

    xs = order[x]
    x_numeric = all(_numeric(v) is not None for v in xs)
    if y is None:
        fig, ax = new_figure(width=5, height=3.6)
        means, stds = zip(*[stats(lambda r, v=v: r[x] == v) for v in xs])
        positions = [float(v) for v in xs] if x_numeric else list(range(len(xs)))
        ax.errorbar(positions, means, yerr=stds, marker="o", capsize=3)
        if x_numeric and min(positions) > 0 and max(positions) / min(positions) >= 10:
            ax.set_xscale("log")
        if not x_numeric:
            ax.set_xticks(positions, xs)
        ax.set_xlabel(x)
        ax.set_ylabel(metric)
        ax.set_title(f"{spec['study']}: {metric} (mean +- std over seeds)", fontsize=9)
    else:
        import numpy as np

        ys = order[y]
        grid = np.array([[stats(lambda r, a=a, b=b: r[x] == a and r[y] == b)[0] for a in xs] for b in ys])
        fig, ax = new_figure(width=5.5, height=4.2)
        image = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(xs)), xs)
        ax.set_yticks(range(len(ys)), ys)
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        for i in range(len(ys)):
            for j in range(len(xs)):
                if math.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.3g}", ha="center", va="center", fontsize=7, color="w")
        fig.colorbar(image, ax=ax, label=metric)
        ax.set_title(f"{spec['study']}: {metric} (mean over seeds)", fontsize=9)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", metric)
    return save_figure(fig, folder / safe)
