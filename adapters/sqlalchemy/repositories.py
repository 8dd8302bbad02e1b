"""One repository per port of ``ports.repositories``, on Core statements.

They behave exactly like ``adapters.memory.store`` (the contract suites in ``tests/contract`` run
both). Every statement names ``tenant_id`` except the system scans the ports document as such.
Conditional writes are single ``UPDATE ... WHERE <expected state>`` statements whose row count
says whether they applied; inserts that may lose a race use ``ON CONFLICT DO NOTHING`` (or a
SAVEPOINT), so the transaction stays usable for the caller to read the winner.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from adapters.sqlalchemy import mappers
from adapters.sqlalchemy.tables import (
    SENDING,
    WAITING,
    dead_letter_jobs,
    event_logs,
    inbound_messages,
    live_sessions,
    messages_out,
    sellers,
    tenants,
)
from adapters.sqlalchemy.transaction import Transaction
from adapters.sqlalchemy.types import UtcDateTime
from domain.dead_letters import DeadLetter, DeadLetterSource
from domain.delivery import DeliveryReport, DeliveryStatus
from domain.events import Event
from domain.inbound import RECEIVED_STATE, InboundRecord, InboundState
from domain.live_sessions import LiveSession
from domain.outbox import OutboxMessage, OutboxStatus
from domain.senders import SenderType
from domain.tenants import Seller, Tenant
from ports.repositories import ActiveSessionExists, AlreadyExists, DuplicateInboundMessage

CANDIDATES_PER_TENANT = 4
"""The Postgres due claim reads up to ``limit * CANDIDATES_PER_TENANT`` due rows per tenant and
locks ``limit`` of them, skipping rows other claimers hold: enough head room for that many
concurrent claimers of one tenant's backlog to each fill a batch."""


class _Repository:
    def __init__(self, tx: Transaction) -> None:
        self._tx = tx

    def _insert_ignoring_conflict(self, table: sa.Table, row: dict[str, Any]) -> bool:
        """INSERT ... ON CONFLICT DO NOTHING: True if the row was stored, False on a unique
        conflict (the statement waits for a concurrent inserter to finish, then gives way)."""
        statement = _insert_ignoring_conflict_statement(table, tuple(sorted(row)))
        return self._tx.execute(statement, row).first() is not None


@functools.cache
def _insert_ignoring_conflict_statement(table: sa.Table, columns: tuple[str, ...]) -> sa.TextClause:
    """The statement for rows with these ``columns``, built once. SQLAlchemy never caches the
    compiled form of the dialects' ``insert().on_conflict_do_nothing()`` (their ``Insert`` has
    ``inherit_cache = False``): compiling it cost about 0.5 ms per insert, more than the round
    trip. A text statement with typed parameters compiles once. Postgres and SQLite (3.35+)
    share the syntax."""
    key = next(iter(table.primary_key.columns)).name
    sql = (
        f"INSERT INTO {table.name} ({', '.join(columns)})"
        f" VALUES ({', '.join(':' + name for name in columns)})"
        f" ON CONFLICT DO NOTHING RETURNING {key}"
    )
    return sa.text(sql).bindparams(
        *(sa.bindparam(name, type_=table.c[name].type) for name in columns)
    )


class SqlTenantRepository(_Repository):
    def get(self, tenant_id: str) -> Tenant | None:
        row = self._tx.execute(sa.select(tenants).where(tenants.c.id == tenant_id)).first()
        return mappers.tenant_to_domain(row._mapping) if row else None

    def find_by_whatsapp_number(self, number_e164: str) -> Tenant | None:
        """The webhook's lookup of a tenant by the number a message was sent to (all tenants)."""
        statement = sa.select(tenants).where(tenants.c.whatsapp_number == number_e164)
        row = self._tx.execute(statement).first()
        return mappers.tenant_to_domain(row._mapping) if row else None

    def add(self, tenant: Tenant) -> None:
        try:
            with self._tx.savepoint():
                self._tx.execute(sa.insert(tenants).values(mappers.tenant_to_row(tenant)))
        except sa_exc.IntegrityError as exc:
            if self.get(tenant.id) is not None:
                raise AlreadyExists(f"tenant {tenant.id!r} already exists") from exc
            raise AlreadyExists("another tenant already uses this WhatsApp number") from exc

    def list(self) -> Sequence[Tenant]:
        rows = self._tx.execute(sa.select(tenants).order_by(tenants.c.id))
        return [mappers.tenant_to_domain(r._mapping) for r in rows]


