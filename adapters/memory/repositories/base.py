"""The store's tables, the undo journal, the event log and what every in-memory repository shares.

One lock serialises units of work (serializable isolation: stricter than Postgres' read committed,
which the contract tests allow for). Writes go straight to the store with an undo journal, so a
rollback puts every dict back as it was.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import attrs

from domain.dead_letters import DeadLetter
from domain.delivery import DeliveryReport
from domain.events import Event
from domain.inbound import InboundRecord, InboundStatus
from domain.live_sessions import LiveSession
from domain.outbox import OutboxMessage
from domain.tenants import Seller, Tenant

T = TypeVar("T")
_MISSING = object()


def _copy(obj: T) -> T:
    """A detached copy: what the caller changes does not reach the store until it is saved."""
    clone = copy.copy(obj)
    if hasattr(clone, "events"):
        clone.events = []
    # The fencing token (claimed_attempt, claimed_until) belongs to the claimer's copy only.
    if hasattr(clone, "claimed_attempt"):
        clone.claimed_attempt = None
    if hasattr(clone, "claimed_until"):
        clone.claimed_until = None
    return clone


@attrs.frozen
class EventRow:
    event_type: str
    tenant_id: str | None
    subject_id: str
    payload: dict[str, Any]
    correlation_id: str
    created_at: datetime


class MemoryStore:
    """Every table, as dicts. Shared by the units of work of one process (or one test)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.tenants: dict[str, Tenant] = {}
        self.sellers: dict[tuple[str, str], Seller] = {}
        self.sessions: dict[str, LiveSession] = {}
        self.inbound: dict[tuple[str, str], InboundRecord] = {}
        self.outbox: dict[str, OutboxMessage] = {}
        self.deliveries: dict[str, DeliveryReport] = {}
        self.dead_letters: dict[str, DeadLetter] = {}
        self.events: list[EventRow] = []


class _Journal:
    def __init__(self) -> None:
        self.undo: list[Callable[[], None]] = []

    def put(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        old = table.get(key, _MISSING)

        def restore() -> None:
            if old is _MISSING:
                table.pop(key, None)
            else:
                table[key] = old

        self.undo.append(restore)
        table[key] = value

    def extend(self, rows: list[EventRow], new: Iterable[EventRow]) -> None:
        length = len(rows)
        self.undo.append(lambda: rows.__delitem__(slice(length, None)))
        rows.extend(new)

    def rollback(self) -> None:
        for restore in reversed(self.undo):
            restore()
        self.undo.clear()


class _Repo:
    def __init__(self, store: MemoryStore, journal: _Journal, events: MemoryEventLog) -> None:
        self._store = store
        self._journal = journal
        self._events = events


def _has_waiting(store: MemoryStore, tenant_id: str, since: datetime, until: datetime) -> bool:
    return any(
        r.tenant_id == tenant_id
        and r.status is InboundStatus.RECEIVED
        and since <= r.message.received_at <= until
        for r in store.inbound.values()
    )


class MemoryEventLog:
    def __init__(self, store: MemoryStore, journal: _Journal) -> None:
        self._store = store
        self._journal = journal

    def append(self, events: Iterable[Event]) -> None:
        rows = [
            EventRow(
                event_type=e.event_type,
                tenant_id=e.tenant_id,
                subject_id=e.subject_id,
                payload=e.payload(),
                correlation_id=e.correlation_id,
                created_at=e.occurred_at,
            )
            for e in events
        ]
        if rows:
            self._journal.extend(self._store.events, rows)

    def list(
        self, *, tenant_id: str | None, event_type: str | None = None, limit: int = 1000
    ) -> Sequence[tuple[str, str | None, str, dict[str, object], str]]:
        rows = [
            (r.event_type, r.tenant_id, r.subject_id, dict(r.payload), r.correlation_id)
            for r in self._store.events
            if r.tenant_id == tenant_id and (event_type is None or r.event_type == event_type)
        ]
        return rows[:limit]
