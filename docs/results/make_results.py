"""Write the results pages of the documentation from run folders.

A run folder (``<out>/<study>/<preset>-seed<seed>``, written by ``dlpde run``) holds
``config.json``, ``env.json`` (git commit, command line, versions) and ``metrics.json``. This
script picks, for every study, the run of the largest preset (paper > full > quick > smoke, then
the newest) and writes one Markdown page per thread, ``docs/results/<thread>.md``, with the
metrics as a table and the command and commit that produced them. No number on those pages is
typed by hand.

Run folders are looked for in ``runs/`` at the repository root and in every folder named by
``--runs`` (or the ``DLPDE_RESULTS_RUNS`` environment variable, ``os.pathsep``-separated). The
docs build must work from a fresh clone, where there are none: then the committed snapshot in
``docs/results/data/`` is used, which this same script wrote from real run folders::

    dlpde run inverse.lista --preset full --out runs/          # or any study, any preset
    python docs/results/make_results.py --runs runs/ --snapshot   # refresh docs/results/data/
    python docs/results/make_results.py                            # write the pages (conf.py does)

The snapshot keeps, per study, the metrics, the configuration, the command, the commit and the
versions of the chosen run (a few kB each).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA = HERE / "data"
THREADS = ("hjb", "symmetry", "meanfield", "ntk", "inverse")
PRESET_RANK = {"smoke": 0, "quick": 1, "full": 2, "paper": 3}
ENV_KEYS = ("git_commit", "command", "time", "dlpde", "torch", "python", "device", "cpu_count",
            "torch_threads", "gpu")
TITLES = {"hjb": "Hamilton-Jacobi equations", "symmetry": "Symmetric and antisymmetric networks",
          "meanfield": "Mean-field limits", "ntk": "Neural tangent kernels",
          "inverse": "Inverse problems and image restoration"}


def read_run(folder: Path) -> dict | None:
    """A run folder as a record, or None when it is unfinished (no metrics.json)."""
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
        config = json.loads((folder / "config.json").read_text())
        env = json.loads((folder / "env.json").read_text())
    except (OSError, ValueError):
        return None
    preset = folder.name.split("-seed")[0]
    if preset not in PRESET_RANK or "." not in folder.parent.name:
        return None
    return {"study": folder.parent.name, "preset": preset, "seed": config.get("seed"),
            "metrics": metrics, "config": config, "env": {k: env[k] for k in ENV_KEYS if k in env},
            "source": "run folder"}


def find_runs(roots) -> list[dict]:
    runs = []
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for metrics in sorted(root.glob("**/metrics.json")):
            record = read_run(metrics.parent)
            if record is not None:
                runs.append(record)
    return runs


def read_snapshot() -> list[dict]:
    records = []
    for path in sorted(DATA.glob("*.json")):
        record = json.loads(path.read_text())
        record["source"] = "snapshot"
        records.append(record)
    return records


def choose(records) -> dict[str, dict]:
    """Per study, the record of the largest preset; among equals the newest run."""
    best: dict[str, dict] = {}
    for record in records:
        key = (PRESET_RANK[record["preset"]], record["env"].get("time", ""), record["source"] == "run folder")
        current = best.get(record["study"])
        if current is None or key > current[0]:
            best[record["study"]] = (key, record)
    return {study: pair[1] for study, pair in sorted(best.items())}


def _flatten(metrics, prefix=""):
    flat = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _cell(value) -> str | None:
    """A table cell, or None for values too long for a table (long lists, arrays)."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value.replace("|", "\\|") if len(value) <= 80 else None
    if isinstance(value, (list, tuple)):
        if len(value) > 8 or any(isinstance(v, (list, tuple, dict)) for v in value):
            return None
        cells = [_cell(v) for v in value]
        return None if None in cells else "[" + ", ".join(cells) + "]"
    return None


