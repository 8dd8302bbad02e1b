"""The outbox repository (``ports.repositories.OutboxRepository``): the sender's claim and
outcome statements, and the delivery reports merged into its rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from adapters.sqlalchemy import mappers
from adapters.sqlalchemy.repositories.base import Repository
from adapters.sqlalchemy.tables import SENDING, WAITING, messages_out
from adapters.sqlalchemy.types import UtcDateTime
from domain.delivery import DeliveryReport, DeliveryStatus
from domain.outbox import OutboxMessage, OutboxStatus
from ports.repositories import AlreadyExists

CANDIDATES_PER_TENANT = 4
"""The Postgres due claim reads up to ``limit * CANDIDATES_PER_TENANT`` due rows per tenant and
locks ``limit`` of them, skipping rows other claimers hold: enough head room for that many
concurrent claimers of one tenant's backlog to each fill a batch."""


_DUE_SINCE = sa.case((SENDING, messages_out.c.locked_until), else_=messages_out.c.next_attempt_at)


_EARLIER = messages_out.alias("earlier")
_IS_QUEUE_HEAD = ~sa.exists().where(
    _EARLIER.c.tenant_id == messages_out.c.tenant_id,
    _EARLIER.c.to_phone == messages_out.c.to_phone,
    _EARLIER.c.status.in_(("pending", "failed", "sending")),
    sa.tuple_(_EARLIER.c.created_at, _EARLIER.c.id)
    < sa.tuple_(messages_out.c.created_at, messages_out.c.id),
)
"""ADR 0020: no earlier queued message to the same recipient (``domain.recipient_order``)."""


_SENT_BEFORE = messages_out.alias("sent_before")


def _paced(now: datetime, gap: timedelta) -> list[sa.ColumnElement[bool]]:
    """ADR 0025: nothing sent to the same recipient since ``now - gap`` (none when gap is 0)."""
    if gap <= timedelta(0):
        return []
    return [
        ~sa.exists().where(
            _SENT_BEFORE.c.tenant_id == messages_out.c.tenant_id,
            _SENT_BEFORE.c.to_phone == messages_out.c.to_phone,
            _SENT_BEFORE.c.status == OutboxStatus.SENT.value,
            _SENT_BEFORE.c.sent_at > now - gap,
        )
    ]


def _is_due(now: datetime) -> sa.ColumnElement[bool]:
    """SPEC §3: waiting and due, or being sent under a lease that has passed."""
    return sa.or_(
        sa.and_(WAITING, messages_out.c.next_attempt_at <= now),
        sa.and_(SENDING, messages_out.c.locked_until < now),
    )


_HEAD_OF_QUEUE = """NOT EXISTS (SELECT 1 FROM messages_out AS e
                                WHERE e.tenant_id = m.tenant_id AND e.to_phone = m.to_phone
                                  AND e.status IN ('pending', 'failed', 'sending')
                                  AND (e.created_at, e.id) < (m.created_at, m.id))"""

_PACED = """NOT EXISTS (SELECT 1 FROM messages_out AS s
                         WHERE s.tenant_id = m.tenant_id AND s.to_phone = m.to_phone
                           AND s.status = 'sent' AND s.sent_at > :paced_since)"""
"""ADR 0025: the recipient was sent nothing since ``now - gap`` (one probe of
``messages_out_recipient_sent_idx``)."""


def _claim_postgres(paced: bool) -> sa.TextClause:
    head = f"{_HEAD_OF_QUEUE}\n               AND {_PACED}" if paced else _HEAD_OF_QUEUE
    return sa.text(_CLAIM_POSTGRES_SQL.format(head=head)).bindparams(
        sa.bindparam("now", type_=UtcDateTime()),
        sa.bindparam("locked_until", type_=UtcDateTime()),
        sa.bindparam("headroom", type_=sa.Integer()),
        sa.bindparam("limit", type_=sa.Integer()),
        *([sa.bindparam("paced_since", type_=UtcDateTime())] if paced else []),
    )


