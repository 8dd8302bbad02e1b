"""Health of ``livesell worker``: ``/healthz`` (every part alive) and ``/readyz`` (its stores
answer, the schema is at head), as JSON, on ``HEALTH_PORT`` and on ``METRICS_PORT`` (ADR 0015).

- **Liveness.** Each part owns a ``Heartbeat``: its loop calls ``beat(away)`` every time round,
  ``away`` being how long it is about to wait on purpose; the runner records whether the part is
  running, returned or died. A part is alive while it runs and its last beat is no older than
  ``away + HEALTH_STALL_SECONDS``. Any part not alive makes ``/healthz`` answer 503 naming it.
- **Readiness.** ``/readyz`` runs named checks (the database answers ``SELECT 1``, its schema is at
  this build's head, Redis answers ``PING``) at once, each bounded by ``CHECK_TIMEOUT_SECONDS``;
  any failure is 503 naming it.
- **One small HTTP server** (``Endpoints``) serves both and, on ``METRICS_PORT``, ``/metrics``;
  every other path is 404.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlsplit

import attrs

from entrypoints.container import Container
from entrypoints.heartbeat import Beat, Heartbeat, PartState
from entrypoints.settings import ConfigError, Settings

log = logging.getLogger("livesell.health")

CHECK_TIMEOUT_SECONDS = 3.0
JSON_TYPE = "application/json"


class HasHeartbeat(Protocol):
    name: str

    @property
    def heartbeat(self) -> Heartbeat: ...


@attrs.frozen
class PartHealth:
    """One part's verdict."""

    name: str
    alive: bool
    state: PartState
    problem: str | None
    last_beat_seconds_ago: float | None
    last_beat_at: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "alive": self.alive,
            "state": self.state.value,
            "problem": self.problem,
            "lastHeartbeatSecondsAgo": self.last_beat_seconds_ago,
            "lastHeartbeatAt": self.last_beat_at,
        }


def judge(name: str, beat: Beat, now: float, stall_after: float) -> PartHealth:
    """Alive: running, with a beat no older than ``beat.away + stall_after``."""
    ago = None if beat.last is None else round(now - beat.last, 3)
    at = (
        None
        if beat.last_wall is None
        else datetime.fromtimestamp(beat.last_wall, UTC).isoformat(timespec="milliseconds")
    )
    problem: str | None = None
    if beat.state is PartState.DIED:
        problem = f"died: {beat.error}"
    elif beat.state is PartState.STOPPED:
        problem = "stopped: its loop returned"
    elif beat.state is PartState.STARTING:
        problem = "starting"
    elif ago is None or ago > beat.away + stall_after:
        bound = round(beat.away + stall_after, 3)
        problem = f"stalled: no heartbeat for {ago} s (allowed {bound} s)"
    return PartHealth(name, problem is None, beat.state, problem, ago, at)


@attrs.frozen
class HealthReport:
    parts: tuple[PartHealth, ...]

    @property
    def failed(self) -> list[str]:
        return [p.name for p in self.parts if not p.alive]

    @property
    def status_code(self) -> int:
        return 503 if self.failed or not self.parts else 200

    def as_json(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.status_code == 200 else "unhealthy",
            "failed": self.failed,
            "parts": {p.name: p.as_json() for p in self.parts},
        }


def liveness(
    parts: Sequence[HasHeartbeat], stall_after: float, clock: Callable[[], float] = time.monotonic
) -> HealthReport:
    now = clock()
    return HealthReport(tuple(judge(p.name, p.heartbeat.read(), now, stall_after) for p in parts))


# -- readiness -----------------------------------------------------------------------------------

Check = Callable[[], None]
"""A readiness check: returns when ready, raises (with the reason) when not."""


@attrs.frozen
class ReadinessReport:
    checks: Mapping[str, str]

    @property
    def failed(self) -> list[str]:
        return sorted(name for name, result in self.checks.items() if result != "ok")

    @property
    def status_code(self) -> int:
        return 503 if self.failed else 200

    def as_json(self) -> dict[str, Any]:
        status = "ready" if self.status_code == 200 else "unavailable"
        return {"status": status, "failed": self.failed, "checks": dict(self.checks)}


