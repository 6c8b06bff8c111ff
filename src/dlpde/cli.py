"""The ``dlpde`` command: list, run, cite and tour the studies; denoise an image file.

    dlpde list
    dlpde run hjb.crossing --preset quick --device auto --seed 0 --out runs/ --set width=128
    dlpde cite hjb.crossing
    dlpde tour
    dlpde denoise photo.png --method trd --sigma 25 --out restored.png

Bad input (unknown study, preset or key, a bad value) is a one-line error and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

from . import __version__
from ._registry import THREADS, discover_studies
from .shared.checks import NonFiniteResultError
from .shared.runs import CorruptRunFolderError
from .shared.studies import PRESETS, ConfigError, execute, flatten_metrics
from .shared.train import TrainingDivergedError


class UsageError(Exception):
    """A user error: printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dlpde", description="Studies of the dlpde workbench: deep learning "
                     "and PDEs (Hamilton-Jacobi, symmetry, mean-field, NTK, inverse problems).")
    parser.add_argument("--version", action="version", version=f"dlpde {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.add_parser("list", help="list the studies with one-line descriptions")

    run = sub.add_parser("run", help="run one study and write its run folder")
    run.add_argument("name", help="study name, e.g. hjb.crossing (see `dlpde list`)")
    _common(run)
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value (repeatable); lists are comma-separated")
    run.add_argument("--resume", action="store_true",
                     help="continue the latest run folder of this study/preset/seed")
    _engine_options(run, default="inline",
                    what="where the study's independent grid points run (inline: in this process)")

    sweep = sub.add_parser("sweep", help="run a study over grids of config values and seeds")
    sweep.add_argument("name", nargs="?", help="study name (or give it in --file)")
    sweep.add_argument("--file", help="a TOML sweep file (flags given here override it)")
    sweep.add_argument("--preset", default=None, help=f"one of {', '.join(PRESETS)} (default quick)")
    sweep.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                       help="a config key and its values (repeatable: the Cartesian product is run)")
    sweep.add_argument("--seeds", default=None, help="seeds, e.g. 0-9 or 0,3,5 (default 0)")
    sweep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="a fixed override for every trial (repeatable)")
    sweep.add_argument("--device", default=None, help="auto, cpu or cuda (resolved on each worker)")
    sweep.add_argument("--out", default=None, help="sweep folder (default sweeps/<study>)")
    sweep.add_argument("--retries", type=int, default=None, help="retries of a failing trial (default 1)")
    sweep.add_argument("--metric", default=None, help="metric to plot when the sweep ends")
    _engine_options(sweep, default=None, what="local (process pool, default) or ray")

    plot = sub.add_parser("sweep-plot", help="plot a metric of a sweep (line plot or heatmap)")
    plot.add_argument("folder", help="the sweep folder (holding summary.csv)")
    plot.add_argument("--metric", required=True, help="the metric to plot")
    plot.add_argument("--x", default=None, help="grid key on the x axis (default: the first)")
    plot.add_argument("--y", default=None, help="grid key on the y axis of a heatmap")

    cite = sub.add_parser("cite", help="print the BibTeX of every method a study uses")
    cite.add_argument("name", help="study name")

    denoise = sub.add_parser("denoise", help="denoise an image file (PNG/TIFF) with a shipped model")
    denoise.add_argument("image", help="input image file (grayscale or RGB; 8/16-bit or float in [0, 1])")
    denoise.add_argument("--method", default="trd", help="trd, dncnn or unet (default trd)")
    denoise.add_argument("--sigma", type=int, default=25,
                         help="noise standard deviation on the 0-255 scale: 15, 25 or 50 (default 25)")
    denoise.add_argument("--out", required=True, help="output image file (format by extension)")
    denoise.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")

    tour = sub.add_parser("tour", help="run the headline study of each thread; one report")
    _common(tour)
    tour.add_argument("--only", default="", metavar="NAMES",
                      help="comma-separated study names: run only these of the tour's studies")
    return parser


