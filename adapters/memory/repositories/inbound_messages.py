"""In-memory inbound messages."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import datetime

from adapters.memory.repositories.base import _copy, _has_waiting, _Repo
from domain.inbound import RECEIVED_STATE, InboundRecord, InboundState, InboundStatus
from domain.phones import phone_key
from ports.repositories import DuplicateInboundMessage


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
