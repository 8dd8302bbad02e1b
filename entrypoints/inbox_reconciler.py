"""The inbox reconciler part of ``livesell worker`` (ADR 0008): enqueues again what the webhook
recorded but could not enqueue (Redis down or evicted, a crash between commit and enqueue).

Every pass takes up to ``BATCH_LIMIT`` records still ``received`` for longer than
``INBOX_RECONCILE_AFTER_SECONDS``, oldest first, and enqueues each on ``webhook-processing``.
Processing is idempotent, so a record whose first job is merely slow gets a harmless second one;
a record enqueued again waits twice as long before the next time (``RequeueSchedule``, up to
``MAX_REQUEUE_WAIT``), so a queue backlog is not multiplied. Passes run every half threshold (at
most ``MAX_INTERVAL_SECONDS`` apart). Safe in several processes: the worst case is a duplicate
job.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from application.inbox import ReconcileReport, RequeueSchedule, reconcile_inbox
from entrypoints.container import Container
from entrypoints.health import Heartbeat

log = logging.getLogger("livesell.inbox_reconciler")

BATCH_LIMIT = 2000
MAX_REQUEUE_WAIT = timedelta(minutes=15)
MIN_INTERVAL_SECONDS = 0.5
MAX_INTERVAL_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 60.0


class InboxReconciler:
    name = "inbox-reconciler"

    def __init__(self, container: Container, batch_limit: int = BATCH_LIMIT) -> None:
        self.container = container
        settings = container.settings()
        assert settings is not None
        self.older_than = timedelta(seconds=settings.inbox_reconcile_after_seconds)
        self.interval_seconds = min(
            MAX_INTERVAL_SECONDS,
            max(MIN_INTERVAL_SECONDS, settings.inbox_reconcile_after_seconds / 2),
        )
        self.batch_limit = batch_limit
        self.schedule = RequeueSchedule(self.older_than, MAX_REQUEUE_WAIT)
        self.heartbeat = Heartbeat()

    def start(self) -> None:
        """Build what a pass needs; connects to nothing (Redis may well be down now)."""
        self.uow_factory = self.container.uow_factory()
        self.queue = self.container.inbound_queue()
        self.clock = self.container.clock()

    def run_once(self) -> ReconcileReport:
        report = reconcile_inbox(
            uow_factory=self.uow_factory,
            queue=self.queue,
            clock=self.clock,
            older_than=self.older_than,
            limit=self.batch_limit,
            schedule=self.schedule,
        )
        if report.found or report.queue_error:
            level = logging.WARNING if report.queue_error else logging.INFO
            log.log(
                level,
                "Inbox reconciled",
                extra={
                    "context": {
                        "found": report.found,
                        "enqueued": report.enqueued,
                        "deferred": report.deferred,
                        "queueError": report.queue_error,
                        "olderThanSeconds": self.older_than.total_seconds(),
                    }
                },
            )
        return report

    def run(self, stop: threading.Event) -> None:
        log.info(
            "Inbox reconciler started",
            extra={
                "context": {
                    "olderThanSeconds": self.older_than.total_seconds(),
                    "intervalSeconds": self.interval_seconds,
                    "batchLimit": self.batch_limit,
                }
            },
        )
        failures = 0
        while not stop.is_set():
            self.heartbeat.beat()
            try:
                report = self.run_once()
            except Exception:
                failures += 1
                wait = min(MAX_BACKOFF_SECONDS, self.interval_seconds * 2.0 ** min(failures, 6))
                log.exception(
                    "Inbox reconcile pass failed, will retry",
                    extra={"context": {"retryInSeconds": wait, "consecutiveFailures": failures}},
                )
            else:
                failures = 0
                wait = self.interval_seconds
                if report.found >= self.batch_limit:
                    log.warning(
                        "Inbox reconciler batch full, more records wait",
                        extra={"context": {"batchLimit": self.batch_limit}},
                    )
            self.heartbeat.beat(away=wait)
            stop.wait(wait)
        log.info("Inbox reconciler stopped")


def build_part(container: Container) -> InboxReconciler:
    return InboxReconciler(container)
