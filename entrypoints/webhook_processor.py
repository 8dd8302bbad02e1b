"""One process's share of the webhook worker (``entrypoints.webhook_worker``): ``slots`` jobs in
flight on the RQ engine the container makes, each outcome turned into the log lines and the
periodic ``Worker metrics`` line of SPEC §4, and told to the part's observers (metrics).
"""

from __future__ import annotations

import gc
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from entrypoints.heartbeat import Heartbeat
from entrypoints.logs import current_worker
from entrypoints.observability import report_exception
from ports.queue_monitor import QueueDepths, QueueMonitor

if TYPE_CHECKING:  # the engine's types; the container makes the engine (ADR 0017)
    from adapters.rq.outcomes import JobObserver
    from adapters.rq.worker import JobOutcome, ThreadedRqWorker

log = logging.getLogger("livesell.webhook")

WORKER_NAME = "webhook-processor"
METRICS_EVERY_JOBS = 100
METRICS_EVERY_SECONDS = 300.0


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
    return ordered[index]


class WorkerMetrics:
    """Counts job runs; says when a ``Worker metrics`` line is due (every ``every_jobs`` runs or
    ``every_seconds``) and what it holds. Processing times are those since the previous line."""

    def __init__(
        self,
        every_jobs: int = METRICS_EVERY_JOBS,
        every_seconds: float = METRICS_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.every_jobs = every_jobs
        self.every_seconds = every_seconds
        self.clock = clock
        self.started = clock()
        self.completed = 0
        self.failed = 0
        self._window: list[float] = []
        self._since_line = 0
        self._last_line = self.started
        self._lock = threading.Lock()

    def record(self, outcome: JobOutcome) -> bool:
        """Count one run; True when a metrics line is due."""
        with self._lock:
            if outcome.succeeded:
                self.completed += 1
            else:
                self.failed += 1
            self._window.append(outcome.processing_seconds * 1000)
            self._since_line += 1
            if self._since_line < self.every_jobs:
                return False
            self._since_line = 0  # this caller logs the line; the others counting meanwhile don't
            return True

    def due_by_time(self) -> bool:
        with self._lock:
            return self.clock() - self._last_line >= self.every_seconds

    def snapshot(self, depth: QueueDepths | None) -> dict[str, Any]:
        """The metrics line's context; starts a new window."""
        with self._lock:
            window, self._window = self._window, []
            self._since_line = 0
            self._last_line = self.clock()
            total = self.completed + self.failed
            context: dict[str, Any] = {
                "uptimeMs": round((self._last_line - self.started) * 1000),
                "completed": self.completed,
                "failed": self.failed,
                "successRate": round(self.completed / total, 4) if total else 1.0,
                "jobsInWindow": len(window),
                "avgProcessingTimeMs": round(sum(window) / len(window), 2) if window else 0.0,
                "p95ProcessingTimeMs": round(_percentile(window, 0.95), 2),
            }
        if depth is not None:
            context["queue"] = {
                "waiting": depth.waiting,
                "active": depth.started,
                "delayed": depth.scheduled,
                "completed": depth.finished,
                "failed": depth.failed,
            }
        return context


def name_thread() -> None:
    """Names a job thread in the log lines (the engine's ``thread_initializer``)."""
    current_worker.set(WORKER_NAME)


def _ids(payload: object) -> dict[str, Any]:
    if not isinstance(payload, dict):
        return {}
    keys = ("correlationId", "tenantId", "providerMessageId")
    return {key: payload[key] for key in keys if isinstance(payload.get(key), str)}


class WebhookProcessor:
    """One process's share of the webhook worker: ``slots`` jobs in flight in its threads; each
    job run's outcome goes to every one of ``observers`` (metrics).

    The container passes what it needs (``container.webhook_processor``): ``prepare`` installs
    this process's container for the jobs and opens the pool, ``make_engine`` makes the RQ engine
    given this processor's callbacks, ``monitor`` reads the queue's depths for the ``Worker
    metrics`` line, ``queue_errors`` turns Redis errors at start into ``QueueUnavailable``."""

    name = WORKER_NAME

    def __init__(
        self,
        *,
        slots: int,
        prepare: Callable[[], None],
        make_engine: Callable[..., ThreadedRqWorker],
        monitor: QueueMonitor | None,
        queue_errors: Callable[[], AbstractContextManager[None]],
        observers: Sequence[JobObserver] = (),
    ) -> None:
        self.slots = slots
        self.prepare = prepare
        self.make_engine = make_engine
        self.monitor = monitor
        self.queue_errors = queue_errors
        self.metrics = WorkerMetrics()
        self.job_observers: list[JobObserver] = list(observers)
        self.worker: ThreadedRqWorker | None = None
        self.heartbeat = Heartbeat()

    def start(self) -> None:
        """Install this process's container for the jobs, build the pool, register in RQ.

        Raises ports.queue.QueueUnavailable when Redis cannot be reached.
        """
        self.prepare()
        # RQ's own per-job INFO lines carry no correlationId; "Job failed" says the same.
        logging.getLogger("rq.job").setLevel(logging.WARNING)
        self.worker = self.make_engine(
            concurrency=self.slots,
            on_job_done=self._on_job_done,
            on_tick=lambda away: self.heartbeat.beat(away=away),
        )
        spec = self.worker.spec
        with self.queue_errors():
            self.worker.start()
        # Everything built so far (modules, container, pool) lives as long as the process: keep
        # it out of the collector's full passes, which otherwise pause every job for ~50-90 ms.
        gc.collect()
        gc.freeze()
        log.info(
            "Worker started successfully",
            extra={
                "context": {
                    "queue": spec.queue,
                    "concurrency": self.slots,
                    "workerName": self.worker.name,
                    "pid": os.getpid(),
                    "maxAttempts": spec.max_attempts,
                    "retryIntervalsSeconds": list(spec.retry_intervals),
                }
            },
        )

    def close(self) -> None:
        """Unregister a started worker that will not run (start-up interrupted)."""
        if self.worker is not None:
            stopped = threading.Event()
            stopped.set()
            self.worker.run(stopped)

    def run(self, stop: threading.Event) -> None:
        assert self.worker is not None
        ticker = threading.Thread(
            target=self._metrics_by_time, args=(stop,), name="webhook-metrics", daemon=True
        )
        ticker.start()
        try:
            self.worker.run(stop)
        finally:
            self._log_metrics()
            log.info("Worker stopped", extra={"context": {"workerName": self.worker.name}})

    def _metrics_by_time(self, stop: threading.Event) -> None:
        while not stop.wait(5.0):
            if self.metrics.due_by_time():
                self._log_metrics()

    def _log_metrics(self) -> None:
        depth: QueueDepths | None = None
        if self.monitor is not None and self.worker is not None:
            try:
                depth = self.monitor.depths(self.worker.spec.queue)
            except ConnectionError as exc:  # QueueUnavailable
                log.warning("Queue depth unavailable", extra={"context": {"error": str(exc)}})
        log.info("Worker metrics", extra={"context": self.metrics.snapshot(depth)})

    def _on_job_done(self, outcome: JobOutcome) -> None:
        context: dict[str, Any] = {
            "jobId": outcome.job_id,
            **_ids(outcome.payload),
            "processingTimeMs": round(outcome.processing_seconds * 1000, 2),
            "attemptsMade": outcome.attempts_made,
        }
        if outcome.succeeded:
            result = outcome.result if isinstance(outcome.result, dict) else {}
            if result.get("status") == "rejected":
                context.update(outcome="rejected", reason=result.get("reason"))
                context["deadLetterId"] = result.get("deadLetterId")
            else:
                context.update(
                    outcome="processed",
                    messageType=result.get("messageType"),
                    liveSessionId=result.get("liveSessionId"),
                )
            log.info("Job completed", extra={"context": context})
        else:
            context.update(
                error=outcome.error,
                attemptsRemaining=outcome.attempts_remaining,
                willRetry=outcome.retry_scheduled,
            )
            reported = False
            if not outcome.retry_scheduled and outcome.exception is not None:
                ids = _ids(outcome.payload)
                reported = report_exception(
                    outcome.exception,
                    {
                        "queue": outcome.queue,
                        "job_id": outcome.job_id,
                        "correlationId": ids.get("correlationId"),
                        "tenant": ids.get("tenantId"),
                    },
                )
            level = logging.WARNING if outcome.retry_scheduled else logging.ERROR
            log.log(level, "Job failed", extra={"context": context, "sentry_reported": reported})
        for observer in self.job_observers:
            observer.job_finished(outcome)
        if self.metrics.record(outcome):
            self._log_metrics()
