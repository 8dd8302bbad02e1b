"""The in-memory store and its unit of work.

One lock serialises units of work (serializable isolation: stricter than Postgres' read committed,
which the contract tests allow for). Writes go straight to the store with an undo journal, so a
rollback puts every dict back as it was.
"""

from __future__ import annotations

import copy
import threading
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

import attrs

from domain.dead_letters import DeadLetter, DeadLetterSource
from domain.delivery import DeliveryReport
from domain.errors import UnknownTenant
from domain.events import Event
from domain.inbound import RECEIVED_STATE, InboundRecord, InboundState, InboundStatus
from domain.live_sessions import LiveSession, SessionStatus
from domain.outbox import OutboxMessage, OutboxStatus
from domain.phones import phone_key
from domain.recipient_order import queue_heads
from domain.senders import SenderType
from domain.tenants import Seller, Tenant
from ports.repositories import (
    ActiveSessionExists,
    AlreadyExists,
    DuplicateInboundMessage,
    InboundFacts,
)

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


class MemoryTenantRepository(_Repo):
    def get(self, tenant_id: str) -> Tenant | None:
        return self._store.tenants.get(tenant_id)

    def find_by_whatsapp_number(self, number_e164: str) -> Tenant | None:
        for tenant in self._store.tenants.values():
            if tenant.whatsapp_number == number_e164:
                return tenant
        return None

    def find_by_meta_phone_number_id(self, phone_number_id: str) -> Tenant | None:
        for tenant in self._store.tenants.values():
            if tenant.meta_phone_number_id == phone_number_id:
                return tenant
        return None

    def add(self, tenant: Tenant) -> None:
        if tenant.id in self._store.tenants:
            raise AlreadyExists(f"tenant {tenant.id!r} already exists")
        if tenant.whatsapp_number and self.find_by_whatsapp_number(tenant.whatsapp_number):
            raise AlreadyExists("another tenant already uses this WhatsApp number")
        if tenant.meta_phone_number_id and self.find_by_meta_phone_number_id(
            tenant.meta_phone_number_id
        ):
            raise AlreadyExists("another tenant already uses this Meta phone-number id")
        self._journal.put(self._store.tenants, tenant.id, tenant)

    def list(self) -> Sequence[Tenant]:
        return sorted(self._store.tenants.values(), key=lambda t: t.id)

    def get_many(self, tenant_ids: Collection[str]) -> dict[str, Tenant]:
        return {i: self._store.tenants[i] for i in tenant_ids if i in self._store.tenants}

    def update_window_policy(self, tenant: Tenant) -> bool:
        stored = self._store.tenants.get(tenant.id)
        if stored is None:
            return False
        changed = attrs.evolve(
            stored,
            window_policy=tenant.window_policy,
            fallback_content_sid=tenant.fallback_content_sid,
            fallback_variable=tenant.fallback_variable,
        )
        self._journal.put(self._store.tenants, tenant.id, changed)
        return True


class MemorySellerDirectory(_Repo):
    """Sellers keyed by ``(tenant_id, phone_key)``, the unique key of the sellers table."""

    def find_by_key(self, tenant_id: str, phone_key: str) -> Seller | None:
        return self._store.sellers.get((tenant_id, phone_key))

    def add(self, seller: Seller) -> None:
        key = (seller.tenant_id, seller.phone_key)
        if seller.tenant_id not in self._store.tenants:
            raise UnknownTenant(seller.tenant_id)
        if key in self._store.sellers:
            raise AlreadyExists("the tenant already has a seller with this phone")
        self._journal.put(self._store.sellers, key, seller)

    def list(self, tenant_id: str) -> Sequence[Seller]:
        return [s for (t, _), s in self._store.sellers.items() if t == tenant_id]


