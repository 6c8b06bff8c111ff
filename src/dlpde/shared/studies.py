"""Studies: a frozen ``Config`` dataclass with named presets and ``run(config, run_dir) -> metrics``.

A study module of a thread (``dlpde/<thread>/studies/<name>.py``) defines a module-level
``STUDY = Study(...)``. The runner (``execute``) builds the config from a preset, the seed, the
device and ``key=value`` overrides (type-checked against the dataclass), creates the run folder,
writes ``config.json`` and ``env.json``, calls ``run``, then writes ``metrics.json``,
``report.md`` and ``references.bib``.

Presets (DESIGN.md): ``smoke`` (seconds, in the test suite), ``quick`` (<= 3 min on 2 CPU
cores, the tour), ``full`` (<= 30 min, the issues' numeric targets), ``paper`` (a GPU).
Every ``Config`` has the fields ``seed: int`` and ``device: str``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import time
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .checks import check_callable
from .citations import cite
from .report import cpu_seconds
from .runs import (
    CorruptRunFolderError,
    RunDir,
    atomic_write_json,
    environment_info,
    read_json_file,
    to_jsonable,
)

__all__ = ["Study", "ConfigError", "PRESETS", "parse_overrides", "make_config", "execute",
           "render_report", "flatten_metrics"]

PRESETS = ("smoke", "quick", "full", "paper")
MAX_SEED = 2**63 - 1
_NAME = re.compile(r"^[a-z]+\.[a-z0-9_]+$")


class ConfigError(ValueError):
    """A bad study name, preset, override key or value: a one-line message for the user."""


@dataclasses.dataclass(frozen=True)
class Study:
    """A registered study.

    ``name`` is ``"<thread>.<study>"``; ``presets`` maps preset names to ``config`` instances;
    ``citations`` are keys of ``references.bib``; ``in_tour`` marks the studies ``dlpde tour``
    runs (the thread's headline study). ``grid`` optionally names a function
    ``grid(config) -> list[dict]`` of sub-configurations for studies whose work is a grid.
    ``headline`` optionally maps the run's metrics (as in ``metrics.json``) to the study's
    headline for the reports: one sentence of what it shows, the headline numbers against the
    exact answer or a peer with their targets, the quick preset's expectation, the full preset's
    measured numbers and the main figure (see ``dlpde.shared.report``).
    """

    name: str
    description: str
    config: type
    presets: Mapping[str, object]
    run: Callable
    citations: Sequence[str] = ()
    in_tour: bool = False
    headline: Callable[[Mapping], dict] | None = None

    def __post_init__(self):
        if self.headline is not None:
            check_callable(self.headline, f"{self.name}: headline")
        if not isinstance(self.name, str) or not isinstance(self.description, str):
            raise TypeError("name and description must be str")
        if not callable(self.run):
            raise TypeError(f"{self.name}: run must be callable")
        if not isinstance(self.presets, Mapping):
            raise TypeError(f"{self.name}: presets must map preset names to configs")
        if isinstance(self.citations, str) or not isinstance(self.citations, Sequence):
            raise TypeError(f"{self.name}: citations must be a sequence of keys")
        if not isinstance(self.in_tour, bool):
            raise TypeError(f"{self.name}: in_tour must be True or False")
        if not _NAME.match(self.name):
            raise ValueError(f"study name must look like 'thread.study', got {self.name!r}")
        if not (dataclasses.is_dataclass(self.config) and self.config.__dataclass_params__.frozen):
            raise TypeError(f"{self.name}: config must be a frozen dataclass")
        names = {f.name for f in dataclasses.fields(self.config)}
        if not {"seed", "device"} <= names:
            raise TypeError(f"{self.name}: Config must have fields 'seed' and 'device'")
        missing = [p for p in ("smoke", "quick", "full") if p not in self.presets]
        if missing:
            raise ValueError(f"{self.name}: presets {missing} are missing")
        unknown = [p for p in self.presets if p not in PRESETS]
        if unknown:
            raise ValueError(f"{self.name}: unknown presets {unknown}; allowed {PRESETS}")
        for preset, cfg in self.presets.items():
            if not isinstance(cfg, self.config):
                raise TypeError(f"{self.name}: preset {preset!r} is not a {self.config.__name__}")
        cite(*self.citations)  # unknown keys fail at definition time

    @property
    def thread(self) -> str:
        return self.name.split(".")[0]


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(text: str, tp, key: str):
    """Convert the string ``text`` to the annotated type ``tp`` or raise ``ConfigError``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.lower() in ("none", "null"):
            return None
        errors = []
        for option in args:
            if option is type(None):
                continue
            try:
                return _convert(text, option, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(f"{key}={text!r}: expected {_type_name(tp)}")
    if origin is typing.Literal:
        for option in args:
            if str(option) == text:
                return option
        raise ConfigError(f"{key}={text!r}: allowed values are {', '.join(map(str, args))}")
    if origin in (tuple, list):
        items = [t for t in text.replace(";", ",").split(",") if t.strip() != ""]
        if not items:
            raise ConfigError(f"{key}={text!r}: expected at least one comma-separated value")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(t.strip(), args[0], key) for t in items)
        if origin is tuple and args:
            if len(items) != len(args):
                raise ConfigError(f"{key}={text!r}: expected {len(args)} comma-separated values")
            return tuple(_convert(t.strip(), a, key) for t, a in zip(items, args))
        inner = args[0] if args else str
        return tuple(_convert(t.strip(), inner, key) for t in items)
    if tp is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}={text!r}: expected a boolean (true/false)")
    if tp is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{key}={text!r}: expected an integer") from None
    if tp is float:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{key}={text!r}: expected a number") from None
        if not math.isfinite(value):
            raise ConfigError(f"{key}={text!r}: expected a finite number")
        return value
    if tp is str:
        return text
    raise ConfigError(f"{key}: values of type {_type_name(tp)} cannot be set from the command line")


