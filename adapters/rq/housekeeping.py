# mypy: disable-error-code="no-untyped-call"
"""The engine's housekeeping thread (ADR 0007, 0013, 0014): the watchdog fired every
``SCHEDULER_TICK_SECONDS``, the executions in flight and the worker hash heartbeaten every
``heartbeat_seconds``, the scheduler ticked, and the registries swept every
``maintenance_seconds`` (RQ: every 10 minutes) by one worker of the queue, so a job abandoned by
a killed worker runs again within about 15 seconds (RQ: 13 minutes)."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

from redis import Redis
from rq import Queue, SimpleWorker
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from rq.worker_registration import clean_worker_registry

from adapters.rq import lifecycle
from adapters.rq.connection import UNAVAILABLE_ERRORS
from adapters.rq.intermediate import requeue_stuck
from adapters.rq.registration import LeasedScheduler
from adapters.rq.watchdog import NoSignalDeathPenalty, Running, Watchdog, still_heartbeaten

log = logging.getLogger("livesell.rq.worker")

SCHEDULER_TICK_SECONDS = 1.0
WORKER_KEY_TTL_SECONDS = 30
"""The worker hash (``rq info``) outlives the last heartbeat by this long."""


class Housekeeping:
    """Runs in its own daemon thread from ``start()`` until ``stop()``. ``in_flight`` returns the
    jobs in flight (a snapshot); ``thread_initializer`` runs once in the thread."""

    def __init__(
        self,
        connection: Redis,
        queue: Queue,
        *,
        name: str,
        registration: SimpleWorker,
        scheduler: LeasedScheduler,
        watchdog: Watchdog,
        in_flight: Callable[[], list[Running]],
        execution_ttl: int,
        heartbeat_seconds: float,
        maintenance_seconds: float,
        thread_initializer: Callable[[], None] | None = None,
    ) -> None:
        self.connection = connection
        self.queue = queue
        self.name = name
        self.registration = registration
        self.scheduler = scheduler
        self.watchdog = watchdog
        self.in_flight = in_flight
        self.execution_ttl = execution_ttl
        self.heartbeat_seconds = heartbeat_seconds
        self.maintenance_seconds = maintenance_seconds
        self.thread_initializer = thread_initializer
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._loop, name=f"{self.queue.name}-housekeeping", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        if self.thread_initializer is not None:
            self.thread_initializer()
        next_beat = 0.0
        next_sweep = 0.0
        while not self._stop.wait(SCHEDULER_TICK_SECONDS):
            self.watchdog.fire_overdue()
            moment = time.monotonic()
            try:
                if moment >= next_beat:
                    self.heartbeat()
                    next_beat = moment + self.heartbeat_seconds
                self.scheduler.tick()
                if moment >= next_sweep:
                    self.sweep()
                    next_sweep = moment + self.maintenance_seconds
            except UNAVAILABLE_ERRORS as exc:
                log.warning(
                    "Housekeeping could not reach Redis", extra={"context": {"error": str(exc)}}
                )
            except Exception:
                log.exception("Worker error", extra={"context": {"stage": "housekeeping"}})

    def heartbeat(self) -> None:
        """Heartbeat the worker and the executions in flight, except those past their deadline
        by more than a heartbeat: the watchdog could not stop them (a thread blocked in C), so
        their executions are let expire and the sweep re-runs them (ADR 0014)."""
        beating = still_heartbeaten(self.in_flight(), time.monotonic(), self.heartbeat_seconds)
        lifecycle.maintain_heartbeats(
            self.connection,
            self.queue,
            self.registration,
            [(item.job, item.execution) for item in beating],
            execution_ttl=self.execution_ttl,
            worker_ttl=WORKER_KEY_TTL_SECONDS,
        )

    def sweep(self) -> bool:
        return sweep(self.connection, self.queue, self.name, self.maintenance_seconds)


def sweep(connection: Redis, queue: Queue, owner: str, maintenance_seconds: float) -> bool:
    """Registry maintenance, by one worker of the queue per ``maintenance_seconds``: abandoned
    started jobs are failed through their callback and retried (or moved to the failed registry),
    expired entries dropped, dead workers unlisted, stuck intermediate jobs queued again. Returns
    False when another worker (``owner`` names this one) swept recently."""
    lock = f"livesell:rq:maintenance:{queue.name}"
    ttl = max(1, math.floor(maintenance_seconds))
    if not connection.set(lock, owner, nx=True, ex=ttl):
        return False
    StartedJobRegistry(queue=queue, death_penalty_class=NoSignalDeathPenalty).cleanup()
    FinishedJobRegistry(queue=queue).cleanup()
    FailedJobRegistry(queue=queue).cleanup()
    clean_worker_registry(queue)
    requeued = requeue_stuck(queue)  # RQ's own cleanup: 1 minute, an attempt lost
    if requeued:
        log.warning(
            "Jobs taken but never started by a stopped worker, queued again",
            extra={"context": {"jobIds": requeued}},
        )
    return True
