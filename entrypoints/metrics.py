# mypy: disable-error-code="no-untyped-call"
"""Prometheus metrics on ``METRICS_PORT`` (SPEC §4; ADR 0009): every definition and the HTTP
server, in this one module.

Two kinds of metric:

- **events**, counted where they happen by small observers the worker parts call (job runs and
  their processing time, provider calls by outcome and provider code, recorded outbox outcomes,
  sessions closed). They live in ``Metrics``, one instance per process (``metrics()``);
- **levels that need a query** (outbox lag and rows by status, queue depth, active sessions, dead
  letters waiting), computed at scrape time by ``StoreCollector`` from the same readings as
  ``livesell stats``, cached a few seconds so several scrapers cost one query.

Several processes: the webhook worker runs child processes (one per usable CPU, ADR 0007). When
``PROMETHEUS_MULTIPROC_DIR`` is set, or a part runs children (then in a private temporary
directory), ``configure_multiprocess`` empties the directory and switches prometheus_client to its
multi-process mode before any metric exists: each process writes its counters to files there (the
children attach the observers themselves), the serving process sums them at scrape time
(``MultiProcessCollector``), and ``mark_process_dead`` is called for a child that exits.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from prometheus_client import (
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from redis import Redis
from rq import Queue
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from adapters.rq.connection import queue_errors, redis_connection
from adapters.rq.spec import QUEUE_NAME
from adapters.rq.worker import JobOutcome
from application.live_sessions import CloseReport
from application.outbox import Attempt, BatchReport
from application.stats import StoreStats, read_store_stats
from entrypoints.container import Container
from entrypoints.health import Route, serve_routes
from entrypoints.settings import ConfigError, Settings
from ports.messaging import SendReceipt

log = logging.getLogger("livesell.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SCRAPE_CACHE_SECONDS = 5.0
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
"""Every metric this module defines (documented in DEPLOYMENT.md "Metrics")."""


# -- event metrics ----------------------------------------------------------------------------


class Metrics:
    """The counters and histograms the worker parts feed."""

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
            "Outbox outcomes recorded: sent, retried, dead, lost (a later claim took the row).",
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

    # The observers the worker parts call. Each takes what the part already has in hand.

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


def configure_multiprocess(directory: str | Path) -> Path:
    """Switch this process (and the children it starts) to prometheus_client's multi-process mode
    with a clean ``directory``. Call it before ``metrics()`` is first used."""
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


# -- levels computed at scrape time -------------------------------------------------------------


@attrs.frozen
class QueueDepths:
    """Jobs of one RQ queue by state, read from RQ's own keys (what ``rq info`` counts)."""

    waiting: int
    started: int
    scheduled: int
    failed: int

    def as_dict(self) -> dict[str, int]:
        return attrs.asdict(self)


def read_queue_depths(connection: Redis, queue_name: str) -> QueueDepths:
    """Waiting jobs (the queue's list) and the started, scheduled and failed registries, in one
    round trip and without the clean-up RQ's ``registry.count`` runs. Raises
    ``ports.queue.QueueUnavailable`` when Redis cannot be reached."""
    queue = Queue(queue_name, connection=connection)
    with queue_errors(), connection.pipeline(transaction=False) as pipe:
        pipe.llen(queue.key)
        pipe.zcard(StartedJobRegistry(queue=queue).key)
        pipe.zcard(ScheduledJobRegistry(queue=queue).key)
        pipe.zcard(FailedJobRegistry(queue=queue).key)
        waiting, started, scheduled, failed = pipe.execute()
    return QueueDepths(int(waiting), int(started), int(scheduled), int(failed))