class SqlSellerDirectory(_Repository):
    def find_by_key(self, tenant_id: str, phone_key: str) -> Seller | None:
        statement = sa.select(sellers).where(
            sellers.c.tenant_id == tenant_id, sellers.c.phone_key == phone_key
        )
        row = self._tx.execute(statement).first()
        return mappers.seller_to_domain(row._mapping) if row else None

    def add(self, seller: Seller) -> None:
        try:
            with self._tx.savepoint():
                self._tx.execute(sa.insert(sellers).values(mappers.seller_to_row(seller)))
        except sa_exc.IntegrityError as exc:
            exists = sa.select(tenants.c.id).where(tenants.c.id == seller.tenant_id)
            if self._tx.execute(exists).first() is None:
                raise AlreadyExists(f"tenant {seller.tenant_id!r} does not exist") from exc
            raise AlreadyExists("the tenant already has a seller with this phone") from exc

    def list(self, tenant_id: str) -> Sequence[Seller]:
        statement = (
            sa.select(sellers)
            .where(sellers.c.tenant_id == tenant_id)
            .order_by(sellers.c.created_at, sellers.c.id)
        )
        return [mappers.seller_to_domain(r._mapping) for r in self._tx.execute(statement)]


class SqlLiveSessionRepository(_Repository):
    def get(self, tenant_id: str, session_id: str) -> LiveSession | None:
        statement = sa.select(live_sessions).where(
            live_sessions.c.id == session_id, live_sessions.c.tenant_id == tenant_id
        )
        row = self._tx.execute(statement).first()
        return mappers.session_to_domain(row._mapping) if row else None

    def get_active(self, tenant_id: str) -> LiveSession | None:
        statement = sa.select(live_sessions).where(
            live_sessions.c.tenant_id == tenant_id, live_sessions.c.status == "active"
        )
        row = self._tx.execute(statement).first()
        return mappers.session_to_domain(row._mapping) if row else None

    def add(self, session: LiveSession) -> None:
        if not self._insert_ignoring_conflict(live_sessions, mappers.session_to_row(session)):
            if session.is_active:
                raise ActiveSessionExists(
                    f"tenant {session.tenant_id!r} already has an active session"
                )
            raise AlreadyExists(f"live session {session.id!r} exists")
        self._tx.add_events(session.pull_events())

    def touch(
        self, tenant_id: str, session_id: str, now: datetime, sender: SenderType
    ) -> LiveSession | None:
        instant = sa.literal(now, UtcDateTime())
        greatest, least = (
            (sa.func.greatest, sa.func.least)
            if self._tx.is_postgres
            else (sa.func.max, sa.func.min)
        )
        later = greatest(live_sessions.c.last_activity_at, instant)
        earlier = least(live_sessions.c.started_at, instant)
        counter = (
            live_sessions.c.seller_message_count
            if sender is SenderType.SELLER
            else live_sessions.c.client_message_count
        )
        statement = (
            sa.update(live_sessions)
            .where(
                live_sessions.c.id == session_id,
                live_sessions.c.tenant_id == tenant_id,
                live_sessions.c.status == "active",
            )
            .values(
                {
                    live_sessions.c.last_activity_at: later,
                    live_sessions.c.started_at: earlier,
                    counter: counter + 1,
                }
            )
            .returning(*live_sessions.c)
        )
        row = self._tx.execute(statement).first()
        return mappers.session_to_domain(row._mapping) if row else None

    def close(self, session: LiveSession) -> bool:
        statement = (
            sa.update(live_sessions)
            .where(
                live_sessions.c.id == session.id,
                live_sessions.c.tenant_id == session.tenant_id,
                live_sessions.c.status == "active",
                live_sessions.c.last_activity_at == session.last_activity_at,
                live_sessions.c.seller_message_count == session.seller_message_count,
                live_sessions.c.client_message_count == session.client_message_count,
            )
            .values(
                status=session.status.value,
                closed_at=session.closed_at,
                close_reason=session.close_reason.value if session.close_reason else None,
            )
        )
        return self._stored_if(self._tx.execute(statement).rowcount == 1, session.pull_events())

    def claim_stale(self, cutoff: datetime, limit: int, window: timedelta) -> Sequence[LiveSession]:
        """System scan. Postgres locks the rows (``FOR UPDATE SKIP LOCKED``): a concurrent
        closing job gets other sessions, and a touch of a claimed session waits for this
        transaction, then finds it closed. SQLite's single writer gives the same. Sessions with
        messages still waiting inside their window are left out (a correlated NOT EXISTS)."""
        waiting = inbound_messages.alias("waiting")
        if self._tx.is_postgres:
            inside = waiting.c.received_at <= live_sessions.c.last_activity_at + sa.bindparam(
                "window", window, type_=sa.Interval()
            )
        else:
            # SQLite keeps instants as fixed-width text: compare them as Julian days.
            days = window.total_seconds() / 86400
            inside = sa.func.julianday(waiting.c.received_at) <= (
                sa.func.julianday(live_sessions.c.last_activity_at) + days
            )
        blocked = (
            sa.select(sa.literal(1))
            .where(
                waiting.c.tenant_id == live_sessions.c.tenant_id,
                waiting.c.status == "received",
                waiting.c.received_at >= live_sessions.c.started_at,
                inside,
            )
            .exists()
        )
        statement = (
            sa.select(live_sessions)
            .where(
                live_sessions.c.status == "active",
                live_sessions.c.last_activity_at < cutoff,
                ~blocked,
            )
            .order_by(live_sessions.c.last_activity_at, live_sessions.c.id)
            .limit(limit)
        )
        if self._tx.is_postgres:
            statement = statement.with_for_update(skip_locked=True)
        return [mappers.session_to_domain(r._mapping) for r in self._tx.execute(statement)]

    def count_active(self) -> dict[str, int]:
        statement = (
            sa.select(live_sessions.c.tenant_id, sa.func.count())
            .where(live_sessions.c.status == "active")
            .group_by(live_sessions.c.tenant_id)
        )
        return {str(tenant_id): int(count) for tenant_id, count in self._tx.execute(statement)}

    def _stored_if(self, applied: bool, events: Iterable[Event]) -> bool:
        if applied:
            self._tx.add_events(events)
        return applied