class Readiness:
    """Runs the checks at once, each bounded by ``timeout`` (a hung check reports "timed out";
    its thread is left to finish, and the pool is sized so later probes still run)."""

    def __init__(self, checks: Mapping[str, Check], timeout: float = CHECK_TIMEOUT_SECONDS) -> None:
        self.checks = dict(checks)
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(
            max_workers=max(4, 4 * len(self.checks)), thread_name_prefix="readyz"
        )

    def report(self) -> ReadinessReport:
        futures = {name: self._pool.submit(check) for name, check in self.checks.items()}
        deadline = time.monotonic() + self.timeout
        results: dict[str, str] = {}
        for name, future in futures.items():
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
                results[name] = "ok"
            except FutureTimeout:
                results[name] = "timed out"
            except Exception as exc:
                results[name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        return ReadinessReport(results)


# -- the HTTP server -----------------------------------------------------------------------------

Route = Callable[[str], tuple[int, str, bytes]]
"""Answers one GET: given the Accept header, returns (status, content type, body)."""


def json_route(produce: Callable[[], tuple[int, dict[str, Any]]]) -> Route:
    def route(_accept: str) -> tuple[int, str, bytes]:
        status, body = produce()
        return status, JSON_TYPE, json.dumps(body).encode()

    return route


def health_routes(
    parts: Sequence[HasHeartbeat], readiness: Readiness, stall_after: float
) -> dict[str, Route]:
    """``/healthz`` and ``/readyz`` for these parts and checks."""

    logged: list[list[str]] = [[]]

    def healthz() -> tuple[int, dict[str, Any]]:
        report = liveness(parts, stall_after)
        if report.failed != logged[0]:  # one line per change, not one per probe
            logged[0] = report.failed
            if report.failed:
                log.warning(
                    "Not healthy: " + ", ".join(report.failed),
                    extra={"context": {p.name: p.problem for p in report.parts if not p.alive}},
                )
            else:
                log.info("Healthy again", extra={"context": {"parts": len(report.parts)}})
        return report.status_code, report.as_json()

    def readyz() -> tuple[int, dict[str, Any]]:
        report = readiness.report()
        if report.failed:
            log.warning(
                "Not ready: " + ", ".join(report.failed), extra={"context": dict(report.checks)}
            )
        return report.status_code, report.as_json()

    return {"/healthz": json_route(healthz), "/readyz": json_route(readyz)}


class _Handler(BaseHTTPRequestHandler):
    routes: Mapping[str, Route] = {}
    server_version = "livesell"
    sys_version = ""

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        route = self.routes.get(path)
        if route is None:
            known = sorted(self.routes)
            body = {"status": "not found", "path": path, "paths": known}
            self._answer(404, JSON_TYPE, json.dumps(body).encode())
            return
        try:
            status, content_type, payload = route(self.headers.get("Accept", ""))
        except Exception as exc:
            log.exception("Health endpoint error", extra={"context": {"path": path}})
            status, content_type = 500, JSON_TYPE
            payload = json.dumps({"status": "error", "error": type(exc).__name__}).encode()
        self._answer(status, content_type, payload)

    def _answer(self, status: int, content_type: str, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds are not worth a log line each."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True


@attrs.define
class Endpoints:
    """A running server: ``http://<addr>:<port><path>`` for each of its routes."""

    server: ThreadingHTTPServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def serve_routes(port: int, routes: Mapping[str, Route], *, addr: str = "0.0.0.0") -> Endpoints:
    """Serve ``routes`` on ``port`` (0: a free one) from a daemon thread; other paths are 404.
    Raises OSError when the port cannot be listened on."""
    handler = type("Handler", (_Handler,), {"routes": dict(routes)})
    server = _Server((addr, port), handler)
    thread = threading.Thread(target=server.serve_forever, name=f"http-{port}", daemon=True)
    thread.start()
    return Endpoints(server, thread)


# -- the worker's endpoints ----------------------------------------------------------------------

REDIS_FREE_PARTS = frozenset({"outbox", "closer"})
"""Parts that never use Redis: a worker running only these does not check it."""


def worker_readiness(
    settings: Settings, container: Container, part_names: Sequence[str]
) -> Readiness:
    """The database answers, its schema is at head, and Redis answers when a part uses it."""
    checks: dict[str, Check] = {
        "sqlite" if settings.is_sqlite else "postgres": container.store_check(),
        "schema": container.schema_check(),
    }
    if any(name not in REDIS_FREE_PARTS for name in part_names):
        checks["redis"] = container.queue_check()
    return Readiness(checks)


def worker_health_routes(
    settings: Settings,
    container: Container,
    parts: Sequence[HasHeartbeat],
    part_names: Sequence[str],
) -> dict[str, Route]:
    return health_routes(
        parts, worker_readiness(settings, container, part_names), settings.health_stall_seconds
    )


def start_worker_health(
    settings: Settings, routes: Mapping[str, Route], *, addr: str = "0.0.0.0"
) -> Endpoints | None:
    """Serve ``routes`` on ``HEALTH_PORT`` (None when it is unset, or when it is ``METRICS_PORT``,
    which serves them too). Raises ConfigError when the port cannot be listened on."""
    port = settings.health_port
    if port is None or port == settings.metrics_port:
        return None
    try:
        endpoints = serve_routes(port, routes, addr=addr)
    except OSError as exc:
        raise ConfigError("HEALTH_PORT", f"cannot listen on {port}: {exc}") from exc
    log.info(
        "Health served",
        extra={"context": {"port": endpoints.port, "paths": sorted(routes)}},
    )
    return endpoints