def _common(p):
    p.add_argument("--preset", default="quick", help=f"one of {', '.join(PRESETS)} (default quick)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    p.add_argument("--seed", default=0, type=_seed, help="random seed (default 0)")
    p.add_argument("--out", default="runs", help="folder for run folders (default runs/)")


def _engine_options(p, default, what):
    p.add_argument("--engine", default=default, help=f"inline, local or ray: {what}")
    p.add_argument("--address", default=None,
                   help="Ray cluster address (e.g. ray://head:10001 or auto); default: start Ray here")
    p.add_argument("--workers", type=_positive, default=None,
                   help="parallel workers (local: processes, default one per core)")
    p.add_argument("--cpus-per-task", type=_positive, default=1, dest="cpus_per_task",
                   help="CPUs (torch threads) per task or trial (default 1)")


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seed(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if not 0 <= value <= 2**63 - 1:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer below 2**63, got {text!r}")
    return value


def _get(studies, name):
    if name not in studies:
        raise UsageError(f"unknown study {name!r}; available: {', '.join(studies) or 'none'}")
    return studies[name]


def _cmd_list(studies) -> int:
    width = max((len(n) for n in studies), default=10)
    for thread in THREADS:
        names = [n for n, s in studies.items() if s.thread == thread]
        if not names:
            print(f"{thread:<{width}}  (no study yet)")
    for name, study in studies.items():
        mark = "*" if study.in_tour else " "
        print(f"{name:<{width}} {mark} {study.description}")
    print("\n* in `dlpde tour`. Presets: smoke (seconds), quick (<= 3 min), full (<= 30 min), "
          "paper (GPU).")
    return 0


def _print_metrics(metrics):
    for key, value in flatten_metrics(metrics).items():
        if isinstance(value, float):
            value = f"{value:.6g}"
        elif isinstance(value, list) and len(value) > 6:
            continue
        print(f"  {key}: {value}")


def _make_engine(args):
    from .shared.engines import make_engine

    try:
        return make_engine(args.engine, args.address, args.workers, args.cpus_per_task,
                           1 if args.device == "cuda" else 0)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _cmd_run(studies, args) -> int:
    study = _get(studies, args.name)
    run, metrics = execute(study, args.preset, args.set, args.seed, args.device, args.out,
                           resume=args.resume, engine=_make_engine(args))
    print(f"{study.name} ({args.preset}) -> {run.path}")
    _print_metrics(metrics)
    return 0


def _cmd_denoise(args) -> int:
    from .inverse import denoise_file

    denoise_file(args.image, args.out, method=args.method, sigma=args.sigma, device=args.device)
    print(f"{args.image} -> {args.out} ({args.method}, sigma {args.sigma})")
    return 0


def _cmd_cite(studies, args) -> int:
    from .shared.citations import cite

    study = _get(studies, args.name)
    sys.stdout.write(cite(*study.citations))
    return 0


def _cmd_sweep(args, extra_modules) -> int:
    from .sweep import SweepSpec, load_sweep_file, parse_grid, parse_seeds, plot_sweep, run_sweep

    values = load_sweep_file(args.file) if args.file else {}
    if args.name:
        values["study"] = args.name
    if "study" not in values:
        raise UsageError("sweep needs a study name (argument or 'study' in --file)")
    values["grid"] = {**values.get("grid", {}), **parse_grid(args.grid)}
    values["fixed"] = {**values.get("fixed", {}),
                       **{k: v for k, v in (_split_set(item) for item in args.set)}}
    for key in ("preset", "device", "out", "retries", "metric", "engine", "address", "workers"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    if args.seeds is not None:
        values["seeds"] = parse_seeds(args.seeds)
    values["cpus_per_trial"] = args.cpus_per_task
    values.setdefault("out", str(Path("sweeps") / values["study"]))
    values.setdefault("engine", "local")
    if values.get("preset", "quick") not in PRESETS:
        raise UsageError(f"unknown preset {values['preset']!r}; allowed: {', '.join(PRESETS)}")
    if values["engine"] not in ("local", "ray", "inline"):
        raise UsageError(f"engine must be local or ray, got {values['engine']!r}")
    spec = SweepSpec(**values)
    out, rows = run_sweep(spec, extra_modules)
    finished = sum(r["status"] == "finished" for r in rows)
    failed = [r for r in rows if r["status"] == "failed"]
    print(f"sweep {spec.study}: {finished}/{len(rows)} trials finished, {len(failed)} failed -> "
          f"{out / 'summary.csv'}")
    for row in failed:
        print(f"  failed {row['trial']}: {row['error']}")
    metric = spec.metric or _first_metric(rows, spec)
    if metric and finished:
        paths = plot_sweep(out, metric)
        print(f"plot of {metric}: {paths[0]}")
    return 1 if failed else 0


def _split_set(item):
    if "=" not in item:
        raise UsageError(f"--set expects key=value, got {item!r}")
    key, value = item.split("=", 1)
    return key.strip(), value.strip()


def _first_metric(rows, spec):
    skip = {"trial", "seed", "status", "attempts", "seconds", "error", *spec.grid}
    for row in rows:
        if row["status"] == "finished":
            for key, value in row.items():
                if key not in skip and isinstance(value, (int, float)) and not isinstance(value, bool):
                    return key
    return None


def _cmd_sweep_plot(args) -> int:
    from .sweep import plot_sweep

    paths = plot_sweep(args.folder, args.metric, args.x, args.y)
    print(f"{paths[0]}\n{paths[1]}")
    return 0


def _embed_images(markdown: str, folder: Path) -> str:
    """Markdown (the subset our reports use) to HTML with the figures embedded as data URIs."""
    from .shared.report import markdown_to_html

    return markdown_to_html(markdown, Path(folder))


def _cmd_tour(studies, args) -> int:
    import json

    from .shared import report
    from .shared.runs import atomic_write_text, to_jsonable

    tour = [s for s in studies.values() if s.in_tour]
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in {s.name for s in tour}]
        if unknown:
            raise UsageError(f"--only: {', '.join(unknown)} not in the tour; tour studies: "
                             f"{', '.join(s.name for s in tour) or 'none'}")
        tour = [s for s in tour if s.name in wanted]
    folder = Path(args.out) / f"tour-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=True)
    missing = [t for t in THREADS if not any(s.thread == t for s in tour)]
    if missing:
        print("Threads with no study yet: " + ", ".join(missing) + ".")
    entries, environment = [], {}
    wall0, cpu0 = time.perf_counter(), report.cpu_seconds()

    def write(finished):
        blocks = report.tour_blocks(entries, args.preset, args.seed, time.perf_counter() - wall0,
                                    report.cpu_seconds() - cpu0, len(tour), missing, environment, finished)
        atomic_write_text(report.to_markdown(blocks), folder / "report.md")
        atomic_write_text(report.html_page("dlpde tour", report.to_html(blocks, folder)),
                          folder / "report.html")

    for k, study in enumerate(tour, 1):
        step = f"[{k}/{len(tour)}] {study.name}"
        print(f"{step} ({args.preset}): {study.description}", flush=True)
        wall, cpu = time.perf_counter(), report.cpu_seconds()
        try:
            run, metrics = execute(study, args.preset, (), args.seed, args.device, folder,
                                   folder=folder / study.name)
        except ConfigError:
            raise
        except Exception as error:  # a failing study must not hide the others' results
            traceback.print_exc()
            wall, cpu = time.perf_counter() - wall, report.cpu_seconds() - cpu
            entries.append(report.TourEntry(study, wall, cpu, error=f"{type(error).__name__}: {error}"))
            print(f"{step}: FAILED after {wall:.0f} s wall, {cpu:.0f} s CPU: {type(error).__name__}: "
                  f"{error}", flush=True)
            write(False)
            continue
        wall, cpu = time.perf_counter() - wall, report.cpu_seconds() - cpu
        try:
            config = json.loads((run.path / "config.json").read_text())
            environment = environment or json.loads((run.path / "env.json").read_text())
        except (OSError, ValueError):
            config = {}
        metrics = to_jsonable(metrics)
        entries.append(report.TourEntry(study, wall, cpu, metrics, config, list(run.sections),
                                        list(run.figures), str(run.path)))
        mark = report.card_mark(report.headline_of(study, metrics)["numbers"])
        print(f"{step}: done in {wall:.0f} s wall, {cpu:.0f} s CPU ({mark}) -> {run.path}", flush=True)
        write(False)
    write(True)
    failures = sum(e.error is not None for e in entries)
    count = f"{len(entries)} {'study' if len(entries) == 1 else 'studies'}"
    print(f"tour: {count} ({failures} failed) in {time.perf_counter() - wall0:.0f} s wall, "
          f"{report.cpu_seconds() - cpu0:.0f} s CPU")
    print(f"tour report: {folder / 'report.html'} and {folder / 'report.md'}")
    return 1 if failures else 0


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 400 else text[:397] + "..."


def main(argv=None, extra_modules=()) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        if getattr(args, "preset", None) not in (None, *PRESETS):
            raise UsageError(f"unknown preset {args.preset!r}; allowed: {', '.join(PRESETS)}")
        if args.command == "sweep":
            return _cmd_sweep(args, extra_modules)
        if args.command == "sweep-plot":
            return _cmd_sweep_plot(args)
        if args.command == "denoise":
            return _cmd_denoise(args)
        studies = discover_studies(extra_modules)
        handler = {"list": lambda: _cmd_list(studies), "run": lambda: _cmd_run(studies, args),
                   "cite": lambda: _cmd_cite(studies, args),
                   "tour": lambda: _cmd_tour(studies, args)}[args.command]
        return handler()
    except (UsageError, ConfigError) as error:
        print(f"dlpde: error: {error}", file=sys.stderr)
        return 2
    except TrainingDivergedError as error:
        print(f"dlpde: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except NonFiniteResultError as error:
        print(f"dlpde: error: a computation diverged: {_one_line(error)}", file=sys.stderr)
        return 2
    except CorruptRunFolderError as error:
        print(f"dlpde: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except OSError as error:  # a path that cannot be read or written
        where = f" {error.filename!r}" if getattr(error, "filename", None) else ""
        print(f"dlpde: error: cannot use{where}: {error.strerror or error}", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as error:  # a bad value that reached a library check
        if os.environ.get("DLPDE_DEBUG"):
            raise
        print(f"dlpde: error: {type(error).__name__}: {_one_line(error)} "
              "(set DLPDE_DEBUG=1 for the traceback)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dlpde: interrupted; finished work is kept (use --resume to continue)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