class SqlInboundMessageRepository(_Repository):
    def get(self, tenant_id: str, provider_message_id: str) -> InboundRecord | None:
        statement = sa.select(inbound_messages).where(
            inbound_messages.c.tenant_id == tenant_id,
            inbound_messages.c.provider_message_id == provider_message_id,
        )
        row = self._tx.execute(statement).first()
        return mappers.inbound_to_domain(row._mapping) if row else None

    def add(self, record: InboundRecord) -> None:
        if not self._insert_ignoring_conflict(inbound_messages, mappers.inbound_to_row(record)):
            raise DuplicateInboundMessage(f"inbound message {record.provider_message_id!r} exists")
        self._tx.add_events(record.pull_events())

    def save(self, record: InboundRecord, *, was: InboundState = RECEIVED_STATE) -> bool:
        values = mappers.inbound_to_row(record)
        for key in ("id", "tenant_id", "provider_message_id"):
            del values[key]
        column = inbound_messages.c.dead_letter_id
        statement = (
            sa.update(inbound_messages)
            .where(
                inbound_messages.c.tenant_id == record.tenant_id,
                inbound_messages.c.provider_message_id == record.provider_message_id,
                inbound_messages.c.id == record.id,
                inbound_messages.c.status == was.status.value,
                column.is_(None) if was.dead_letter_id is None else column == was.dead_letter_id,
            )
            .values(values)
        )
        applied = self._tx.execute(statement).rowcount == 1
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


_DUE_SINCE = sa.case((SENDING, messages_out.c.locked_until), else_=messages_out.c.next_attempt_at)


def _is_due(now: datetime) -> sa.ColumnElement[bool]:
    """SPEC §3: waiting and due, or being sent under a lease that has passed."""
    return sa.or_(
        sa.and_(WAITING, messages_out.c.next_attempt_at <= now),
        sa.and_(SENDING, messages_out.c.locked_until < now),
    )


