"""The webhook-processor worker part: drains RQ queue ``webhook-processing`` (SPEC §3, §4).

``WEBHOOK_WORKER_CONCURRENCY`` jobs run at once, in threads of this process, on one container and
so one database pool (ADR 0007 says why this model and shows the measurements). The RQ side is
``adapters.rq.worker.ThreadedRqWorker``; this module wires it to the container, installs that
container for ``entrypoints.jobs`` and turns job outcomes into the log lines and the periodic
``Worker metrics`` line of SPEC §4.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from adapters.rq.connection import queue_errors, redis_connection
from adapters.rq.spec import JobSpec
from adapters.rq.worker import JobOutcome, QueueDepth, ThreadedRqWorker
from entrypoints.container import Container
from entrypoints.jobs import install_container
from entrypoints.logs import current_worker

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
            return self._since_line >= self.every_jobs

    def due_by_time(self) -> bool:
        with self._lock:
            return self.clock() - self._last_line >= self.every_seconds

    def snapshot(self, depth: QueueDepth | None) -> dict[str, Any]:
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
                "active": depth.active,
                "delayed": depth.scheduled,
                "completed": depth.completed,
                "failed": depth.failed,
            }
        return context


def _name_thread() -> None:
    current_worker.set(WORKER_NAME)


def _ids(payload: object) -> dict[str, Any]:
    if not isinstance(payload, dict):
        return {}
    keys = ("correlationId", "tenantId", "providerMessageId")
    return {key: payload[key] for key in keys if isinstance(payload.get(key), str)}


class WebhookWorker:
    """The ``webhook`` part of ``livesell worker``."""

    name = WORKER_NAME

    def __init__(self, container: Container) -> None:
        self.container = container
        settings = container.settings()
        assert settings is not None
        self.settings = settings
        self.metrics = WorkerMetrics()
        self.job_observers: list[Callable[[JobOutcome], None]] = []
        """Called with every job run's outcome (Prometheus metrics, ``entrypoints.metrics``)."""
        self.worker: ThreadedRqWorker | None = None

    def start(self) -> None:
        """Install this process's container for the jobs, build the pool, register in RQ.

        Raises ports.queue.QueueUnavailable when Redis cannot be reached.
        """
        install_container(self.container)
        self.container.uow_factory()
        connection = redis_connection(
            self.settings.redis_url, self.settings.redis_token, client_name=WORKER_NAME
        )
        spec = JobSpec.webhook_processing(self.container.retry_policy())
        self.worker = ThreadedRqWorker(
            connection,
            spec,
            concurrency=self.settings.webhook_worker_concurrency,
            on_job_done=self._on_job_done,
            thread_initializer=_name_thread,
        )
        with queue_errors():
            self.worker.start()
        log.info(
            "Worker started successfully",
            extra={
                "context": {
                    "queue": spec.queue,
                    "concurrency": self.settings.webhook_worker_concurrency,
                    "workerName": self.worker.name,
                    "maxAttempts": spec.max_attempts,
                    "retryIntervalsSeconds": list(spec.retry_intervals),
                }
            },
        )

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
        depth: QueueDepth | None = None
        if self.worker is not None:
            try:
                with queue_errors():
                    depth = self.worker.queue_depth()
            except ConnectionError as exc:
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
            level = logging.WARNING if outcome.retry_scheduled else logging.ERROR
            log.log(level, "Job failed", extra={"context": context})
        for observe in self.job_observers:
            observe(outcome)
        if self.metrics.record(outcome):
            self._log_metrics()


def build_part(container: Container) -> WebhookWorker:
    return WebhookWorker(container)
