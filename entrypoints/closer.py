"""The close-inactive-live-sessions worker part: one run at start, then every interval; after a
failed run 1 s, doubling, at most the interval (``application.periodic``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from application.live_sessions import CloseObserver, close_inactive_sessions
from application.periodic import Pacing, PassOutcome
from domain.live_sessions import InactivityWindow
from entrypoints.periodic_part import PeriodicPart, log_retry
from ports.clock import Clock, IdGenerator
from ports.unit_of_work import UnitOfWorkFactory

log = logging.getLogger("livesell.closer")


class SessionCloser(PeriodicPart):
    """Runs ``close_inactive_sessions`` every ``CLOSE_INTERVAL_MINUTES``; safe in many processes.
    Each run's report goes to every one of ``observers`` (metrics)."""

    name = "close-inactive-live-sessions"

    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        ids: IdGenerator,
        window: InactivityWindow,
        interval_minutes: float,
        batch_limit: int,
        observers: Sequence[CloseObserver] = (),
    ) -> None:
        self.uow_factory = uow_factory
        self.clock = clock
        self.ids = ids
        self.window = window
        self.interval_seconds = interval_minutes * 60
        self.batch_limit = batch_limit
        self.run_observers: list[CloseObserver] = list(observers)
        super().__init__(
            Pacing(
                interval=self.interval_seconds,
                backoff_base=1.0,
                backoff_cap=self.interval_seconds,
            )
        )

    def start(self) -> None:
        """Everything it needs was given at construction; the first run connects."""

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

    def run_pass(self) -> PassOutcome:
        self.run_once()
        return PassOutcome.DONE

    def pass_failed(self, error: Exception, retry_in: float, failures: int) -> None:
        log_retry(log, "Close inactive live sessions run failed, will retry", retry_in, failures)

    def log_started(self) -> None:
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