_CLAIM_POSTGRES = sa.text(
    """
WITH candidates AS (
    SELECT c.id, c.tenant_id, c.due_since,
           row_number() OVER (PARTITION BY c.tenant_id ORDER BY c.due_since, c.id) AS depth
      FROM tenants AS t
     CROSS JOIN LATERAL (
           (SELECT m.id, m.tenant_id, m.next_attempt_at AS due_since
              FROM messages_out AS m
             WHERE m.tenant_id = t.id AND m.status IN ('pending', 'failed')
               AND m.next_attempt_at <= :now
             ORDER BY m.next_attempt_at, m.id
             LIMIT :per_tenant)
           UNION ALL
           (SELECT m.id, m.tenant_id, m.locked_until AS due_since
              FROM messages_out AS m
             WHERE m.tenant_id = t.id AND m.status = 'sending' AND m.locked_until < :now
             ORDER BY m.locked_until, m.id
             LIMIT :per_tenant)
     ) AS c
),
ranked AS (
    SELECT id, depth,
           first_value(due_since) OVER tenant_queue AS tenant_due,
           first_value(id) OVER tenant_queue AS tenant_first
      FROM candidates
    WINDOW tenant_queue AS (PARTITION BY tenant_id ORDER BY depth)
),
picked AS MATERIALIZED (
    SELECT m.id, r.depth, r.tenant_due, r.tenant_first
      FROM messages_out AS m
      JOIN ranked AS r ON r.id = m.id
     WHERE (m.status IN ('pending', 'failed') AND m.next_attempt_at <= :now)
        OR (m.status = 'sending' AND m.locked_until < :now)
     ORDER BY r.depth, r.tenant_due, r.tenant_first
     LIMIT :limit
       FOR UPDATE OF m SKIP LOCKED
)
UPDATE messages_out AS m
   SET status = 'sending',
       locked_until = :locked_until,
       attempts = m.attempts + 1,
       updated_at = :now
  FROM picked AS p
 WHERE m.id = p.id
RETURNING m.*, p.depth, p.tenant_due, p.tenant_first
"""
).bindparams(
    sa.bindparam("now", type_=UtcDateTime()),
    sa.bindparam("locked_until", type_=UtcDateTime()),
    sa.bindparam("per_tenant", type_=sa.Integer()),
    sa.bindparam("limit", type_=sa.Integer()),
)
"""One round trip. Each tenant's due queue is read through its partial index (a LATERAL per
tenant), ranked round-robin across tenants (depth first, then the tenant whose head waited
longest), and the first ``limit`` rows are locked with SKIP LOCKED and claimed."""


_OUTCOME_ARRAYS = (
    ("id", "text"),
    ("tenant_id", "text"),
    ("claimed_attempt", "integer"),
    ("claimed_until", "timestamptz"),
    ("status", "text"),
    ("attempts", "integer"),
    ("next_attempt_at", "timestamptz"),
    ("locked_until", "timestamptz"),
    ("last_error", "text"),
    ("last_error_code", "text"),
    ("provider_message_id", "text"),
    ("updated_at", "timestamptz"),
    ("sent_at", "timestamptz"),
    ("rate_limited_since", "timestamptz"),
)
_OUTCOME_FIELDS = (
    "status",
    "attempts",
    "next_attempt_at",
    "locked_until",
    "last_error",
    "last_error_code",
    "provider_message_id",
    "updated_at",
    "sent_at",
    "rate_limited_since",
)
_SAVE_OUTCOMES = sa.text(
    "UPDATE messages_out AS m SET "
    + ", ".join(f"{name} = v.{name}" for name in _OUTCOME_FIELDS)
    + " FROM unnest("
    + ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in _OUTCOME_ARRAYS)
    + ") AS v("
    + ", ".join(name for name, _ in _OUTCOME_ARRAYS)
    + ") WHERE m.id = v.id AND m.tenant_id = v.tenant_id AND m.status = 'sending'"
    " AND m.attempts = v.claimed_attempt AND m.locked_until = v.claimed_until"
    " RETURNING m.id"
)


