# mypy: disable-error-code="no-untyped-call"
"""Gauges read at scrape time: the store's levels and the queue's depths (``StoreCollector``),
and which build answers (``BuildInfoCollector``).

Levels that need a query (outbox lag and rows by status, active sessions, dead letters waiting,
queue depth) are computed by ``StoreCollector`` from the same readings as ``livesell stats``,
cached a few seconds so several scrapers cost one query. They are computed only by the serving
process, so no gauge needs a multi-process aggregation mode.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from domain.outbox import OutboxStatus
from ports.queue_monitor import QueueDepths, QueueMonitor

log = logging.getLogger("livesell.metrics")

SCRAPE_CACHE_SECONDS = 5.0


class StoreLevels(Protocol):
    """What the store gauges read (``application.stats.StoreStats``)."""

    @property
    def outbox_lag(self) -> timedelta: ...
    @property
    def outbox_by_status(self) -> Mapping[OutboxStatus, int]: ...
    @property
    def active_sessions(self) -> Mapping[str, int]: ...
    @property
    def dead_letters_not_replayed(self) -> int: ...


class StoreCollector(Collector):
    """Gauges that need a query, read at scrape time and cached ``cache_seconds``: the store's
    levels from ``read_store``, and the depths of each of ``queues`` from ``monitor`` (none when
    it is None).

    A source that cannot be read is reported by ``livesell_metrics_source_up{source} 0`` and its
    gauges are left out of that scrape; the others are still served.
    """

    def __init__(
        self,
        *,
        read_store: Callable[[], StoreLevels],
        monitor: QueueMonitor | None = None,
        queues: Sequence[str] = (),
        cache_seconds: float = SCRAPE_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.read_store = read_store
        self.monitor = monitor
        self.queues = tuple(queues)
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
        if self.monitor is not None:
            try:
                depths = {queue: self.monitor.depths(queue) for queue in self.queues}
            except Exception as exc:
                log.warning("Metrics: queue unavailable", extra={"context": {"error": str(exc)}})
                up.add_metric(["queue"], 0)
            else:
                up.add_metric(["queue"], 1)
                yield _queue_family(depths)
        yield up


def _store_families(stats: StoreLevels) -> Iterator[Metric]:
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


def _queue_family(depths: Mapping[str, QueueDepths]) -> Metric:
    family = GaugeMetricFamily(
        "livesell_queue_depth",
        "RQ jobs by queue and state: waiting, started, scheduled (retries), failed.",
        labels=["queue", "state"],
    )
    for queue, depth in depths.items():
        family.add_metric([queue, "waiting"], depth.waiting)
        family.add_metric([queue, "started"], depth.started)
        family.add_metric([queue, "scheduled"], depth.scheduled)
        family.add_metric([queue, "failed"], depth.failed)
    return family


class BuildInfoCollector(Collector):
    """``livesell_build_info{version, commit} 1``: which build answers (``commit`` is empty when
    the build did not know it). Read at scrape time, so it is served once in multi-process mode
    too."""

    def __init__(self, version: Callable[[], str], commit: Callable[[], str | None]) -> None:
        self.version = version
        self.commit = commit

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "livesell_build_info",
            "The running build: its version and, when known at build time, its git commit.",
            labels=["version", "commit"],
        )
        family.add_metric([self.version(), self.commit() or ""], 1)
        yield family
