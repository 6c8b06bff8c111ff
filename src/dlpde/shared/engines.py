"""Where independent tasks run: in this process, in a local process pool, or on a Ray cluster.

An engine's ``map(function, tasks, desc, indices)`` yields ``(index, result)`` pairs as tasks
finish (in completion order). ``function`` must be a module-level (picklable) function of one
picklable task. A task that raises propagates its exception from ``map`` (callers that must
survive failures, like ``dlpde sweep``, catch errors inside the function itself).

Every task of the ``local`` and ``ray`` engines runs in a worker process with
``torch.set_num_threads(cpus_per_task)``, so the two engines give bitwise identical results
for the same tasks (the in-process ``inline`` engine keeps the caller's thread count).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence

__all__ = ["InlineEngine", "LocalEngine", "RayEngine", "make_engine", "ENGINES"]

ENGINES = ("inline", "local", "ray")
# Environment variables a worker needs to find the same code and studies as the driver.
_FORWARDED_ENV = ("PYTHONPATH", "DLPDE_EXTRA_STUDIES", "DLPDE_CACHE")


def _with_threads(call):
    function, task, threads = call
    import torch

    torch.set_num_threads(threads)
    return function(task)


def _progress(total, desc, show=True):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=None if show else True, leave=False,
                dynamic_ncols=True)


class InlineEngine:
    """Serial execution in this process (the default)."""

    name = "inline"

    def map(self, function: Callable, tasks: Sequence, desc: str = "tasks",
            indices: Sequence[int] | None = None, progress: bool = True) -> Iterator[tuple[int, object]]:
        indices = list(range(len(tasks))) if indices is None else list(indices)
        with _progress(len(tasks), desc, progress) as bar:
            for index, task in zip(indices, tasks):
                yield index, function(task)
                bar.update(1)


class LocalEngine:
    """A pool of ``workers`` processes on this machine (default: one per core).

    Processes are started with the ``spawn`` method (safe with threaded PyTorch). Ctrl-C cancels
    the tasks not yet started; finished results have already been yielded.
    """

    name = "local"

    def __init__(self, workers: int | None = None, cpus_per_task: int = 1):
        workers = (os.cpu_count() or 1) if workers is None else workers
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive int, got {workers!r}")
        if not isinstance(cpus_per_task, int) or cpus_per_task < 1:
            raise ValueError(f"cpus_per_task must be a positive int, got {cpus_per_task!r}")
        self.workers = workers
        self.cpus_per_task = cpus_per_task

    def map(self, function, tasks, desc="tasks", indices=None, progress=True):
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        indices = list(range(len(tasks))) if indices is None else list(indices)
        if not tasks:
            return
        executor = ProcessPoolExecutor(max_workers=min(self.workers, len(tasks)),
                                       mp_context=multiprocessing.get_context("spawn"))
        try:
            pending = {executor.submit(_with_threads, (function, task, self.cpus_per_task)): index
                       for index, task in zip(indices, tasks)}
            with _progress(len(tasks), desc, progress) as bar:
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        index = pending.pop(future)
                        yield index, future.result()
                        bar.update(1)
        finally:
            executor.shutdown(wait=True, cancel_futures=True)


class RayEngine:
    """Ray tasks: on the cluster at ``address``, or on a Ray instance started here.

    Each task asks Ray for ``cpus_per_task`` CPUs and ``gpus_per_task`` GPUs, so GPU work lands
    on GPU nodes. ``PYTHONPATH``, ``DLPDE_EXTRA_STUDIES`` and ``DLPDE_CACHE`` are forwarded to
    the workers; dlpde must be installed on every node of an existing cluster. Ray system
    failures (a lost worker or node) are retried ``max_retries`` times by Ray itself.
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, cpus_per_task: int = 1,
                 gpus_per_task: float = 0, max_retries: int = 1):
        if not isinstance(cpus_per_task, int) or cpus_per_task < 1:
            raise ValueError(f"cpus_per_task must be a positive int, got {cpus_per_task!r}")
        if gpus_per_task < 0:
            raise ValueError(f"gpus_per_task must be >= 0, got {gpus_per_task!r}")
        self.address = address
        self.workers = workers
        self.cpus_per_task = cpus_per_task
        self.gpus_per_task = gpus_per_task
        self.max_retries = max_retries

    def _connect(self):
        try:
            import ray
        except ImportError:
            raise ValueError("the ray engine needs Ray: pip install -e '.[ray]'") from None
        if not ray.is_initialized():
            env = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
            import sys

            paths = [p for p in sys.path if p and os.path.isdir(p)]
            env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(
                [*env.get("PYTHONPATH", "").split(os.pathsep), *paths]).keys()).strip(os.pathsep)
            kwargs = {"runtime_env": {"env_vars": env}, "log_to_driver": False,
                      "include_dashboard": False}
            if self.address:
                kwargs.pop("include_dashboard")
                ray.init(address=self.address, **kwargs)
            else:
                ray.init(num_cpus=self.workers, **kwargs)
        return ray

    def map(self, function, tasks, desc="tasks", indices=None, progress=True):
        indices = list(range(len(tasks))) if indices is None else list(indices)
        if not tasks:
            return
        ray = self._connect()
        remote = ray.remote(_with_threads).options(
            num_cpus=self.cpus_per_task, num_gpus=self.gpus_per_task, max_retries=self.max_retries)
        pending = {remote.remote((function, task, self.cpus_per_task)): index
                   for index, task in zip(indices, tasks)}
        try:
            with _progress(len(tasks), desc, progress) as bar:
                while pending:
                    done, _ = ray.wait(list(pending), num_returns=1)
                    for ref in done:
                        index = pending.pop(ref)
                        try:
                            value = ray.get(ref)
                        except ray.exceptions.RayTaskError as error:
                            raise error.as_instanceof_cause() from None
                        yield index, value
                        bar.update(1)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)


def make_engine(name: str = "inline", address: str | None = None, workers: int | None = None,
                cpus_per_task: int = 1, gpus_per_task: float = 0):
    """An engine by name: ``inline`` (default), ``local`` (process pool) or ``ray``."""
    if name == "inline":
        return InlineEngine()
    if name == "local":
        return LocalEngine(workers, cpus_per_task)
    if name == "ray":
        return RayEngine(address, workers, cpus_per_task, gpus_per_task)
    raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {name!r}")
