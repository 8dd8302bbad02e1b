"""The threads the engine runs jobs in, and the watchdog that bounds each job (ADR 0007, 0014).

``Slots`` replaces ``concurrent.futures.ThreadPoolExecutor``: the executor's threads are joined
when the interpreter exits, so one job hung in a C call (a database connection whose peer stopped
answering: Python's asynchronous exceptions are not delivered there) would keep the process alive
past any grace period. These threads are daemons: a process whose grace ran out exits, and the
hung job's execution, no longer heartbeaten, is re-run by another worker.
"""

from __future__ import annotations

import ctypes
import logging
import queue
import threading
import time
from collections.abc import Callable

from rq.timeouts import BaseDeathPenalty, JobTimeoutException

log = logging.getLogger("livesell.rq.worker")


class NoSignalDeathPenalty(BaseDeathPenalty):
    """RQ's default death penalty uses SIGALRM, which only the main thread may set; callbacks run
    in worker threads here and are bounded by the watchdog instead."""

    def setup_death_penalty(self) -> None:
        return None

    def cancel_death_penalty(self) -> None:
        return None


class Watchdog:
    """Raises ``JobTimeoutException`` in a worker thread whose job overruns its timeout (what RQ's
    ``TimerDeathPenalty`` does, with one thread for every job instead of a timer per job).

    The exception lands at the thread's next Python instruction: a thread blocked in C (a socket
    read in libpq) does not see it until the call returns. The engine therefore also stops
    heartbeating a job past its deadline (``ThreadedRqWorker._heartbeat``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deadlines: dict[int, tuple[float, bool]] = {}

    def enter(self, timeout: float | None) -> None:
        if timeout is None or timeout <= 0:
            return
        with self._lock:
            self._deadlines[threading.get_ident()] = (time.monotonic() + timeout, False)

    def leave(self) -> None:
        ident = threading.get_ident()
        with self._lock:
            entry = self._deadlines.pop(ident, None)
            if entry is not None and entry[1]:
                # The exception was sent but not raised yet: withdraw it.
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), None)

    def fire_overdue(self) -> int:
        fired = 0
        moment = time.monotonic()
        with self._lock:
            for ident, (deadline, sent) in list(self._deadlines.items()):
                if sent or moment < deadline:
                    continue
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(ident), ctypes.py_object(JobTimeoutException)
                )
                self._deadlines[ident] = (deadline, True)
                fired += 1
        return fired


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