class SqlOutboxRepository(_Repository):
    def add(self, message: OutboxMessage) -> None:
        if not self._insert_ignoring_conflict(messages_out, mappers.outbox_to_row(message)):
            raise AlreadyExists(f"outbox message {message.id!r} exists")
        self._tx.add_events(message.pull_events())

    def get(self, tenant_id: str, message_id: str) -> OutboxMessage | None:
        statement = sa.select(messages_out).where(
            messages_out.c.id == message_id, messages_out.c.tenant_id == tenant_id
        )
        row = self._tx.execute(statement).first()
        return mappers.outbox_to_domain(row._mapping) if row else None

    def claim_due(self, now: datetime, lease: timedelta, limit: int) -> Sequence[OutboxMessage]:
        """System claim, fair across tenants: round-robin over each tenant's due queue (oldest
        first), as the memory store does. Postgres: one statement with SKIP LOCKED; SQLite: the
        same ranking in two statements under its single writer."""
        if limit < 1:
            return []
        if self._tx.is_postgres:
            rows = self._tx.execute(
                _CLAIM_POSTGRES.columns(
                    *messages_out.c,
                    sa.column("depth", sa.Integer),
                    sa.column("tenant_due", UtcDateTime),
                    sa.column("tenant_first", sa.Text),
                ),
                {
                    "now": now,
                    "locked_until": now + lease,
                    "per_tenant": limit * CANDIDATES_PER_TENANT,
                    "limit": limit,
                },
            ).all()
            rows = sorted(rows, key=lambda r: (r.depth, r.tenant_due, r.tenant_first))
            return [mappers.outbox_to_domain(r._mapping, claimed=True) for r in rows]
        return self._claim_due_single_writer(now, lease, limit)

    def _claim_due_single_writer(
        self, now: datetime, lease: timedelta, limit: int
    ) -> Sequence[OutboxMessage]:
        queue_order = (_DUE_SINCE, messages_out.c.id)
        due = (
            sa.select(
                messages_out.c.id,
                messages_out.c.tenant_id,
                sa.func.row_number()
                .over(partition_by=messages_out.c.tenant_id, order_by=queue_order)
                .label("depth"),
                sa.func.first_value(_DUE_SINCE)
                .over(partition_by=messages_out.c.tenant_id, order_by=queue_order)
                .label("tenant_due"),
                sa.func.first_value(messages_out.c.id)
                .over(partition_by=messages_out.c.tenant_id, order_by=queue_order)
                .label("tenant_first"),
            )
            .where(_is_due(now))
            .subquery()
        )
        picked = (
            sa.select(due.c.id)
            .order_by(due.c.depth, due.c.tenant_due, due.c.tenant_first)
            .limit(limit)
        )
        ids = list(self._tx.execute(picked).scalars())
        if not ids:
            return []
        statement = (
            sa.update(messages_out)
            .where(messages_out.c.id.in_(ids), _is_due(now))
            .values(
                status=OutboxStatus.SENDING.value,
                locked_until=now + lease,
                attempts=messages_out.c.attempts + 1,
                updated_at=now,
            )
            .returning(*messages_out.c)
        )
        by_id = {r.id: r for r in self._tx.execute(statement)}
        return [
            mappers.outbox_to_domain(by_id[i]._mapping, claimed=True) for i in ids if i in by_id
        ]

    def save_outcome(self, message: OutboxMessage) -> bool:
        if message.claimed_attempt is None or message.claimed_until is None:
            message.pull_events()
            return False
        values = mappers.outbox_to_row(message)
        del values["id"], values["tenant_id"]
        statement = (
            sa.update(messages_out)
            .where(
                messages_out.c.id == message.id,
                messages_out.c.tenant_id == message.tenant_id,
                messages_out.c.status == OutboxStatus.SENDING.value,
                messages_out.c.attempts == message.claimed_attempt,
                messages_out.c.locked_until == message.claimed_until,
            )
            .values(values)
        )
        applied = self._tx.execute(statement).rowcount == 1
        events = message.pull_events()
        if applied:
            self._tx.add_events(events)
        return applied

    def save_outcomes(self, messages: Sequence[OutboxMessage]) -> list[bool]:
        """One statement for the whole group on Postgres: ``UPDATE … FROM unnest(arrays)``, whose
        text never changes, so it is compiled once (the sender's hot path; ADR 0006)."""
        fenced = [m for m in messages if m.claimed_attempt is not None and m.claimed_until]
        if not self._tx.is_postgres or len(fenced) < 2:
            return [self.save_outcome(message) for message in messages]
        columns: dict[str, list[Any]] = {name: [] for name, _ in _OUTCOME_ARRAYS}
        for m in fenced:
            for name, value in (
                ("id", m.id),
                ("tenant_id", m.tenant_id),
                ("claimed_attempt", m.claimed_attempt),
                ("claimed_until", m.claimed_until),
                ("status", m.status.value),
                ("attempts", m.attempts),
                ("next_attempt_at", m.next_attempt_at),
                ("locked_until", m.locked_until),
                ("last_error", m.last_error),
                ("last_error_code", m.last_error_code),
                ("provider_message_id", m.provider_message_id),
                ("updated_at", m.updated_at),
                ("sent_at", m.sent_at),
                ("rate_limited_since", m.rate_limited_since),
            ):
                columns[name].append(value)
        stored_ids = set(self._tx.execute(_SAVE_OUTCOMES, columns).scalars())
        results = []
        for message in messages:
            events = message.pull_events()
            applied = message.id in stored_ids
            if applied:
                self._tx.add_events(events)
            results.append(applied)
        return results

    def requeue(self, message: OutboxMessage) -> bool:
        values = mappers.outbox_to_row(message)
        del values["id"], values["tenant_id"]
        statement = (
            sa.update(messages_out)
            .where(
                messages_out.c.id == message.id,
                messages_out.c.tenant_id == message.tenant_id,
                messages_out.c.status == OutboxStatus.DEAD.value,
            )
            .values(values)
        )
        return self._tx.execute(statement).rowcount == 1

    def count_by_status(self) -> dict[OutboxStatus, int]:
        statement = sa.select(messages_out.c.status, sa.func.count()).group_by(
            messages_out.c.status
        )
        return {OutboxStatus(status): count for status, count in self._tx.execute(statement)}

    def oldest_due_at(self, now: datetime) -> datetime | None:
        statement = sa.select(sa.func.min(_DUE_SINCE)).where(_is_due(now))
        value: datetime | None = self._tx.execute(statement).scalar()
        return value

    def record_delivery_status(
        self, tenant_id: str, message_id: str, report: DeliveryReport
    ) -> bool:
        """One conditional UPDATE computing ``DeliveryReport.merged_into`` from the row itself:
        concurrent reports serialise on the row, and each merges into what the other committed
        (Postgres re-evaluates the WHERE and SET on the new row version), so none moves it
        backwards."""
        stored_status, stored_code = (
            messages_out.c.delivery_status,
            messages_out.c.delivery_error_code,
        )
        rank = sa.case(
            {status.value: status.rank for status in DeliveryStatus}, value=stored_status, else_=-1
        )
        status_moves = rank < report.status.rank
        values: dict[str, Any] = {
            "delivery_status": sa.case((status_moves, report.status.value), else_=stored_status),
            "delivery_updated_at": report.updated_at,
        }
        changes = status_moves
        if report.error_code is not None:
            code, length = report.error_code, len(report.error_code)
            code_moves = sa.or_(
                stored_code.is_(None),
                sa.func.length(stored_code) < length,
                sa.and_(sa.func.length(stored_code) == length, stored_code < code),
            )
            values["delivery_error_code"] = sa.case((code_moves, code), else_=stored_code)
            changes = sa.or_(status_moves, code_moves)
        statement = (
            sa.update(messages_out)
            .where(
                messages_out.c.id == message_id,
                messages_out.c.tenant_id == tenant_id,
                changes,
            )
            .values(values)
        )
        return self._tx.execute(statement).rowcount == 1

    def find_by_provider_message_id(self, tenant_id: str, provider_message_id: str) -> str | None:
        statement = sa.select(messages_out.c.id).where(
            messages_out.c.provider_message_id == provider_message_id,
            messages_out.c.tenant_id == tenant_id,
        )
        found: str | None = self._tx.execute(statement).scalar()
        return found

    def locate_provider_message(self, provider_message_id: str) -> tuple[str, str] | None:
        statement = (
            sa.select(messages_out.c.tenant_id, messages_out.c.id)
            .where(messages_out.c.provider_message_id == provider_message_id)
            .limit(2)
        )
        rows = self._tx.execute(statement).all()
        return (rows[0].tenant_id, rows[0].id) if len(rows) == 1 else None

    def delivery_report(self, tenant_id: str, message_id: str) -> DeliveryReport | None:
        statement = sa.select(
            messages_out.c.delivery_status,
            messages_out.c.delivery_error_code,
            messages_out.c.delivery_updated_at,
        ).where(messages_out.c.id == message_id, messages_out.c.tenant_id == tenant_id)
        row = self._tx.execute(statement).first()
        return mappers.delivery_to_domain(row._mapping) if row else None


