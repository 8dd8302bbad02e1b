"""In-memory outbox and delivery reports."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from adapters.memory.repositories.base import _copy, _Repo
from domain.delivery import DeliveryReport
from domain.outbox import OutboxMessage, OutboxStatus
from domain.recipient_order import paced_recipients, queue_heads, recipient_of
from ports.repositories import AlreadyExists


class MemoryOutboxRepository(_Repo):
    def add(self, message: OutboxMessage) -> None:
        if message.id in self._store.outbox:
            raise AlreadyExists(f"outbox message {message.id!r} exists")
        self._journal.put(self._store.outbox, message.id, _copy(message))
        self._events.append(message.pull_events())

    def get(self, tenant_id: str, message_id: str) -> OutboxMessage | None:
        message = self._store.outbox.get(message_id)
        return _copy(message) if message is not None and message.tenant_id == tenant_id else None

    def claim_due(
        self,
        now: datetime,
        lease: timedelta,
        limit: int,
        recipient_gap: timedelta = timedelta(0),
    ) -> Sequence[OutboxMessage]:
        """Fair across tenants (round-robin by depth), only the head of each recipient's queue
        (ADR 0020), and not within ``recipient_gap`` of the recipient's last send (ADR 0025), as
        the SQL claim."""
        messages = self._store.outbox.values()
        paced = paced_recipients(messages, now, recipient_gap)
        heads = queue_heads(messages).values()
        due = [m for m in heads if m.is_due(now) and recipient_of(m) not in paced]
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
