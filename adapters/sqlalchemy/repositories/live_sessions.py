"""The live sessions repository (``ports.repositories.LiveSessionRepository``)."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa

from adapters.sqlalchemy import mappers
from adapters.sqlalchemy.repositories.base import Repository
from adapters.sqlalchemy.tables import inbound_messages, live_sessions
from adapters.sqlalchemy.types import UtcDateTime
from domain.events import Event
from domain.live_sessions import LiveSession
from domain.senders import SenderType
from ports.repositories import ActiveSessionExists, AlreadyExists

# Built once (the inbound hot path, ADR 0022): reused statement objects keep their cache key.
_GET_ACTIVE = sa.select(live_sessions).where(
    live_sessions.c.tenant_id == sa.bindparam("tenant_id"), live_sessions.c.status == "active"
)


@functools.cache
def _touch_statement(postgres: bool, sender: SenderType) -> sa.Update:
    """The touch of an active session by a message of ``sender`` at ``:at``, built once per
    dialect family and sender: the later last activity, the earlier start, one more message."""
    instant = sa.bindparam("at", type_=UtcDateTime())
    greatest, least = (sa.func.greatest, sa.func.least) if postgres else (sa.func.max, sa.func.min)
    counter = (
        live_sessions.c.seller_message_count
        if sender is SenderType.SELLER
        else live_sessions.c.client_message_count
    )
    return (
        sa.update(live_sessions)
        .where(
            live_sessions.c.id == sa.bindparam("w_session_id"),
            live_sessions.c.tenant_id == sa.bindparam("w_tenant_id"),
            live_sessions.c.status == "active",
        )
        .values(
            {
                live_sessions.c.last_activity_at: greatest(
                    live_sessions.c.last_activity_at, instant
                ),
                live_sessions.c.started_at: least(live_sessions.c.started_at, instant),
                counter: counter + 1,
            }
        )
        .returning(*live_sessions.c)
    )


class SqlLiveSessionRepository(Repository):
    def get(self, tenant_id: str, session_id: str) -> LiveSession | None:
        statement = sa.select(live_sessions).where(
            live_sessions.c.id == session_id, live_sessions.c.tenant_id == tenant_id
        )
        row = self._tx.execute(statement).first()
        return mappers.session_to_domain(row._mapping) if row else None

    def get_active(self, tenant_id: str) -> LiveSession | None:
        row = self._tx.execute(_GET_ACTIVE, {"tenant_id": tenant_id}).first()
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
        statement = _touch_statement(self._tx.is_postgres, sender)
        parameters = {"w_session_id": session_id, "w_tenant_id": tenant_id, "at": now}
        row = self._tx.execute(statement, parameters).first()
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
