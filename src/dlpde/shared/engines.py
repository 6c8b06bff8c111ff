"""Where the independent tasks of a study run (``RunDir.map``).

``InlineEngine`` runs them one after another in this process, with a progress bar. Engines
yield ``(index, result)`` pairs as tasks finish; a task that raises propagates its exception
(finished tasks are already cached by ``RunDir.map``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

__all__ = ["InlineEngine"]


class InlineEngine:
    """Serial, in-process execution."""

    name = "inline"

    def map(self, function: Callable, tasks: Sequence, desc: str = "tasks",
            indices: Sequence[int] | None = None) -> Iterator[tuple[int, object]]:
        from tqdm.auto import tqdm

        indices = list(range(len(tasks))) if indices is None else list(indices)
        for index, task in tqdm(list(zip(indices, tasks)), desc=desc, disable=None, leave=False):
            yield index, function(task)