class MemoryLiveSessionRepository(_Repo):
    def get(self, tenant_id: str, session_id: str) -> LiveSession | None:
        session = self._store.sessions.get(session_id)
        return _copy(session) if session is not None and session.tenant_id == tenant_id else None

    def get_active(self, tenant_id: str) -> LiveSession | None:
        for session in self._store.sessions.values():
            if session.tenant_id == tenant_id and session.status is SessionStatus.ACTIVE:
                return _copy(session)
        return None

    def add(self, session: LiveSession) -> None:
        if session.is_active and self.get_active(session.tenant_id) is not None:
            raise ActiveSessionExists(f"tenant {session.tenant_id!r} already has an active session")
        self._journal.put(self._store.sessions, session.id, _copy(session))
        self._events.append(session.pull_events())

    def touch(
        self, tenant_id: str, session_id: str, now: datetime, sender: SenderType
    ) -> LiveSession | None:
        stored = self._store.sessions.get(session_id)
        if stored is None or stored.tenant_id != tenant_id or not stored.is_active:
            return None
        updated = _copy(stored)
        updated.touch(now, sender)
        self._journal.put(self._store.sessions, session_id, updated)
        return _copy(updated)

    def close(self, session: LiveSession) -> bool:
        stored = self._store.sessions.get(session.id)
        if (
            stored is None
            or stored.tenant_id != session.tenant_id
            or not stored.is_active
            or stored.last_activity_at != session.last_activity_at
            or stored.seller_message_count != session.seller_message_count
            or stored.client_message_count != session.client_message_count
        ):
            session.pull_events()
            return False
        self._journal.put(self._store.sessions, session.id, _copy(session))
        self._events.append(session.pull_events())
        return True

    def claim_stale(self, cutoff: datetime, limit: int, window: timedelta) -> Sequence[LiveSession]:
        stale = [
            s
            for s in self._store.sessions.values()
            if s.is_active
            and s.last_activity_at < cutoff
            and not _has_waiting(
                self._store, s.tenant_id, s.started_at, s.last_activity_at + window
            )
        ]
        stale.sort(key=lambda s: (s.last_activity_at, s.id))
        return [_copy(s) for s in stale[:limit]]

    def count_active(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for session in self._store.sessions.values():
            if session.is_active:
                counts[session.tenant_id] += 1
        return dict(counts)


class MemoryInboundMessageRepository(_Repo):
    def get(self, tenant_id: str, provider_message_id: str) -> InboundRecord | None:
        record = self._store.inbound.get((tenant_id, provider_message_id))
        return _copy(record) if record is not None else None

    def add(self, record: InboundRecord) -> None:
        key = (record.tenant_id, record.provider_message_id)
        if key in self._store.inbound:
            raise DuplicateInboundMessage(f"inbound message {record.provider_message_id!r} exists")
        self._journal.put(self._store.inbound, key, _copy(record))
        self._events.append(record.pull_events())

    def save(self, record: InboundRecord, *, was: InboundState = RECEIVED_STATE) -> bool:
        key = (record.tenant_id, record.provider_message_id)
        stored = self._store.inbound.get(key)
        if stored is None or stored.id != record.id or stored.state != was:
            record.pull_events()
            return False
        self._journal.put(self._store.inbound, key, _copy(record))
        self._events.append(record.pull_events())
        return True

    def list_received_before(
        self, cutoff: datetime, limit: int, *, after: tuple[datetime, str] | None = None
    ) -> Sequence[InboundRecord]:
        rows = [
            r
            for r in self._store.inbound.values()
            if r.status is InboundStatus.RECEIVED
            and r.message.received_at < cutoff
            and (after is None or (r.message.received_at, r.id) > after)
        ]
        rows.sort(key=lambda r: (r.message.received_at, r.id))
        return [_copy(r) for r in rows[:limit]]

    def has_waiting(self, tenant_id: str, since: datetime, until: datetime) -> bool:
        return _has_waiting(self._store, tenant_id, since, until)

    def last_received_from(
        self, recipients: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], datetime]:
        asked: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
        for tenant_id, phone in recipients:
            asked[(tenant_id, phone_key(phone))].append((tenant_id, phone))
        last: dict[tuple[str, str], datetime] = {}
        for r in self._store.inbound.values():
            for recipient in asked.get((r.tenant_id, phone_key(r.from_e164 or "")), ()):
                if recipient not in last or last[recipient] < r.message.received_at:
                    last[recipient] = r.message.received_at
        return last