class SqlDeadLetterRepository(_Repository):
    def add(self, dead_letter: DeadLetter) -> None:
        row = mappers.dead_letter_to_row(dead_letter)
        self._tx.execute(sa.insert(dead_letter_jobs).values(row))

    def get(self, dead_letter_id: str) -> DeadLetter | None:
        statement = sa.select(dead_letter_jobs).where(dead_letter_jobs.c.id == dead_letter_id)
        row = self._tx.execute(statement).first()
        return mappers.dead_letter_to_domain(row._mapping) if row else None

    def list(
        self,
        *,
        tenant_id: str | None = None,
        source: DeadLetterSource | None = None,
        since: datetime | None = None,
        limit: int = 100,
        replayed: bool | None = None,
    ) -> Sequence[DeadLetter]:
        statement = sa.select(dead_letter_jobs)
        if tenant_id is not None:
            statement = statement.where(dead_letter_jobs.c.tenant_id == tenant_id)
        if source is not None:
            statement = statement.where(dead_letter_jobs.c.source == source.value)
        statement = statement.where(*_dead_letter_filters(since, replayed))
        statement = statement.order_by(
            dead_letter_jobs.c.created_at.desc(), dead_letter_jobs.c.id.desc()
        ).limit(limit)
        return [mappers.dead_letter_to_domain(r._mapping) for r in self._tx.execute(statement)]

    def count(self, *, since: datetime | None = None, replayed: bool | None = None) -> int:
        statement = sa.select(sa.func.count()).select_from(dead_letter_jobs)
        statement = statement.where(*_dead_letter_filters(since, replayed))
        return int(self._tx.execute(statement).scalar_one())

    def mark_replayed(self, dead_letter: DeadLetter) -> bool:
        if dead_letter.replayed_at is None:
            return False
        statement = (
            sa.update(dead_letter_jobs)
            .where(
                dead_letter_jobs.c.id == dead_letter.id,
                dead_letter_jobs.c.replayed_at.is_(None),
            )
            .values(replayed_at=dead_letter.replayed_at)
        )
        return self._tx.execute(statement).rowcount == 1

    def find_open(
        self, source: DeadLetterSource, tenant_id: str | None, source_id: str
    ) -> DeadLetter | None:
        c = dead_letter_jobs.c
        statement = (
            sa.select(dead_letter_jobs)
            .where(
                c.source_id == source_id,
                c.source == source.value,
                c.tenant_id.is_(None) if tenant_id is None else c.tenant_id == tenant_id,
                c.replayed_at.is_(None),
            )
            .order_by(c.created_at.desc(), c.id.desc())
            .limit(1)
        )
        row = self._tx.execute(statement).first()
        return mappers.dead_letter_to_domain(row._mapping) if row else None


def _dead_letter_filters(
    since: datetime | None, replayed: bool | None
) -> list[sa.ColumnElement[bool]]:
    filters: list[sa.ColumnElement[bool]] = []
    if since is not None:
        filters.append(dead_letter_jobs.c.created_at >= since)
    if replayed is not None:
        column = dead_letter_jobs.c.replayed_at
        filters.append(column.is_not(None) if replayed else column.is_(None))
    return filters


class SqlEventLog(_Repository):
    def append(self, events: Iterable[Event]) -> None:
        self._tx.add_events(events)

    def list(
        self, *, tenant_id: str | None, event_type: str | None = None, limit: int = 1000
    ) -> Sequence[tuple[str, str | None, str, dict[str, object], str]]:
        self._tx.flush_events()
        statement = sa.select(event_logs).where(
            event_logs.c.tenant_id.is_(None)
            if tenant_id is None
            else event_logs.c.tenant_id == tenant_id
        )
        if event_type is not None:
            statement = statement.where(event_logs.c.event_type == event_type)
        statement = statement.order_by(event_logs.c.id).limit(limit)
        return [mappers.event_to_tuple(r._mapping) for r in self._tx.execute(statement)]
