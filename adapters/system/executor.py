"""Executors (``ports.executor.Executor``): a pool of threads, or inline in the caller."""

from __future__ import annotations

import concurrent.futures
import contextvars
from collections.abc import Callable, Sequence
from typing import Any


class ThreadPool:
    """Runs each task on one of ``max_workers`` threads named ``<thread_name_prefix>_<n>``.

    The threads start with the values that ``inherit`` (context variables: the log lines' worker
    name) had in the thread that submitted first; the pool is made then, too."""

    def __init__(
        self,
        max_workers: int,
        *,
        thread_name_prefix: str = "",
        inherit: Sequence[contextvars.ContextVar[Any]] = (),
    ) -> None:
        self.max_workers = max_workers
        self._prefix = thread_name_prefix
        self._inherit = tuple(inherit)
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def submit(self, task: Callable[[], None]) -> None:
        if self._pool is None:
            values = [(variable, variable.get()) for variable in self._inherit]
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=self.max_workers,
                thread_name_prefix=self._prefix,
                initializer=_set_all,
                initargs=(values,),
            )
        self._pool.submit(task)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _set_all(values: Sequence[tuple[contextvars.ContextVar[Any], Any]]) -> None:
    for variable, value in values:
        variable.set(value)


class InlineExecutor:
    """Runs each task at once, in the thread that submits it: no threads, the same order on every
    run (the simulation, unit tests, a one-at-a-time sender)."""

    def submit(self, task: Callable[[], None]) -> None:
        task()

    def shutdown(self) -> None:
        return None