def _has_waiting(store: MemoryStore, tenant_id: str, since: datetime, until: datetime) -> bool:
    return any(
        r.tenant_id == tenant_id
        and r.status is InboundStatus.RECEIVED
        and since <= r.message.received_at <= until
        for r in store.inbound.values()
    )


class MemoryOutboxRepository(_Repo):
    def add(self, message: OutboxMessage) -> None:
        if message.id in self._store.outbox:
            raise AlreadyExists(f"outbox message {message.id!r} exists")
        self._journal.put(self._store.outbox, message.id, _copy(message))
        self._events.append(message.pull_events())

    def get(self, tenant_id: str, message_id: str) -> OutboxMessage | None:
        message = self._store.outbox.get(message_id)
        return _copy(message) if message is not None and message.tenant_id == tenant_id else None

    def claim_due(self, now: datetime, lease: timedelta, limit: int) -> Sequence[OutboxMessage]:
        """Fair across tenants (round-robin by depth), and only the head of each recipient's
        queue (ADR 0020), as the SQL claim."""
        heads = queue_heads(self._store.outbox.values()).values()
        due = [m for m in heads if m.is_due(now)]
        due.sort(key=lambda m: (_due_since(m), m.id))
        by_tenant: dict[str, list[OutboxMessage]] = defaultdict(list)
        for message in due:
            by_tenant[message.tenant_id].append(message)
        picked: list[OutboxMessage] = []
        queues = list(by_tenant.values())
        depth = 0
        while len(picked) < limit and any(depth < len(q) for q in queues):
            picked.extend(q[depth] for q in queues if depth < len(q))
            depth += 1
        claimed = []
        for stored in picked[:limit]:
            message = _copy(stored)
            message.claim(now, lease)
            self._journal.put(self._store.outbox, message.id, _copy(message))
            claimed.append(message)
        return claimed

    def save_outcome(self, message: OutboxMessage) -> bool:
        stored = self._store.outbox.get(message.id)
        if (
            stored is None
            or stored.tenant_id != message.tenant_id
            or stored.status is not OutboxStatus.SENDING
            or stored.attempts != message.claimed_attempt
            or stored.locked_until != message.claimed_until
        ):
            message.pull_events()
            return False
        self._journal.put(self._store.outbox, message.id, _copy(message))
        self._events.append(message.pull_events())
        return True

    def save_outcomes(self, messages: Sequence[OutboxMessage]) -> list[bool]:
        return [self.save_outcome(message) for message in messages]

    def requeue(self, message: OutboxMessage) -> bool:
        stored = self._store.outbox.get(message.id)
        if stored is None or stored.tenant_id != message.tenant_id:
            return False
        if stored.status is not OutboxStatus.DEAD:
            return False
        self._journal.put(self._store.outbox, message.id, _copy(message))
        return True

    def count_by_status(self) -> dict[OutboxStatus, int]:
        counts: dict[OutboxStatus, int] = defaultdict(int)
        for message in self._store.outbox.values():
            counts[message.status] += 1
        return dict(counts)

    def oldest_due_at(self, now: datetime) -> datetime | None:
        due = [_due_since(m) for m in self._store.outbox.values() if m.is_due(now)]
        return min(due) if due else None

    def record_delivery_status(
        self, tenant_id: str, message_id: str, report: DeliveryReport
    ) -> bool:
        stored = self._store.outbox.get(message_id)
        if stored is None or stored.tenant_id != tenant_id:
            return False
        merged = report.merged_into(self._store.deliveries.get(message_id))
        if merged is None:
            return False
        self._journal.put(self._store.deliveries, message_id, merged)
        return True

    def find_by_provider_message_id(self, tenant_id: str, provider_message_id: str) -> str | None:
        for message in self._store.outbox.values():
            if (message.tenant_id, message.provider_message_id) == (tenant_id, provider_message_id):
                return message.id
        return None

    def locate_provider_message(self, provider_message_id: str) -> tuple[str, str] | None:
        found = [
            (m.tenant_id, m.id)
            for m in self._store.outbox.values()
            if m.provider_message_id == provider_message_id
        ]
        return found[0] if len(found) == 1 else None

    def delivery_report(self, tenant_id: str, message_id: str) -> DeliveryReport | None:
        stored = self._store.outbox.get(message_id)
        if stored is None or stored.tenant_id != tenant_id:
            return None
        return self._store.deliveries.get(message_id)