def _field_types(config_cls) -> dict:
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_cls)}


def parse_overrides(config_cls, items: Sequence[str] | Mapping[str, object]) -> dict:
    """``["width=128", "alphas=0.1,1,10"]`` (or a mapping) -> typed values for ``config_cls``."""
    types_ = _field_types(config_cls)
    pairs = list(items.items()) if isinstance(items, Mapping) else []
    if not isinstance(items, Mapping):
        for item in items:
            if "=" not in item:
                raise ConfigError(f"--set expects key=value, got {item!r}")
            key, value = item.split("=", 1)
            pairs.append((key.strip(), value.strip()))
    values = {}
    for key, value in pairs:
        if key not in types_:
            raise ConfigError(f"unknown config key {key!r}; allowed keys: {', '.join(sorted(types_))}")
        values[key] = _convert(value, types_[key], key) if isinstance(value, str) else value
    return values


def make_config(study: Study, preset: str = "quick", overrides=(), seed: int | None = None,
                device: str | None = None):
    """The config of ``study`` for ``preset``, with overrides, ``seed`` and ``device`` applied."""
    if preset not in study.presets:
        raise ConfigError(f"unknown preset {preset!r} for {study.name}; allowed: "
                          f"{', '.join(study.presets)}")
    values = parse_overrides(study.config, overrides)
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise ConfigError(f"seed must be an integer in [0, 2**63 - 1], got {seed!r}")
        values["seed"] = seed
    if "seed" in values and (isinstance(values["seed"], bool) or not isinstance(values["seed"], int)
                             or not 0 <= values["seed"] <= MAX_SEED):
        raise ConfigError(f"seed must be an integer in [0, 2**63 - 1], got {values['seed']!r}")
    if "device" in values:
        _check_device(values["device"])
    if device is not None:
        values["device"] = device
    try:
        return dataclasses.replace(study.presets[preset], **values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{study.name}: {error}") from None


def _check_device(device) -> None:
    from .device import resolve_device

    try:
        resolve_device(device)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ConfigError(f"device={device!r}: {error}") from None


def _next_folder(base: Path, resume: bool) -> Path:
    candidates = [base] + sorted(base.parent.glob(base.name + "-*"),
                                 key=lambda p: int(p.name.rsplit("-", 1)[1])
                                 if p.name.rsplit("-", 1)[1].isdigit() else 0)
    existing = [p for p in candidates if p.exists()]
    if resume:
        return existing[-1] if existing else base
    if not existing:
        return base
    k = 2
    while base.with_name(f"{base.name}-{k}").exists():
        k += 1
    return base.with_name(f"{base.name}-{k}")


def flatten_metrics(metrics: Mapping, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists of scalars are kept as they are."""
    flat = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, name + "."))
        else:
            flat[name] = value
    return flat


def render_report(study: Study, config, metrics: Mapping, run: RunDir, seconds: float) -> str:
    """The Markdown report of one run, in reader order: the finding (the study's headline) and
    figures, the result tables, then configuration and all metrics folded, references last."""
    from .report import study_report_markdown

    config_json = {f.name: to_jsonable(getattr(config, f.name)) for f in dataclasses.fields(config)}
    return study_report_markdown(study, config_json, to_jsonable(metrics), run.sections, run.figures,
                                 seconds, str(run.path))


def execute(study: Study, preset: str = "quick", overrides=(), seed: int = 0,
            device: str = "auto", out: str | Path = "runs", resume: bool = False,
            folder: str | Path | None = None, engine=None):
    """Run ``study`` and write its run folder; return ``(run_dir, metrics)``.

    The folder is ``<out>/<study>/<preset>-seed<seed>`` (``-2``, ``-3``, ... when it exists);
    with ``resume=True`` the latest such folder is reused: a finished run returns its metrics,
    an unfinished one continues, reusing the work it cached (``RunDir.cached``, checkpoints).
    ``engine`` (see ``dlpde.shared.engines``) runs the independent tasks the study hands to
    ``RunDir.map``; by default they run serially in this process.
    """
    from .device import resolve_device

    overridden = parse_overrides(study.config, overrides)
    if "device" in overridden:  # --set device=... is the same as --device
        device = overridden["device"]
    try:
        resolved = resolve_device(device)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ConfigError(f"device={device!r}: {error}") from None
    config = make_config(study, preset, overrides, seed, resolved.type)
    if not isinstance(out, (str, os.PathLike)) or str(out).strip() == "":
        raise ConfigError(f"out must be a folder name, got {out!r}")
    base = Path(out) / study.name / f"{preset}-seed{config.seed}"
    path = Path(folder) if folder is not None else _next_folder(base, resume)
    run = RunDir(path, resume=resume, engine=engine)
    config_json = to_jsonable(config)
    timing_file = path / "timing.json"
    spent = {"seconds": 0.0, "cpu_seconds": 0.0, "attempts": 0}
    if resume and (path / "config.json").exists():
        previous = read_json_file(path / "config.json", "config")
        if previous != config_json:
            changed = sorted(k for k in config_json if not isinstance(previous, dict)
                             or previous.get(k) != config_json[k])
            raise ConfigError(f"cannot resume {path}: its config differs in {', '.join(changed)}")
        if (path / "metrics.json").exists():
            metrics = read_json_file(path / "metrics.json", "metrics")
            if not isinstance(metrics, dict):
                raise CorruptRunFolderError(f"cannot read metrics {path / 'metrics.json'}: not a JSON object")
            return run, metrics
        if timing_file.exists():
            saved = read_json_file(timing_file, "timing")
            if isinstance(saved, dict):
                spent.update({k: saved[k] for k in spent if isinstance(saved.get(k), (int, float))})
    atomic_write_json(config_json, path / "config.json")
    atomic_write_json(environment_info(resolved, config.seed), path / "env.json")
    wall, cpu = time.perf_counter(), cpu_seconds()

    def account():  # time of every attempt adds up: a resumed run reports its whole cost
        return {"seconds": spent["seconds"] + time.perf_counter() - wall,
                "cpu_seconds": spent["cpu_seconds"] + cpu_seconds() - cpu,
                "attempts": spent["attempts"] + 1}

    try:
        metrics = study.run(config, run)
    except BaseException:
        atomic_write_json(account(), timing_file)
        raise
    total = account()
    atomic_write_json(total, timing_file)
    seconds = total["seconds"]
    if not isinstance(metrics, Mapping):
        raise TypeError(f"{study.name}.run must return a dict of metrics, got {type(metrics).__name__}")
    metrics = dict(metrics)
    metrics.setdefault("seconds", seconds)
    metrics.setdefault("total_cpu_seconds", total["cpu_seconds"])
    run.write_text("references.bib", cite(*study.citations))
    run.write_text("report.md", render_report(study, config, metrics, run, seconds))
    atomic_write_json(metrics, path / "metrics.json")
    return run, metrics
