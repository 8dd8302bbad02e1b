"""What an operator checks first, read from the store in one transaction: outbox rows by status
and how late the oldest due one is, recent dead letters, active sessions per tenant.

``livesell stats`` prints it and the metrics endpoint serves it as gauges; the queue's depths come
from the queue itself (``ports.queue_monitor``), read beside these figures.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs

from domain.outbox import OutboxStatus
from ports.clock import Clock
from ports.unit_of_work import UnitOfWorkFactory

LAST_HOUR = timedelta(hours=1)
LAST_DAY = timedelta(days=1)


@attrs.frozen(kw_only=True)
class StoreStats:
    taken_at: datetime
    outbox_by_status: dict[OutboxStatus, int]
    """Every status, zeros included."""
    oldest_due_at: datetime | None
    """When the longest-waiting due outbox message became due; None when nothing is due."""
    dead_letters_last_hour: int
    dead_letters_last_day: int
    dead_letters_not_replayed: int
    active_sessions: dict[str, int]
    """Active live sessions per tenant (tenants with none are left out)."""

    @property
    def outbox_lag(self) -> timedelta:
        """How long the oldest due message has waited (zero when nothing is due): the outbox lag."""
        if self.oldest_due_at is None:
            return timedelta(0)
        return max(self.taken_at - self.oldest_due_at, timedelta(0))

    @property
    def active_sessions_total(self) -> int:
        return sum(self.active_sessions.values())


def read_store_stats(*, uow_factory: UnitOfWorkFactory, clock: Clock) -> StoreStats:
    """Read every figure of ``StoreStats``. Raises StoreUnavailable when the store is down."""
    now = clock.now()
    with uow_factory() as uow:
        counts = uow.outbox.count_by_status()
        oldest = uow.outbox.oldest_due_at(now)
        last_hour = uow.dead_letters.count(since=now - LAST_HOUR)
        last_day = uow.dead_letters.count(since=now - LAST_DAY)
        waiting = uow.dead_letters.count(replayed=False)
        active = uow.sessions.count_active()
    return StoreStats(
        taken_at=now,
        outbox_by_status={status: counts.get(status, 0) for status in OutboxStatus},
        oldest_due_at=oldest,
        dead_letters_last_hour=last_hour,
        dead_letters_last_day=last_day,
        dead_letters_not_replayed=waiting,
        active_sessions=dict(sorted(active.items())),
    )