def _due_since(message: OutboxMessage) -> datetime:
    if message.status is OutboxStatus.SENDING and message.locked_until is not None:
        return message.locked_until
    return message.next_attempt_at


class MemoryDeadLetterRepository(_Repo):
    def add(self, dead_letter: DeadLetter) -> None:
        self._journal.put(self._store.dead_letters, dead_letter.id, _copy(dead_letter))

    def get(self, dead_letter_id: str) -> DeadLetter | None:
        found = self._store.dead_letters.get(dead_letter_id)
        return _copy(found) if found is not None else None

    def list(
        self,
        *,
        tenant_id: str | None = None,
        source: DeadLetterSource | None = None,
        since: datetime | None = None,
        limit: int = 100,
        replayed: bool | None = None,
    ) -> Sequence[DeadLetter]:
        rows = [
            d
            for d in self._store.dead_letters.values()
            if (tenant_id is None or d.tenant_id == tenant_id)
            and (source is None or d.source is source)
            and (since is None or d.created_at >= since)
            and (replayed is None or d.replayed is replayed)
        ]
        rows.sort(key=lambda d: (d.created_at, d.id), reverse=True)
        return [_copy(d) for d in rows[:limit]]

    def count(self, *, since: datetime | None = None, replayed: bool | None = None) -> int:
        return sum(
            1
            for d in self._store.dead_letters.values()
            if (since is None or d.created_at >= since)
            and (replayed is None or d.replayed is replayed)
        )

    def mark_replayed(self, dead_letter: DeadLetter) -> bool:
        stored = self._store.dead_letters.get(dead_letter.id)
        if stored is None or stored.replayed_at is not None or dead_letter.replayed_at is None:
            return False
        self._journal.put(self._store.dead_letters, dead_letter.id, _copy(dead_letter))
        return True

    def find_open(
        self, source: DeadLetterSource, tenant_id: str | None, source_id: str
    ) -> DeadLetter | None:
        found = [
            d
            for d in self._store.dead_letters.values()
            if d.source is source
            and d.tenant_id == tenant_id
            and d.source_id == source_id
            and not d.replayed
        ]
        return _copy(max(found, key=lambda d: (d.created_at, d.id))) if found else None


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


class MemoryInboundLookup:
    """The three reads of the unit of work's own repositories (so a test's substitute of one of
    them is what the lookup reads)."""

    def __init__(self, uow: MemoryUnitOfWork) -> None:
        self._uow = uow

    def inbound_facts(
        self, tenant_id: str, provider_message_id: str, phone_key: str
    ) -> InboundFacts:
        return InboundFacts(
            record=self._uow.inbound.get(tenant_id, provider_message_id),
            seller=self._uow.sellers.find_by_key(tenant_id, phone_key),
            active_session=self._uow.sessions.get_active(tenant_id),
        )


class MemoryUnitOfWork:
    """``with uow:`` holds the store's lock; leaving without ``commit()`` undoes every write."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._journal = _Journal()
        self.events = MemoryEventLog(store, self._journal)
        parts = (store, self._journal, self.events)
        self.tenants = MemoryTenantRepository(*parts)
        self.sellers = MemorySellerDirectory(*parts)
        self.sessions = MemoryLiveSessionRepository(*parts)
        self.inbound = MemoryInboundMessageRepository(*parts)
        self.outbox = MemoryOutboxRepository(*parts)
        self.dead_letters = MemoryDeadLetterRepository(*parts)
        self.lookups = MemoryInboundLookup(self)

    def __enter__(self) -> Self:
        self._store.lock.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.rollback()
        finally:
            self._store.lock.release()

    def commit(self) -> None:
        self._journal.undo.clear()

    def rollback(self) -> None:
        self._journal.rollback()


class MemoryUnitOfWorkFactory:
    """Makes units of work over one shared store."""

    def __init__(self, store: MemoryStore | None = None) -> None:
        self.store = store or MemoryStore()

    def __call__(self) -> MemoryUnitOfWork:
        return MemoryUnitOfWork(self.store)
