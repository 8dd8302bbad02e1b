"""The close-inactive-live-sessions worker part: one run at start, then every interval."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from application.live_sessions import CloseObserver, close_inactive_sessions
from entrypoints.container import Container
from entrypoints.heartbeat import Heartbeat

log = logging.getLogger("livesell.closer")


class SessionCloser:
    """Runs ``close_inactive_sessions`` every ``CLOSE_INTERVAL_MINUTES``; safe in many processes.
    Each run's report goes to every one of ``observers`` (metrics)."""

    name = "close-inactive-live-sessions"

    def __init__(self, container: Container, observers: Sequence[CloseObserver] = ()) -> None:
        self.container = container
        settings = container.settings()
        assert settings is not None
        self.interval_seconds = settings.close_interval_minutes * 60
        self.batch_limit = settings.close_batch_limit
        self.run_observers: list[CloseObserver] = list(observers)
        self.heartbeat = Heartbeat()

    def start(self) -> None:
        self.uow_factory = self.container.uow_factory()
        self.clock = self.container.clock()
        self.ids = self.container.ids()
        self.window = self.container.window()

    def run_once(self) -> int:
        started = time.perf_counter()
        run_id = f"close-{self.ids.new_id()}"
        report = close_inactive_sessions(
            uow_factory=self.uow_factory,
            clock=self.clock,
            window=self.window,
            batch_limit=self.batch_limit,
            run_id=run_id,
        )
        for observer in self.run_observers:
            observer.sessions_closed(report)
        log.info(
            "Close inactive live sessions run completed",
            extra={
                "context": {
                    "closedCount": report.closed_count,
                    "windowMinutes": report.window_minutes,
                    "batches": report.batches,
                    "durationMs": round((time.perf_counter() - started) * 1000, 1),
                    "correlationId": run_id,
                }
            },
        )
        return report.closed_count

    def run(self, stop: threading.Event) -> None:
        log.info(
            "Close inactive live sessions worker started",
            extra={
                "context": {
                    "intervalMinutes": self.interval_seconds / 60,
                    "batchLimit": self.batch_limit,
                    "windowMinutes": self.window.minutes,
                }
            },
        )
        failures = 0
        while not stop.is_set():
            self.heartbeat.beat()
            try:
                self.run_once()
                failures = 0
                wait = self.interval_seconds
            except Exception:
                failures += 1
                wait = min(self.interval_seconds, 2.0 ** min(failures, 6))
                log.exception(
                    "Close inactive live sessions run failed, will retry",
                    extra={"context": {"retryInSeconds": wait, "consecutiveFailures": failures}},
                )
            self.heartbeat.beat(away=wait)
            stop.wait(wait)


def build_part(container: Container) -> SessionCloser:
    from entrypoints.metrics import part_observers

    return SessionCloser(container, part_observers(container.settings()))
