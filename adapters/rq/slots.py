"""The threads the engine runs jobs in (ADR 0007, 0014); ``adapters.rq.watchdog`` bounds each job.

``Slots`` replaces ``concurrent.futures.ThreadPoolExecutor``: the executor's threads are joined
when the interpreter exits, so one job hung in a C call (a database connection whose peer stopped
answering: Python's asynchronous exceptions are not delivered there) would keep the process alive
past any grace period. These threads are daemons: a process whose grace ran out exits, and the
hung job's execution, no longer heartbeaten, is re-run by another worker.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger("livesell.rq.worker")


class Slots:
    """``count`` daemon threads running the callables ``submit`` hands them, in order."""

    def __init__(
        self, count: int, name: str, initializer: Callable[[], None] | None = None
    ) -> None:
        self._work: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._initializer = initializer
        self._threads = [
            threading.Thread(target=self._loop, name=f"{name}_{n}", daemon=True)
            for n in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, work: Callable[[], None]) -> None:
        self._work.put(work)

    def close(self) -> None:
        """No more work: each thread ends after what it runs now (not waited for)."""
        for _ in self._threads:
            self._work.put(None)

    def _loop(self) -> None:
        if self._initializer is not None:
            self._initializer()
        while True:
            work = self._work.get()
            if work is None:
                return
            try:
                work()
            except BaseException:  # a slot outlives whatever one job does
                log.exception("Worker error", extra={"context": {"stage": "job slot"}})
