# mypy: disable-error-code="no-untyped-call"
"""The counters and histograms the worker parts feed, one instance per process (``metrics()``),
and prometheus_client's multi-process mode.

Several processes: the webhook worker runs child processes (one per usable CPU, ADR 0007). In
multi-process mode (``configure_multiprocess``, before any metric exists) each process writes its
counters to files in a shared directory and the serving process sums them at scrape time
(``exposition.scrape_registry``); ``mark_process_dead`` is called for a child that exits.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess, values

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
JOB_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SEND_SECONDS_BUCKETS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0)

METRIC_NAMES = (
    "livesell_jobs_total",
    "livesell_job_processing_seconds",
    "livesell_outbox_sends_total",
    "livesell_outbox_send_seconds",
    "livesell_outbox_outcomes_total",
    "livesell_sessions_closed_total",
    "livesell_outbox_lag_seconds",
    "livesell_outbox_messages",
    "livesell_queue_depth",
    "livesell_active_sessions",
    "livesell_dead_letters_not_replayed",
    "livesell_metrics_source_up",
)
"""Every metric this package defines (documented in DEPLOYMENT.md "Metrics")."""


class Metrics:
    """The counters and histograms the worker parts feed (through ``observer``)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.jobs = Counter(
            "livesell_jobs_total",
            "Job runs by queue and outcome: processed, rejected (dead-lettered without retry), "
            "retried (failed, a retry is scheduled), failed (failed, no retry left).",
            ["queue", "outcome"],
            registry=registry,
        )
        self.job_seconds = Histogram(
            "livesell_job_processing_seconds",
            "Time to run one job, whatever its outcome.",
            ["queue"],
            buckets=JOB_SECONDS_BUCKETS,
            registry=registry,
        )
        self.outbox_sends = Counter(
            "livesell_outbox_sends_total",
            "Provider calls by outcome (accepted, transient_failure, permanent_failure) and the "
            "provider's error code (empty when there is none).",
            ["outcome", "code"],
            registry=registry,
        )
        self.outbox_send_seconds = Histogram(
            "livesell_outbox_send_seconds",
            "Time of one provider call, rate-limit wait included.",
            buckets=SEND_SECONDS_BUCKETS,
            registry=registry,
        )
        self.outbox_outcomes = Counter(
            "livesell_outbox_outcomes_total",
            "Outbox outcomes recorded: sent, retried, dead, expired, lost (a later claim took "
            "the row).",
            ["outcome"],
            registry=registry,
        )
        self.sessions_closed = Counter(
            "livesell_sessions_closed_total",
            "Live sessions closed by the closing job.",
            ["reason"],
            registry=registry,
        )
        self.webhook_unknown_number = Counter(
            "livesell_webhook_unknown_number_total",
            "Inbound messages sent to a WhatsApp number no tenant has (kept as dead letters): "
            "a number missing from the tenants, or mistyped.",
            registry=registry,
        )

    def job_done(self, queue: str, outcome: str, seconds: float) -> None:
        self.jobs.labels(queue, outcome).inc()
        self.job_seconds.labels(queue).observe(seconds)

    def send_done(self, outcome: str, code: str | None, seconds: float) -> None:
        self.outbox_sends.labels(outcome, code or "").inc()
        self.outbox_send_seconds.observe(seconds)

    def outcomes_recorded(self, counts: dict[str, int]) -> None:
        for outcome, count in counts.items():
            if count:
                self.outbox_outcomes.labels(outcome).inc(count)

    def inbound_unknown_number(self) -> None:
        self.webhook_unknown_number.inc()

    def sessions_closed_by_job(self, count: int, reason: str = "inactivity") -> None:
        if count:
            self.sessions_closed.labels(reason).inc(count)


_registry = CollectorRegistry(auto_describe=True)
_metrics: Metrics | None = None
_metrics_lock = threading.Lock()


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def metrics() -> Metrics:
    """This process's metrics, created on first use (after ``configure_multiprocess``, if any).

    In multi-process mode they are registered nowhere: their values go to the shared directory
    and the serving process reads them all from there.
    """
    global _metrics
    with _metrics_lock:
        if _metrics is None:
            _metrics = Metrics(None if multiprocess_dir() else _registry)
        return _metrics


def process_registry() -> CollectorRegistry:
    """Where this process's metrics are registered outside multi-process mode."""
    return _registry


def configure_multiprocess(directory: str | Path) -> Path:
    """Switch this process (and the children it starts) to prometheus_client's multi-process mode
    with a clean ``directory``. Call it before ``metrics()`` is first used; raises RuntimeError
    otherwise."""
    path = Path(directory)
    if _metrics is not None and multiprocess_dir() is None:
        raise RuntimeError("configure_multiprocess must run before the first metric is created")
    if path.exists():
        for item in path.iterdir():
            if item.is_dir():
                shutil.rmtree(item)
            else:
                item.unlink()
    path.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(path)
    values.ValueClass = values.get_value_class()
    return path


def mark_process_dead(pid: int) -> None:
    """Bookkeeping for a child process that exited (multi-process mode; a no-op otherwise)."""
    directory = multiprocess_dir()
    if directory:
        multiprocess.mark_process_dead(pid, directory)