class StoreCollector(Collector):
    """Gauges that need a query, read at scrape time and cached ``cache_seconds``.

    A source that cannot be read is reported by ``livesell_metrics_source_up{source} 0`` and its
    gauges are left out of that scrape; the others are still served.
    """

    def __init__(
        self,
        *,
        read_store: Callable[[], StoreStats],
        read_queues: Callable[[], dict[str, QueueDepths]] | None = None,
        cache_seconds: float = SCRAPE_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.read_store = read_store
        self.read_queues = read_queues
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._cached: list[Metric] = []
        self._cached_at: float | None = None

    def describe(self) -> Iterable[Metric]:
        return []  # collected only at scrape time: registering must not query anything

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            now = self.clock()
            if self._cached_at is None or now - self._cached_at >= self.cache_seconds:
                self._cached = list(self._read())
                self._cached_at = now
            return list(self._cached)

    def _read(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "livesell_metrics_source_up",
            "1 when the source of the query-based gauges could be read at the last scrape.",
            labels=["source"],
        )
        try:
            stats = self.read_store()
        except Exception as exc:
            log.warning("Metrics: store unavailable", extra={"context": {"error": str(exc)}})
            up.add_metric(["store"], 0)
        else:
            up.add_metric(["store"], 1)
            yield from _store_families(stats)
        if self.read_queues is not None:
            try:
                depths = self.read_queues()
            except Exception as exc:
                log.warning("Metrics: queue unavailable", extra={"context": {"error": str(exc)}})
                up.add_metric(["queue"], 0)
            else:
                up.add_metric(["queue"], 1)
                yield _queue_family(depths)
        yield up


def _store_families(stats: StoreStats) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "livesell_outbox_lag_seconds",
        "How long the longest-waiting due outbox message has been due (0 when none is due).",
        value=stats.outbox_lag.total_seconds(),
    )
    by_status = GaugeMetricFamily(
        "livesell_outbox_messages", "messages_out rows by status.", labels=["status"]
    )
    for status, count in stats.outbox_by_status.items():
        by_status.add_metric([status.value], count)
    yield by_status
    sessions = GaugeMetricFamily(
        "livesell_active_sessions", "Active live sessions per tenant.", labels=["tenant"]
    )
    for tenant, count in stats.active_sessions.items():
        sessions.add_metric([tenant], count)
    yield sessions
    yield GaugeMetricFamily(
        "livesell_dead_letters_not_replayed",
        "Dead letters not replayed yet (livesell dlq list, livesell dlq replay).",
        value=stats.dead_letters_not_replayed,
    )


def _queue_family(depths: dict[str, QueueDepths]) -> Metric:
    family = GaugeMetricFamily(
        "livesell_queue_depth",
        "RQ jobs by queue and state: waiting, started, scheduled (retries), failed.",
        labels=["queue", "state"],
    )
    for queue, depth in depths.items():
        for state, count in depth.as_dict().items():
            family.add_metric([queue, state], count)
    return family


# -- the HTTP server ----------------------------------------------------------------------------


@attrs.define
class MetricsServer:
    """The running endpoint: ``http://<addr>:<port>/metrics`` (and the health routes it was given;
    every other path is 404)."""

    server: Any
    thread: threading.Thread
    registry: CollectorRegistry

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def scrape_registry(collectors: Sequence[Collector] = ()) -> CollectorRegistry:
    """What a scrape reads: this process's metrics (or, in multi-process mode, every process's,
    from the shared directory), process figures where they are meaningful, and ``collectors``."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        metrics()
        registry = CollectorRegistry()
        registry.register(_Forward(_registry))
        registry.register(PROCESS_COLLECTOR)
        registry.register(PLATFORM_COLLECTOR)
    registry.register(BuildInfoCollector())
    for collector in collectors:
        registry.register(collector)
    return registry


class BuildInfoCollector(Collector):
    """``livesell_build_info{version, commit} 1``: which build answers (``commit`` is empty when
    the build did not know it). Read at scrape time, so it is served once in multi-process mode
    too."""

    def collect(self) -> Iterable[Metric]:
        from entrypoints.build_info import commit, version

        family = GaugeMetricFamily(
            "livesell_build_info",
            "The running build: its version and, when known at build time, its git commit.",
            labels=["version", "commit"],
        )
        family.add_metric([version(), commit() or ""], 1)
        yield family


class _Forward(Collector):
    """Serves another registry's metrics (ours stays free of scrape-time collectors)."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterable[Metric]:
        return self.source.collect()


def metrics_route(registry: CollectorRegistry) -> Route:
    """``/metrics`` in the format the scraper asks for (Prometheus text or OpenMetrics)."""

    def route(accept: str) -> tuple[int, str, bytes]:
        encoder, content_type = choose_encoder(accept)
        return 200, content_type, encoder(registry)

    return route


def serve(
    port: int,
    *,
    addr: str = "0.0.0.0",
    collectors: Sequence[Collector] = (),
    routes: Mapping[str, Route] | None = None,
) -> MetricsServer:
    """Start the endpoint in a daemon thread (``port`` 0 picks a free port): ``/metrics``, the
    other ``routes`` given (``/healthz``, ``/readyz``), 404 elsewhere. The ``*_created`` series are
    left out: they double every counter's series for a value nobody graphs."""
    disable_created_metrics()
    registry = scrape_registry(collectors)
    endpoints = serve_routes(
        port, {**(routes or {}), "/metrics": metrics_route(registry)}, addr=addr
    )
    return MetricsServer(endpoints.server, endpoints.thread, registry)


# -- the worker parts' observers ----------------------------------------------------------------


