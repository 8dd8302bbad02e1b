"""The inbox reconciler's use case (ADR 0008): a message whose enqueue failed stays ``received``,
and ``reconcile_inbox`` enqueues it again later; processing is idempotent, so a second job is
harmless."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import attrs

from domain.inbound import InboundRecord
from ports.clock import Clock
from ports.queue import InboundQueue, QueueUnavailable
from ports.unit_of_work import UnitOfWorkFactory

log = logging.getLogger("livesell.inbox")


MAX_PAGES_PER_PASS = 50
"""A pass reads at most this many pages of ``limit`` waiting records (it goes on where it
stopped at the next pass), so one pass's work is bounded however large the backlog."""


@attrs.frozen(kw_only=True)
class ReconcileReport:
    """One reconciler pass: records read still ``received``, how many were enqueued again, how
    many were left for a later pass (enqueued again recently), whether the pass reached the end
    of the waiting records (else the next pass goes on from where this one stopped), and the
    queue error that stopped the pass early, if any."""

    found: int
    enqueued: int
    deferred: int = 0
    complete: bool = True
    queue_error: str | None = None


class RequeueSchedule:
    """When a record still ``received`` may be enqueued again, and where the reconciler's walk
    over the waiting records stands. After each re-enqueue a record's wait doubles (from
    ``first_wait`` up to ``max_wait``), so a long queue backlog, where records wait because their
    jobs have not run yet, is not multiplied by the reconciler. Kept in memory: a restarted
    reconciler starts again from ``first_wait`` and from the oldest record (a duplicate job is
    harmless)."""

    def __init__(self, first_wait: timedelta, max_wait: timedelta) -> None:
        self.first_wait = first_wait
        self.max_wait = max(max_wait, first_wait)
        self.cursor: tuple[datetime, str] | None = None
        self._next: dict[str, tuple[datetime, timedelta]] = {}
        self._seen: set[str] = set()

    def is_due(self, record_id: str, now: datetime) -> bool:
        entry = self._next.get(record_id)
        return entry is None or entry[0] <= now

    def enqueued(self, record_id: str, now: datetime) -> None:
        previous = self._next.get(record_id)
        wait = self.first_wait if previous is None else min(previous[1] * 2, self.max_wait)
        self._next[record_id] = (now + wait, wait)

    def seen(self, record_ids: set[str], *, end: bool) -> None:
        """Records read by the walk; at its ``end``, forget those no longer waiting (processed
        or rejected since) and start the next walk from the oldest record."""
        self._seen |= record_ids
        if end:
            self.keep_only(self._seen)
            self._seen = set()
            self.cursor = None

    def keep_only(self, record_ids: set[str]) -> None:
        for record_id in set(self._next) - record_ids:
            del self._next[record_id]


def reconcile_inbox(
    *,
    uow_factory: UnitOfWorkFactory,
    queue: InboundQueue,
    clock: Clock,
    older_than: timedelta,
    limit: int,
    schedule: RequeueSchedule | None = None,
    received_since: datetime | None = None,
) -> ReconcileReport:
    """Enqueue again up to ``limit`` records still ``received`` since before ``now - older_than``
    (terminal records, processed or rejected, never), oldest first, any tenant, skipping those
    ``schedule`` says were enqueued again too recently.

    Records are read page by page (keyset on ``(received_at, id)``), and the walk goes on from
    where the previous pass stopped (``schedule.cursor``): however many old records wait, every
    record is reached, so none can be starved. Stops at the first queue failure (the next pass
    tries again). Raises StoreUnavailable when the database cannot be read. ``received_since``
    starts the walk at the records received at or after it (a pass after a queue outage, with no
    schedule, ADR 0013)."""
    now = clock.now()
    after = schedule.cursor if schedule is not None else None
    if after is None and received_since is not None:
        after = (received_since, "")  # keyset (received_at, id): every id sorts after ""
    found = enqueued = deferred = 0
    for _ in range(MAX_PAGES_PER_PASS):
        with uow_factory() as uow:
            page = list(uow.inbound.list_received_before(now - older_than, limit, after=after))
        found += len(page)
        for record in page:
            if schedule is not None and not schedule.is_due(record.id, now):
                deferred += 1
                continue
            try:
                queue.enqueue(record.message.to_payload())
            except QueueUnavailable as exc:
                return ReconcileReport(
                    found=found,
                    enqueued=enqueued,
                    deferred=deferred,
                    complete=False,
                    queue_error=str(exc),
                )
            enqueued += 1
            if schedule is not None:
                schedule.enqueued(record.id, now)
            _log_requeued(record)
        end = len(page) < limit
        if schedule is not None:
            schedule.seen({record.id for record in page}, end=end)
        if end:
            return ReconcileReport(found=found, enqueued=enqueued, deferred=deferred)
        after = (page[-1].message.received_at, page[-1].id)
        if schedule is not None:
            schedule.cursor = after
        if enqueued >= limit:
            break
    return ReconcileReport(found=found, enqueued=enqueued, deferred=deferred, complete=False)


def _log_requeued(record: InboundRecord) -> None:
    log.info(
        "Inbound message enqueued again by the reconciler",
        extra={
            "context": {
                "tenantId": record.tenant_id,
                "providerMessageId": record.provider_message_id,
                "correlationId": record.message.correlation_id,
                "receivedAt": record.message.received_at.isoformat(),
            }
        },
    )
