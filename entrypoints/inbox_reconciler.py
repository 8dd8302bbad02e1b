"""The inbox reconciler part of ``livesell worker`` (ADR 0008): enqueues again what the webhook
recorded but could not enqueue (Redis down or evicted, a crash between commit and enqueue).

Every pass walks the records still ``received`` for longer than ``INBOX_RECONCILE_AFTER_SECONDS``
(never a processed or rejected one), oldest first, page by page, and enqueues up to
``BATCH_LIMIT`` of them on ``webhook-processing``; the next pass goes on where it stopped, so no
number of old records can starve a newer one (ADR 0010).
Processing is idempotent, so a record whose first job is merely slow gets a harmless second one;
a record enqueued again waits twice as long before the next time (``RequeueSchedule``, up to
``MAX_REQUEUE_WAIT``), so a queue backlog is not multiplied. Passes run every half threshold (at
most ``MAX_INTERVAL_SECONDS`` apart, counted from the start of the one before; after a failed
pass twice the interval, doubling, at most ``MAX_BACKOFF_SECONDS``: ``application.periodic``).
Safe in several processes: the worst case is a duplicate job.

Between passes the queue is probed every ``PROBE_SECONDS`` (``application.queue_recovery``,
ADR 0013): when it answers again after an outage, the records received since just before the
outage are enqueued at once, whatever their age; when it lost its data (a new epoch), every
record still ``received`` is. So a message accepted while Redis was down is processed within
seconds of Redis answering, not after the threshold.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from application.inbox import ReconcileReport, RequeueSchedule, reconcile_inbox
from application.periodic import Pacing, PassOutcome, Schedule
from application.queue_recovery import QueueRecovered, QueueWatch
from entrypoints.periodic_part import PeriodicPart, log_retry
from ports.clock import Clock
from ports.queue import InboundQueue
from ports.queue_health import QueueHealth
from ports.unit_of_work import UnitOfWorkFactory

log = logging.getLogger("livesell.inbox_reconciler")

BATCH_LIMIT = 2000
MAX_REQUEUE_WAIT = timedelta(minutes=15)
MIN_INTERVAL_SECONDS = 0.5
MAX_INTERVAL_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 10.0
PROBE_SECONDS = 1.0


class InboxReconciler(PeriodicPart):
    name = "inbox-reconciler"

    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        queue: InboundQueue,
        queue_health: QueueHealth,
        clock: Clock,
        reconcile_after_seconds: float,
        batch_limit: int = BATCH_LIMIT,
    ) -> None:
        self.uow_factory = uow_factory
        self.queue = queue
        self.clock = clock
        self.older_than = timedelta(seconds=reconcile_after_seconds)
        self.watch = QueueWatch(queue_health, clock, self.older_than)
        self.interval_seconds = min(
            MAX_INTERVAL_SECONDS,
            max(MIN_INTERVAL_SECONDS, reconcile_after_seconds / 2),
        )
        self.batch_limit = batch_limit
        self.schedule = RequeueSchedule(self.older_than, MAX_REQUEUE_WAIT)
        super().__init__(
            Pacing(
                interval=self.interval_seconds,
                backoff_base=self.interval_seconds,
                backoff_cap=MAX_BACKOFF_SECONDS,
                schedule=Schedule.FIXED_RATE,
                tick=PROBE_SECONDS,
            )
        )

    def start(self) -> None:
        """Connects to nothing (Redis may well be down now): everything was given at
        construction."""

    def recover(self, recovered: QueueRecovered) -> ReconcileReport:
        """Enqueue what may have missed its enqueue while the queue was down."""
        report = reconcile_inbox(
            uow_factory=self.uow_factory,
            queue=self.queue,
            clock=self.clock,
            older_than=timedelta(0),
            limit=self.batch_limit,
            schedule=None,
            received_since=recovered.since,
        )
        log.info(
            "Queue answers again, inbox reconciled",
            extra={
                "context": {
                    "downSeconds": round(recovered.down_seconds, 1),
                    "queueLostData": recovered.since is None,
                    "found": report.found,
                    "enqueued": report.enqueued,
                    "queueError": report.queue_error,
                }
            },
        )
        return report

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

    def between_passes(self) -> None:
        """Probe the queue; run the recovery it owes when it answers again (``QueueWatch``)."""
        try:
            recovery = self.watch.recovery_due()
            if recovery is not None and self.recover(recovery).queue_error is None:
                self.watch.recovered()
        except Exception as exc:
            log.warning(  # the regular pass logs the traceback of a lasting failure
                "Inbox recovery pass failed, will retry",
                extra={"context": {"error": f"{type(exc).__name__}: {exc}"[:300]}},
            )

    def run_pass(self) -> PassOutcome:
        report = self.run_once()
        if not report.complete and report.queue_error is None:
            log.warning(
                "Inbox reconciler pass full, the next pass goes on from where it stopped",
                extra={"context": {"batchLimit": self.batch_limit}},
            )
        return PassOutcome.DONE

    def pass_failed(self, error: Exception, retry_in: float, failures: int) -> None:
        log_retry(log, "Inbox reconcile pass failed, will retry", retry_in, failures)

    def log_started(self) -> None:
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

    def log_stopped(self) -> None:
        log.info("Inbox reconciler stopped")
