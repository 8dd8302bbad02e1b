# mypy: disable-error-code="no-untyped-call"
"""Prometheus metrics on ``METRICS_PORT`` (SPEC §4; ADR 0009): the wiring. The definitions, the
multi-process mode, the scrape-time collectors and the parts' observer live in
``adapters.prometheus``; the queue's depths come from the ``QueueMonitor`` port.

Two kinds of metric:

- **events**, counted where they happen by the observer the container builds each worker part
  with (``container.part_observers``, when ``METRICS_PORT`` is set): job runs and their
  processing time, provider calls by outcome and provider code, recorded outbox outcomes,
  sessions closed;
- **levels that need a query** (outbox lag and rows by status, queue depth, active sessions, dead
  letters waiting), computed at scrape time from the same readings as ``livesell stats``.

Several processes: when ``PROMETHEUS_MULTIPROC_DIR`` is set, or a part runs children (then in a
private temporary directory), ``start_worker_metrics`` switches to prometheus_client's
multi-process mode before any metric exists; the webhook worker's children build their own
observer (``container.child_part_observers``).
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from prometheus_client import CollectorRegistry, disable_created_metrics
from prometheus_client.registry import Collector

from adapters.prometheus import exposition
from adapters.prometheus.collectors import SCRAPE_CACHE_SECONDS, BuildInfoCollector
from adapters.prometheus.metrics import configure_multiprocess, metrics, multiprocess_dir
from entrypoints import build_info
from entrypoints.container import Container
from entrypoints.health import Route, serve_routes
from entrypoints.settings import ConfigError, Settings

__all__ = [
    "MetricsServer",
    "metrics",
    "scrape_registry",
    "serve",
    "start_worker_metrics",
]

log = logging.getLogger("livesell.metrics")


def scrape_registry(collectors: Sequence[Collector] = ()) -> CollectorRegistry:
    """What a scrape reads (``adapters.prometheus.exposition.scrape_registry``), with
    ``livesell_build_info`` and ``collectors``."""
    build = BuildInfoCollector(build_info.version, build_info.commit)
    return exposition.scrape_registry([build, *collectors])


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
    answer = exposition.exposition(registry)
    endpoints = serve_routes(port, {**(routes or {}), "/metrics": answer}, addr=addr)
    return MetricsServer(endpoints.server, endpoints.thread, registry)


def runs_child_processes(part: object) -> bool:
    """True for a part that spreads its work over child processes (the webhook worker whose
    ``plan`` lists more than this process's slots)."""
    from entrypoints.webhook_worker import WebhookWorker

    return isinstance(part, WebhookWorker) and len(part.plan) > 1


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
    collector = container.metrics_collector(queue=queue, cache_seconds=cache_seconds)
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
