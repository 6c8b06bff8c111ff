"""Run folders, provenance and atomic writes.

Every file a run writes goes through a temporary file in the same folder followed by
``os.replace``, so a crash or Ctrl-C never leaves a half-written file behind.

A run folder (``RunDir``) holds ``config.json``, ``env.json`` (versions, device, git commit,
seed, command line), ``metrics.json``, histories as CSV, arrays as NPZ, figures as PNG and PDF,
``report.md`` and ``references.bib``. ``RunDir.cached(key, compute)`` stores the result of a
finished piece of work so that a resumed run reuses it instead of recomputing.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_torch_save",
    "to_jsonable",
    "environment_info",
    "RunDir",
    "load_torch_file",
    "read_json_file",
    "CorruptRunFolderError",
    "clean_stale_temporaries",
]


class CorruptRunFolderError(ValueError):
    """A file of a run folder (config, metrics, checkpoint, cache) cannot be read safely.

    Raised for truncated or garbled files and for checkpoints that would need to execute code
    to load (anything beyond tensors, numbers, strings, containers and NumPy arrays). The message
    names the file; deleting it makes ``--resume`` recompute that piece of work.
    """


def _numpy_safe_globals() -> list:
    """NumPy types that ``torch.load(weights_only=True)`` may rebuild: arrays, dtypes, scalars."""
    try:
        from numpy._core import multiarray
    except ImportError:  # NumPy < 2
        from numpy.core import multiarray
    safe = [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype]
    try:
        import numpy.dtypes as dtypes

        safe += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    except ImportError:  # pragma: no cover - NumPy < 1.25
        pass
    return safe


def load_torch_file(path: str | os.PathLike, what: str = "checkpoint"):
    """``torch.load`` with ``weights_only=True``: a file that would run code is refused.

    Tensors, Python numbers, strings, containers and NumPy arrays/scalars load; any other pickled
    object (a class instance whose unpickling calls ``os.system``, say) raises
    ``CorruptRunFolderError`` naming the file, as does a truncated or garbled file.
    """
    import pickle
    import zipfile

    path = Path(path)
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        text = str(error)
        match = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", text)
        if match is None:
            raise CorruptRunFolderError(f"cannot read {what} {path} (corrupted or not a torch file); "
                                        "delete it to recompute") from None
        raise CorruptRunFolderError(
            f"refusing to load {what} {path}: it would call {match.group(1)} (only tensors, numbers, "
            "strings, containers and NumPy arrays are loaded); delete it if you did not put it there"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, AttributeError,
            TypeError, KeyError, IndexError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise CorruptRunFolderError(f"cannot read {what} {path} (corrupted or truncated: "
                                    f"{str(error).splitlines()[0][:160]}); delete it to recompute") from None


def read_json_file(path: str | os.PathLike, what: str = "file"):
    """``json.loads`` of a run-folder file; a garbled file raises ``CorruptRunFolderError``."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CorruptRunFolderError(f"cannot read {what} {path}: not valid JSON ({error}); "
                                    "delete it or the run folder to start again") from None


def clean_stale_temporaries(folder: str | os.PathLike, recursive: bool = True) -> int:
    """Delete the ``.<name>.*.tmp`` files that an interrupted atomic write left in ``folder``.

    Returns how many were removed. Called when a run folder is opened for resuming.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    pattern = "**/.*.tmp" if recursive else ".*.tmp"
    removed = 0
    for tmp in folder.glob(pattern):
        if tmp.is_file():
            try:
                tmp.unlink()
                removed += 1
            except OSError:  # pragma: no cover - raced with another process
                pass
    return removed


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder + rename)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    path = _check_path(path, "path")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise ValueError(f"path {str(path)!r} is a folder, expected a file name")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _check_path(path, name: str) -> Path:
    if not isinstance(path, (str, os.PathLike)) or isinstance(path, RunDir):
        if isinstance(path, RunDir):
            return path.path
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__}")
    if str(path) == "":
        raise ValueError(f"{name} must not be empty")
    return Path(path)


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return atomic_write_bytes(text.encode("utf-8"), path)


def to_jsonable(value):
    """Convert tensors, arrays, numpy scalars, dataclasses, paths and tuples to JSON types.

    Non-finite floats become the strings ``"nan"``, ``"inf"``, ``"-inf"`` (valid JSON).
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value)
    return value


