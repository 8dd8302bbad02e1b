"""The watchdog that bounds each job the engine runs (ADR 0007, 0014).

``Watchdog`` raises ``JobTimeoutException`` in a worker thread whose job overruns its timeout;
``NoSignalDeathPenalty`` stands in for RQ's signal-based death penalty, which worker threads cannot
use. A job the exception cannot reach (a thread blocked in C) is found by
``still_heartbeaten``: past its deadline by more than a heartbeat, it is no longer heartbeaten,
so its execution expires and another worker re-runs it.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Iterable

import attrs
from rq.executions import Execution
from rq.job import Job
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
    heartbeating a job past its deadline (``still_heartbeaten``)."""

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


@attrs.define
class Running:
    """A job in flight: its RQ execution, and its deadline once it has started."""

    job: Job
    execution: Execution
    deadline: float | None = None
    """Monotonic time after which the job overran its timeout (set when it starts)."""
    overdue: bool = False

    def past_deadline(self, moment: float, margin: float) -> bool:
        return self.deadline is not None and moment > self.deadline + margin


def still_heartbeaten(running: Iterable[Running], moment: float, margin: float) -> list[Running]:
    """The jobs in flight to heartbeat at ``moment``: all but those past their deadline by more
    than ``margin`` (a heartbeat), whom the watchdog could not stop (a thread blocked in C); each
    of those is logged once, and their executions are let expire so the sweep re-runs them."""
    beating = []
    for item in running:
        if not item.past_deadline(moment, margin):
            beating.append(item)
        elif not item.overdue:
            item.overdue = True
            log.error(
                "Job overran its timeout and did not stop; it is no longer heartbeaten"
                " and will run again",
                extra={"context": {"jobId": item.job.id, "timeoutSeconds": item.job.timeout}},
            )
    return beating