_CLAIM_POSTGRES_SQL = """
WITH due_tenants AS MATERIALIZED (
    SELECT t.id
      FROM tenants AS t
     WHERE EXISTS (SELECT 1 FROM messages_out AS m
                    WHERE m.tenant_id = t.id AND m.status IN ('pending', 'failed')
                      AND m.next_attempt_at <= :now)
        OR EXISTS (SELECT 1 FROM messages_out AS m
                    WHERE m.tenant_id = t.id AND m.status = 'sending' AND m.locked_until < :now)
),
sizes AS MATERIALIZED (
    SELECT GREATEST(:limit,
                    CAST(CEIL(CAST(:headroom AS numeric) / GREATEST(count(*), 1)) AS integer))
           AS per_tenant
      FROM due_tenants
),
candidates AS (
    SELECT c.id,
           row_number() OVER tenant_queue AS depth,
           first_value(c.due_since) OVER tenant_queue AS tenant_due,
           first_value(c.id) OVER tenant_queue AS tenant_first
      FROM due_tenants AS t
     CROSS JOIN LATERAL (
           (SELECT m.id, m.tenant_id, m.next_attempt_at AS due_since
              FROM messages_out AS m
             WHERE m.tenant_id = t.id AND m.status IN ('pending', 'failed')
               AND m.next_attempt_at <= :now
               AND {head}
             ORDER BY m.next_attempt_at, m.id
             LIMIT (SELECT per_tenant FROM sizes))
           UNION ALL
           (SELECT m.id, m.tenant_id, m.locked_until AS due_since
              FROM messages_out AS m
             WHERE m.tenant_id = t.id AND m.status = 'sending' AND m.locked_until < :now
               AND {head}
             ORDER BY m.locked_until, m.id
             LIMIT (SELECT per_tenant FROM sizes))
     ) AS c
    WINDOW tenant_queue AS (PARTITION BY c.tenant_id ORDER BY c.due_since, c.id)
),
top AS (
    SELECT id, depth, tenant_due, tenant_first
      FROM candidates
     ORDER BY depth, tenant_due, tenant_first
     LIMIT :headroom
),
picked AS MATERIALIZED (
    SELECT m.ctid AS row_version, m.id, r.depth, r.tenant_due, r.tenant_first
      FROM top AS r
      JOIN messages_out AS m ON m.id = r.id
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
 WHERE m.ctid = p.row_version AND m.id = p.id
RETURNING m.*, p.depth, p.tenant_due, p.tenant_first
"""
"""One round trip. Each tenant with due rows has its due queue read through its partial index (a
LATERAL per tenant), keeping only the head of each recipient's queue (no earlier queued message to
the same recipient: one probe of ``messages_out_recipient_queue_idx``, ADR 0020), ranked
round-robin across tenants (depth first, then the tenant whose head waited longest), and the first
``limit`` rows are locked with SKIP LOCKED and claimed.

Each tenant's candidate window is ``limit * CANDIDATES_PER_TENANT`` shared by the tenants with due
rows, and never less than ``limit`` (ADR 0025): one tenant alone keeps the head room of ADR 0006
for concurrent claimers; four tenants read 4 x ``limit`` candidates rather than 16 x, and each
still offers a batch's worth to a claimer whose other tenants ran dry. Two concurrent claims
cannot take a head and its successor: in any snapshot where the successor's predecessor is
terminal, the predecessor was already recorded, and one statement never takes both (its own
snapshot sees the head queued). The locked rows are updated through the row version that
``FOR UPDATE`` locked (``ctid``, with the id re-checked): a TID scan per row, where the planner
otherwise hashed the whole table. The paced form (``{head}`` with ``_PACED``, ADR 0025) also skips
a recipient sent a message since ``paced_since``."""


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


_CLAIM_COLUMNS: dict[str, Any] = {
    **{column.name: column.type for column in messages_out.c},
    "depth": sa.Integer(),
    "tenant_due": UtcDateTime(),
    "tenant_first": sa.Text(),
}
_CLAIM_POSTGRES_TYPED = _claim_postgres(paced=False).columns(**_CLAIM_COLUMNS)
_CLAIM_POSTGRES_PACED = _claim_postgres(paced=True).columns(**_CLAIM_COLUMNS)
"""The claim's result typed by column name: ``RETURNING m.*`` lists the columns in the table's
physical order (each migration appends), which need not be the metadata's. Typed by position,
each value went through the type of the metadata's column at its place (``content_sid`` through
``UtcDateTime``: a crash); harmless until then only because the misplaced types were text and
timestamps that psycopg already returns as the service reads them."""


def claim_statement(
    now: datetime, lease: timedelta, limit: int, recipient_gap: timedelta = timedelta(0)
) -> tuple[sa.TextualSelect, dict[str, Any]]:
    """The Postgres claim and its parameters (``bench/outbox_claim.py`` explains it); the paced
    form only with a positive ``recipient_gap``, so the default costs nothing more."""
    parameters: dict[str, Any] = {
        "now": now,
        "locked_until": now + lease,
        "headroom": limit * CANDIDATES_PER_TENANT,
        "limit": limit,
    }
    if recipient_gap <= timedelta(0):
        return _CLAIM_POSTGRES_TYPED, parameters
    return _CLAIM_POSTGRES_PACED, {**parameters, "paced_since": now - recipient_gap}


class SqlOutboxRepository(Repository):
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

    def claim_due(
        self,
        now: datetime,
        lease: timedelta,
        limit: int,
        recipient_gap: timedelta = timedelta(0),
    ) -> Sequence[OutboxMessage]:
        """System claim, fair across tenants: round-robin over each tenant's due queue (oldest
        first), as the memory store does. Postgres: one statement with SKIP LOCKED; SQLite: the
        same ranking in two statements under its single writer."""
        if limit < 1:
            return []
        if self._tx.is_postgres:
            rows = self._tx.execute(*claim_statement(now, lease, limit, recipient_gap)).all()
            rows = sorted(rows, key=lambda r: (r.depth, r.tenant_due, r.tenant_first))
            return [mappers.outbox_to_domain(r._mapping, claimed=True) for r in rows]
        return self._claim_due_single_writer(now, lease, limit, recipient_gap)

    def _claim_due_single_writer(
        self, now: datetime, lease: timedelta, limit: int, recipient_gap: timedelta
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
            .where(_is_due(now), _IS_QUEUE_HEAD, *_paced(now, recipient_gap))
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
