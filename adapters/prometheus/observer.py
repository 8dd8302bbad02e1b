"""The worker parts' events, counted: one observer for every part (``PrometheusObserver``).

Each part calls its observers with what it already has in hand: the webhook worker each job's
outcome (``adapters.rq.outcomes.JobObserver``), the outbox sender each provider call and each
batch of recorded outcomes (``OutboxObserver``), the closer each run's report
(``application.live_sessions.CloseObserver``). What the observer reads of those is written here as
shapes (Protocols), since an adapter imports no other adapter and not the application; mypy checks
the real classes against them where the observer is passed to a part. A metric never breaks the
work it counts: an observer that fails logs and returns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from adapters.prometheus.metrics import metrics
from domain.outbox import DeliveryFailure
from ports.messaging import SendReceipt

log = logging.getLogger("livesell.metrics")


class FinishedJob(Protocol):
    """What is counted of a job's run (``adapters.rq.outcomes.JobOutcome``)."""

    @property
    def succeeded(self) -> bool: ...
    @property
    def result(self) -> object: ...
    @property
    def retry_scheduled(self) -> bool: ...
    @property
    def processing_seconds(self) -> float: ...


class SendAttempt(Protocol):
    """What is counted of a provider call (``application.outbox.Attempt``)."""

    @property
    def result(self) -> SendReceipt | DeliveryFailure: ...


class RecordedOutcomes(Protocol):
    """What is counted of recorded outbox outcomes (``application.outbox.BatchReport``)."""

    @property
    def sent(self) -> int: ...
    @property
    def retried(self) -> int: ...
    @property
    def dead(self) -> int: ...
    @property
    def lost(self) -> int: ...
    @property
    def expired(self) -> int: ...


class ClosedSessions(Protocol):
    """What is counted of a closing run (``application.live_sessions.CloseReport``)."""

    @property
    def closed_count(self) -> int: ...


def job_outcome(outcome: FinishedJob) -> str:
    """processed | rejected (ended without raising, dead-lettered) | retried | failed."""
    if outcome.succeeded:
        result = outcome.result if isinstance(outcome.result, dict) else {}
        return "rejected" if result.get("status") == "rejected" else "processed"
    return "retried" if outcome.retry_scheduled else "failed"


class PrometheusObserver:
    """Counts the parts' events in this process's ``metrics()`` (created on the first event, so
    the observer may be built before multi-process mode is configured). ``job_queue`` is the
    ``queue`` label of the jobs counted."""

    def __init__(self, job_queue: str) -> None:
        self.job_queue = job_queue

    def job_finished(self, outcome: FinishedJob) -> None:
        seconds = outcome.processing_seconds
        _safely(metrics().job_done, self.job_queue, job_outcome(outcome), seconds)

    def message_sent(self, attempt: SendAttempt, seconds: float) -> None:
        result = attempt.result
        if isinstance(result, SendReceipt):
            _safely(metrics().send_done, "accepted", None, seconds)
        else:
            kind = "transient_failure" if result.transient else "permanent_failure"
            _safely(metrics().send_done, kind, result.code, seconds)

    def outcomes_recorded(self, report: RecordedOutcomes) -> None:
        counts = {
            "sent": report.sent,
            "retried": report.retried,
            "dead": report.dead,
            "lost": report.lost,
            "expired": report.expired,
        }
        _safely(metrics().outcomes_recorded, counts)

    def sessions_closed(self, report: ClosedSessions) -> None:
        _safely(metrics().sessions_closed_by_job, report.closed_count)


def _safely(record: Callable[..., None], *args: Any) -> None:
    """A metric must never break the work it counts."""
    try:
        record(*args)
    except Exception:
        log.exception("Could not record a metric", extra={"context": {"metric": record.__name__}})
