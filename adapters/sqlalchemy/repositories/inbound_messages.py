"""The inbound messages repository (``ports.repositories.InboundMessageRepository``)."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import datetime

import sqlalchemy as sa

from adapters.sqlalchemy import mappers
from adapters.sqlalchemy.repositories.base import Repository
from adapters.sqlalchemy.tables import inbound_messages
from domain.inbound import RECEIVED_STATE, InboundRecord, InboundState
from domain.phones import phone_forms, phone_key
from ports.repositories import DuplicateInboundMessage

# Built once (the inbound hot path, ADR 0022): reused statement objects keep their cache key.
_GET = sa.select(inbound_messages).where(
    inbound_messages.c.tenant_id == sa.bindparam("tenant_id"),
    inbound_messages.c.provider_message_id == sa.bindparam("provider_message_id"),
)
_KEYS = ("id", "tenant_id", "provider_message_id")


@functools.cache
def _save_statement(columns: tuple[str, ...], was_without_dead_letter: bool) -> sa.Update:
    """The conditional write of a record's ``columns`` (parameters ``v_<column>``) where it is
    still in the state it was read in (``w_*``), built once per column set and state shape."""
    c = inbound_messages.c
    dead_letter = (
        c.dead_letter_id.is_(None)
        if was_without_dead_letter
        else c.dead_letter_id == sa.bindparam("w_dead_letter_id")
    )
    return (
        sa.update(inbound_messages)
        .where(
            c.tenant_id == sa.bindparam("w_tenant_id"),
            c.provider_message_id == sa.bindparam("w_provider_message_id"),
            c.id == sa.bindparam("w_id"),
            c.status == sa.bindparam("w_status"),
            dead_letter,
        )
        .values({c[name]: sa.bindparam("v_" + name, type_=c[name].type) for name in columns})
    )


class SqlInboundMessageRepository(Repository):
    def get(self, tenant_id: str, provider_message_id: str) -> InboundRecord | None:
        parameters = {"tenant_id": tenant_id, "provider_message_id": provider_message_id}
        row = self._tx.execute(_GET, parameters).first()
        return mappers.inbound_to_domain(row._mapping) if row else None

    def add(self, record: InboundRecord) -> None:
        if not self._insert_ignoring_conflict(inbound_messages, mappers.inbound_to_row(record)):
            raise DuplicateInboundMessage(f"inbound message {record.provider_message_id!r} exists")
        self._tx.add_events(record.pull_events())

    def save(self, record: InboundRecord, *, was: InboundState = RECEIVED_STATE) -> bool:
        values = mappers.inbound_to_row(record)
        parameters = {"v_" + name: value for name, value in values.items() if name not in _KEYS}
        parameters.update(
            w_tenant_id=record.tenant_id,
            w_provider_message_id=record.provider_message_id,
            w_id=record.id,
            w_status=was.status.value,
        )
        if was.dead_letter_id is not None:
            parameters["w_dead_letter_id"] = was.dead_letter_id
        columns = tuple(name for name in values if name not in _KEYS)
        statement = _save_statement(columns, was.dead_letter_id is None)
        applied = self._tx.execute(statement, parameters).rowcount == 1
        events = record.pull_events()
        if applied:
            self._tx.add_events(events)
        return applied

    def list_received_before(
        self, cutoff: datetime, limit: int, *, after: tuple[datetime, str] | None = None
    ) -> Sequence[InboundRecord]:
        c = inbound_messages.c
        statement = sa.select(inbound_messages).where(
            c.status == "received", c.received_at < cutoff
        )
        if after is not None:
            # Spelled out rather than a row-value comparison: SQLite's planner then uses the
            # partial index on received_at too.
            statement = statement.where(
                sa.or_(
                    c.received_at > after[0], sa.and_(c.received_at == after[0], c.id > after[1])
                )
            )
        statement = statement.order_by(c.received_at, c.id).limit(limit)
        return [mappers.inbound_to_domain(r._mapping) for r in self._tx.execute(statement)]

    def has_waiting(self, tenant_id: str, since: datetime, until: datetime) -> bool:
        statement = sa.select(
            sa.select(inbound_messages.c.id)
            .where(
                inbound_messages.c.tenant_id == tenant_id,
                inbound_messages.c.status == "received",
                inbound_messages.c.received_at >= since,
                inbound_messages.c.received_at <= until,
            )
            .exists()
        )
        return bool(self._tx.execute(statement).scalar())

    def last_received_from(
        self, recipients: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], datetime]:
        """One grouped query on ``(tenant_id, from_e164, received_at)``: the pairs asked are
        widened to every form of each number, the rows narrowed back to the pairs asked."""
        if not recipients:
            return {}
        asked: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
        forms: set[str] = set()
        for tenant_id, phone in recipients:
            asked[(tenant_id, phone_key(phone))].append((tenant_id, phone))
            forms |= phone_forms(phone)
        c = inbound_messages.c
        statement = (
            sa.select(c.tenant_id, c.from_e164, sa.func.max(c.received_at).label("last"))
            .where(
                c.tenant_id.in_(sorted({t for t, _ in recipients})),
                c.from_e164.in_(sorted(forms)),
            )
            .group_by(c.tenant_id, c.from_e164)
        )
        last: dict[tuple[str, str], datetime] = {}
        for tenant_id, from_e164, received_at in self._tx.execute(statement):
            for recipient in asked.get((tenant_id, phone_key(from_e164)), ()):
                if recipient not in last or last[recipient] < received_at:
                    last[recipient] = received_at
        return last