def job_outcome(outcome: JobOutcome) -> str:
    """processed | rejected (ended without raising, dead-lettered) | retried | failed."""
    if outcome.succeeded:
        result = outcome.result if isinstance(outcome.result, dict) else {}
        return "rejected" if result.get("status") == "rejected" else "processed"
    return "retried" if outcome.retry_scheduled else "failed"


def observe_job(outcome: JobOutcome) -> None:
    _safely(metrics().job_done, QUEUE_NAME, job_outcome(outcome), outcome.processing_seconds)


def observe_send(attempt: Attempt, seconds: float) -> None:
    result = attempt.result
    if isinstance(result, SendReceipt):
        _safely(metrics().send_done, "accepted", None, seconds)
    else:
        kind = "transient_failure" if result.transient else "permanent_failure"
        _safely(metrics().send_done, kind, result.code, seconds)


def observe_recorded(report: BatchReport) -> None:
    counts = {"sent": report.sent, "retried": report.retried, "dead": report.dead}
    counts["lost"] = report.lost
    _safely(metrics().outcomes_recorded, counts)


def observe_close_run(report: CloseReport) -> None:
    _safely(metrics().sessions_closed_by_job, report.closed_count)


def _safely(record: Callable[..., None], *args: Any) -> None:
    """A metric must never break the work it counts."""
    try:
        record(*args)
    except Exception:
        log.exception("Could not record a metric", extra={"context": {"metric": record.__name__}})


def instrument(part: object) -> list[str]:
    """Attach the observers a worker part exposes; returns the names of those attached."""
    hooks: dict[str, Callable[..., None]] = {
        "job_observers": observe_job,
        "send_observers": observe_send,
        "record_observers": observe_recorded,
        "run_observers": observe_close_run,
    }
    attached = []
    for attribute, observer in hooks.items():
        observers = getattr(part, attribute, None)
        if isinstance(observers, list) and observer not in observers:
            observers.append(observer)
            attached.append(attribute)
    return attached


def runs_child_processes(part: object) -> bool:
    """True for a part that spreads its work over child processes (the webhook worker's ``plan``
    lists the slots of each process it runs)."""
    plan = getattr(part, "plan", None)
    return isinstance(plan, list | tuple) and len(plan) > 1


def start_worker_metrics(
    settings: Settings,
    container: Container,
    parts: Sequence[object],
    *,
    queue: bool = True,
    addr: str = "0.0.0.0",
    cache_seconds: float = SCRAPE_CACHE_SECONDS,
    routes: Mapping[str, Route] | None = None,
) -> MetricsServer | None:
    """Serve ``/metrics`` on ``METRICS_PORT`` for ``livesell worker`` (None when it is unset):
    the parts' counters, and the store's (and, with ``queue``, the queue's) levels at scrape time;
    ``routes`` (the worker's ``/healthz`` and ``/readyz``) are served beside it.

    Multi-process mode is on when ``PROMETHEUS_MULTIPROC_DIR`` is set, and otherwise as soon as a
    part runs child processes (then in a private temporary directory, removed at exit), so the
    children's jobs are counted too. Call it before the parts start. Raises ConfigError when the
    port cannot be listened on."""
    if settings.metrics_port is None:
        return None
    directory = multiprocess_dir()
    if directory is None and any(runs_child_processes(part) for part in parts):
        directory = tempfile.mkdtemp(prefix="livesell-metrics-")
        atexit.register(shutil.rmtree, directory, True)
    if directory:
        configure_multiprocess(directory)
    metrics()
    for part in parts:
        instrument(part)
    uow_factory = container.uow_factory()
    clock = container.clock()
    read_queues: Callable[[], dict[str, QueueDepths]] | None = None
    if queue:
        connection = redis_connection(
            settings.redis_url, settings.redis_token, client_name="livesell-metrics"
        )

        def read_queues() -> dict[str, QueueDepths]:
            return {QUEUE_NAME: read_queue_depths(connection, QUEUE_NAME)}

    collector = StoreCollector(
        read_store=lambda: read_store_stats(uow_factory=uow_factory, clock=clock),
        read_queues=read_queues,
        cache_seconds=cache_seconds,
    )
    try:
        server = serve(settings.metrics_port, addr=addr, collectors=[collector], routes=routes)
    except OSError as exc:
        raise ConfigError(
            "METRICS_PORT", f"cannot listen on {settings.metrics_port}: {exc}"
        ) from exc
    log.info(
        "Metrics served",
        extra={
            "context": {
                "port": server.port,
                "paths": sorted({"/metrics", *(routes or {})}),
                "multiprocessDir": directory,
            }
        },
    )
    return server