def _table(rows: dict[str, dict[str, str]], corner: str) -> list[str]:
    columns = list(dict.fromkeys(c for row in rows.values() for c in row))
    lines = [f"| {corner} | " + " | ".join(f"`{c}`" for c in columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    lines += [f"| `{r}` | " + " | ".join(row.get(c, "") for c in columns) + " |" for r, row in rows.items()]
    return lines + [""]


def metric_tables(flat: dict) -> list[str]:
    """Scalars in one table; ``a.b`` keys as a table of rows ``a`` and columns ``b``; ``a.b.c...``
    keys as one table per ``a`` (rows ``b``, columns ``c...``). Long entries are counted, not shown."""
    scalars, pairs, groups, skipped = {}, {}, {}, 0
    for key, value in flat.items():
        cell = _cell(value)
        if cell is None:
            skipped += 1
            continue
        parts = key.split(".")
        if len(parts) == 1:
            scalars[key] = {"value": cell}
        elif len(parts) == 2:
            pairs.setdefault(parts[0], {})[parts[1]] = cell
        else:
            groups.setdefault(parts[0], {}).setdefault(parts[1], {})[".".join(parts[2:])] = cell
    lines = []
    if scalars:
        lines += _table(scalars, "metric")
    if pairs:
        lines += _table(pairs, "metric")
    for name, rows in groups.items():
        lines += [f"`{name}`:", ""] + _table(rows, "")
    if skipped:
        lines += [f"{skipped} long entries (curves, arrays) are in the run folder's `metrics.json`.", ""]
    return lines


def _command(record) -> str:
    command = record["env"].get("command")
    if isinstance(command, list) and command:
        return " ".join(["dlpde", *command[1:]]) if command[0].endswith("dlpde") else " ".join(command)
    return f"dlpde run {record['study']} --preset {record['preset']} --seed {record['seed']}"


def render_thread(thread: str, records: dict[str, dict]) -> str:
    title = f"Results: {TITLES[thread]}"
    lines = [f"# {title}", "",
             f"Metrics of the `{thread}` studies, generated by `docs/results/make_results.py` from run "
             "folders (see {doc}`index`). Each table names the preset, the command and the commit "
             "that produced it.", ""]
    studies = {s: r for s, r in records.items() if s.split(".")[0] == thread}
    if not studies:
        lines += ["No run of this thread's studies is available yet.", ""]
    for study, record in studies.items():
        env = record["env"]
        lines += [f"## `{study}`", ""]
        if record["preset"] != "full":
            lines += [":::{note}",
                      f"These numbers come from the **{record['preset']}** preset, not the full one: they "
                      "show what the study reports, not its targets. Rerun with `--preset full` and "
                      "regenerate to replace them.", ":::", ""]
        lines += [f"- command: `{_command(record)}`",
                  f"- commit: `{env.get('git_commit') or 'unknown'}`",
                  f"- preset `{record['preset']}`, seed {record['seed']}, device `{env.get('device')}`, "
                  f"dlpde {env.get('dlpde')}, torch {env.get('torch')}, run at {env.get('time')}",
                  f"- from: {record['source']}", ""]
        lines += metric_tables(_flatten(record["metrics"]))
        lines.append("")
    return "\n".join(lines)


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", action="append", default=[], help="a folder of run folders (repeatable)")
    parser.add_argument("--snapshot", action="store_true",
                        help="write the chosen run folders' records to docs/results/data/")
    args = parser.parse_args(argv)
    roots = [ROOT / "runs", *args.runs,
             *[p for p in os.environ.get("DLPDE_RESULTS_RUNS", "").split(os.pathsep) if p]]
    runs = find_runs(roots)
    if args.snapshot:
        if not runs:
            parser.error("no finished run folders found for --snapshot")
        DATA.mkdir(exist_ok=True)
        for study, record in choose(runs).items():
            record = {k: v for k, v in record.items() if k != "source"}
            _write_if_changed(DATA / f"{study}.json", json.dumps(record, indent=1) + "\n")
        print(f"snapshot of {len(choose(runs))} studies in {DATA}")
    records = choose([*read_snapshot(), *runs])
    for thread in THREADS:
        _write_if_changed(HERE / f"{thread}.md", render_thread(thread, records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