def atomic_write_json(obj, path: str | os.PathLike) -> Path:
    try:
        text = json.dumps(to_jsonable(obj), indent=2, sort_keys=False)
    except (TypeError, ValueError) as error:
        raise TypeError(f"obj cannot be written as JSON: {error}") from None
    return atomic_write_text(text + "\n", path)


def atomic_torch_save(obj, path: str | os.PathLike) -> Path:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(buffer.getvalue(), path)


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    commit = out.stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                           capture_output=True, text=True, timeout=5).stdout.strip()
    return commit + ("-dirty" if dirty else "")


def environment_info(device=None, seed=None) -> dict:
    """Provenance of a run: versions, device, git commit, seed, command line, host and time."""
    import dlpde

    if device is not None:
        if not isinstance(device, (str, torch.device)):
            raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
        from .device import resolve_device

        device = resolve_device(device)
    if seed is not None:
        from .checks import check_int

        seed = check_int(seed, "seed", minimum=0)

    info = {
        "dlpde": dlpde.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "git_commit": _git_commit(),
        "seed": seed,
        "device": str(device) if device is not None else None,
        "cuda_available": torch.cuda.is_available(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "command": sys.argv,
        "host": socket.gethostname(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if device is not None and torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    try:
        import scipy

        info["scipy"] = scipy.__version__
    except ImportError:  # pragma: no cover
        pass
    return info


class RunDir:
    """A run folder and the helpers a study uses to write into it.

    ``path``: the folder. ``resume``: whether an earlier attempt's finished work may be reused.
    Studies write figures with ``save_figure``, arrays with ``save_arrays``, histories with
    ``write_csv``, and add prose to the report with ``add_section``; the runner writes
    ``config.json``, ``env.json``, ``metrics.json``, ``report.md`` and ``references.bib``.
    """

    def __init__(self, path: str | os.PathLike, resume: bool = False, engine=None):
        from .checks import check_bool

        self.path = _check_path(path, "path")
        self.resume = check_bool(resume, "resume")
        if engine is not None and not callable(getattr(engine, "map", None)):
            raise TypeError("engine must have a map method (see dlpde.shared.engines), got "
                            f"{type(engine).__name__}")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ValueError(f"cannot create the run folder {str(self.path)!r}: {error.strerror}") from None
        if not os.access(self.path, os.W_OK):
            raise ValueError(f"the run folder {str(self.path)!r} is not writable")
        if self.resume:
            clean_stale_temporaries(self.path)
        self.engine = engine
        self.sections: list[tuple[str, str]] = []
        self.figures: list[tuple[str, str]] = []

    def __fspath__(self):
        return str(self.path)

    def __truediv__(self, other):
        return self.path / other

    def __repr__(self):
        return f"RunDir({str(self.path)!r}, resume={self.resume})"

    # -- writing ---------------------------------------------------------------------------
    def _file(self, name: str) -> Path:
        if not isinstance(name, str) or not name or "/" in name.strip("/") and ".." in name:
            raise ValueError(f"name must be a non-empty file name inside the run folder, got {name!r}")
        return self.path / name

    def write_json(self, name: str, obj) -> Path:
        self._file(name)
        return atomic_write_json(obj, self.path / name)

    def write_text(self, name: str, text: str) -> Path:
        self._file(name)
        return atomic_write_text(text, self.path / name)

    def write_csv(self, name: str, rows: Iterable[Mapping]) -> Path:
        """Rows of dicts as CSV (the union of keys as columns, in first-seen order)."""
        rows = [to_jsonable(dict(r)) for r in rows]
        columns: list[str] = []
        for r in rows:
            columns.extend(k for k in r if k not in columns)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        return atomic_write_text(buffer.getvalue(), self.path / name)

    def save_arrays(self, name: str, **arrays) -> Path:
        """Arrays (tensors or NumPy) as one NPZ file."""
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **{
            k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v))
            for k, v in arrays.items()})
        return atomic_write_bytes(buffer.getvalue(), self.path / (name if name.endswith(".npz")
                                                                 else name + ".npz"))

    def save_figure(self, fig, name: str, caption: str = "") -> list[Path]:
        """Save a matplotlib figure as PNG and PDF and list it in the report."""
        from .plotting import save_figure

        paths = save_figure(fig, self.path / name)
        self.figures.append((paths[0].name, caption))
        return paths

    def add_section(self, title: str, markdown: str) -> None:
        """A section of prose or a table (Markdown) for ``report.md``."""
        self.sections.append((title, markdown))

    def checkpoint_path(self, name: str) -> Path:
        folder = self.path / "checkpoints"
        folder.mkdir(exist_ok=True)
        return folder / f"{name}.pt"

    def map(self, function: Callable, tasks: Sequence, keys: Sequence[str] | None = None,
            desc: str = "tasks") -> list:
        """``[function(task) for task in tasks]``, each result cached, possibly in parallel.

        For studies whose work is a grid of independent points (widths x alphas, models x
        training-set sizes). ``function`` must be a module-level (picklable) function of one
        picklable task that derives all its randomness from the task itself (e.g. a seed in
        it), so that every engine gives identical results. Results are stored under
        ``cache/<key>.pt`` as they finish (keys default to ``task-<index>``): a resumed run
        skips finished tasks. The engine (``self.engine``; in-process and serial by default,
        a process pool or Ray when the runner is given ``--engine``) decides where tasks run.
        """
        from .checks import check_callable

        check_callable(function, "function")
        if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Iterable):
            raise TypeError(f"tasks must be a sequence of tasks, got {type(tasks).__name__}")
        tasks = list(tasks)
        if keys is not None and (isinstance(keys, (str, bytes)) or not isinstance(keys, Iterable)
                                 or not all(isinstance(k, str) and k for k in keys)):
            raise TypeError("keys must be a sequence of non-empty strings")
        keys = [f"task-{i}" for i in range(len(tasks))] if keys is None else list(keys)
        if len(keys) != len(tasks) or len(set(keys)) != len(keys):
            raise ValueError("keys must be unique and as many as tasks")
        folder = self.path / "cache"
        folder.mkdir(exist_ok=True)
        results: dict[int, object] = {}
        todo = []
        for i, key in enumerate(keys):
            target = folder / f"{key}.pt"
            if self.resume and target.exists():
                results[i] = load_torch_file(target, "cached result")
            else:
                todo.append(i)
        engine = self.engine
        if engine is None:
            from .engines import InlineEngine

            engine = InlineEngine()
        for i, value in engine.map(function, [tasks[i] for i in todo], desc=desc,
                                   indices=todo):
            atomic_torch_save(value, folder / f"{keys[i]}.pt")
            results[i] = value
        return [results[i] for i in range(len(tasks))]

    def cached(self, key: str, compute: Callable[[], object]):
        """Return ``compute()``, stored under ``cache/<key>.pt``; reused when resuming.

        The value may be any ``torch.save``-able object (dicts of tensors and floats). A piece
        of work finished before a crash is thus never redone by ``--resume``.
        """
        from .checks import check_callable

        if not isinstance(key, str) or not key or "/" in key:
            raise ValueError(f"key must be a non-empty name without '/', got {key!r}")
        check_callable(compute, "compute")
        folder = self.path / "cache"
        folder.mkdir(exist_ok=True)
        target = folder / f"{key}.pt"
        if self.resume and target.exists():
            return load_torch_file(target, "cached result")
        value = compute()
        atomic_torch_save(value, target)
        return value
