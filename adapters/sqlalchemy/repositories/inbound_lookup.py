"""The inbound job's reads in one statement (``ports.repositories.InboundLookup``, ADR 0022).

The message's inbox record, the seller with the sender's phone key and the tenant's active session
are each at most one row (unique keys; the partial unique index on active sessions), so one
statement LEFT JOINs the three onto a one-row relation: one round trip instead of three, the same
rows each lookup would have read at this point of the transaction.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from adapters.sqlalchemy import mappers
from adapters.sqlalchemy.repositories.base import Repository
from adapters.sqlalchemy.repositories.inbound_messages import (
    _KEYS,
    SqlInboundMessageRepository,
    _save_statement,
)
from adapters.sqlalchemy.repositories.live_sessions import (
    SqlLiveSessionRepository,
    _touch_statement,
)
from adapters.sqlalchemy.tables import event_logs, inbound_messages, live_sessions, sellers, tenants
from domain.inbound import InboundRecord, InboundState
from domain.senders import SenderType
from domain.tenants import Tenant
from ports.repositories import InboundFacts, TouchedWrite, compose_record_touching

_TABLES = (("i_", inbound_messages), ("s_", sellers), ("l_", live_sessions))
_WITH_TENANT = (("t_", tenants), *_TABLES)
_ONE = sa.select(sa.literal(1).label("one")).subquery("one")


def _facts_statement(with_tenant: bool) -> sa.Select[Any]:
    tables = _WITH_TENANT if with_tenant else _TABLES
    start = (
        _ONE.outerjoin(tenants, tenants.c.id == sa.bindparam("tenant_id")) if with_tenant else _ONE
    )
    return sa.select(
        *(column.label(prefix + column.name) for prefix, table in tables for column in table.c)
    ).select_from(
        start.outerjoin(
            inbound_messages,
            sa.and_(
                inbound_messages.c.tenant_id == sa.bindparam("tenant_id"),
                inbound_messages.c.provider_message_id == sa.bindparam("provider_message_id"),
            ),
        )
        .outerjoin(
            sellers,
            sa.and_(
                sellers.c.tenant_id == sa.bindparam("tenant_id"),
                sellers.c.phone_key == sa.bindparam("phone_key"),
            ),
        )
        .outerjoin(
            live_sessions,
            sa.and_(
                live_sessions.c.tenant_id == sa.bindparam("tenant_id"),
                live_sessions.c.status == "active",
            ),
        )
    )


_FACTS = _facts_statement(with_tenant=False)
_TENANT_AND_FACTS = _facts_statement(with_tenant=True)
_NAMES = {prefix: tuple(column.name for column in table.c) for prefix, table in _WITH_TENANT}


class SqlInboundLookup(Repository):
    def inbound_facts(
        self, tenant_id: str, provider_message_id: str, phone_key: str
    ) -> InboundFacts:
        parameters = {
            "tenant_id": tenant_id,
            "provider_message_id": provider_message_id,
            "phone_key": phone_key,
        }
        return _facts(self._tx.execute(_FACTS, parameters).one()._mapping)

    def tenant_and_facts(
        self, tenant_id: str, provider_message_id: str, phone_key: str
    ) -> tuple[Tenant | None, InboundFacts]:
        parameters = {
            "tenant_id": tenant_id,
            "provider_message_id": provider_message_id,
            "phone_key": phone_key,
        }
        row = self._tx.execute(_TENANT_AND_FACTS, parameters).one()._mapping
        tenant = _part(row, "t_")
        return (mappers.tenant_to_domain(tenant) if tenant else None), _facts(row)

    def record_touching(
        self,
        record: InboundRecord,
        *,
        was: InboundState | None,
        session_id: str,
        at: datetime,
        sender: SenderType,
    ) -> TouchedWrite:
        if not self._tx.is_postgres:
            # SQLite runs in-process: the repositories' own statements, one after the other.
            return compose_record_touching(
                SqlLiveSessionRepository(self._tx),
                SqlInboundMessageRepository(self._tx),
                record,
                was=was,
                session_id=session_id,
                at=at,
                sender=sender,
            )
        self._tx.flush_events()  # events buffered earlier stay ahead of the record's
        values = mappers.inbound_to_row(record)
        events = [mappers.event_to_row(event) for event in record.pull_events()]
        parameters: dict[str, Any] = {
            "w_session_id": session_id,
            "w_tenant_id": record.tenant_id,
            "at": at,
        }
        if was is None:
            columns = tuple(values)
            parameters.update({"v_" + name: value for name, value in values.items()})
        else:
            columns = tuple(name for name in values if name not in _KEYS)
            parameters.update({"v_" + name: values[name] for name in columns})
            parameters.update(
                w_provider_message_id=record.provider_message_id,
                w_id=record.id,
                w_status=was.status.value,
            )
            if was.dead_letter_id is not None:
                parameters["w_dead_letter_id"] = was.dead_letter_id
        for index, event in enumerate(events):
            parameters.update({f"e{index}_{name}": value for name, value in event.items()})
        statement = _record_touching_statement(
            sender,
            columns,
            None if was is None else was.dead_letter_id is None,
            tuple(events[0]) if events else (),
            len(events),
        )
        try:
            touched, written = self._tx.execute(statement, parameters).one()
        except sa_exc.IntegrityError:
            # A concurrent job inserted the record first (its unique key). No savepoint (two
            # more round trips): the transaction is aborted and the caller rolls it back.
            return TouchedWrite.RECORD_TAKEN
        if not touched:
            return TouchedWrite.SESSION_GONE
        return TouchedWrite.WRITTEN if written else TouchedWrite.RECORD_TAKEN


def _facts(row: Any) -> InboundFacts:
    record, seller, session = (_part(row, prefix) for prefix, _ in _TABLES)
    return InboundFacts(
        record=mappers.inbound_to_domain(record) if record else None,
        seller=mappers.seller_to_domain(seller) if seller else None,
        active_session=mappers.session_to_domain(session) if session else None,
    )


@functools.cache
def _record_touching_statement(
    sender: SenderType,
    columns: tuple[str, ...],
    was_without_dead_letter: bool | None,
    event_columns: tuple[str, ...],
    event_count: int,
) -> sa.Select[Any]:
    """Postgres: the session touch, the record's insert (``was_without_dead_letter`` None) or
    conditional update, and its events, as one statement of data-modifying CTEs, built once per
    shape. The record is written only where the touch returned a row, the events only where the
    record was written; the statement answers how many rows the touch and the record write
    changed. All the CTEs see one snapshot, and the touch's ``status = 'active'`` is re-checked
    on the row's latest version once its lock is had (a session closed meanwhile is not
    touched), as for the standalone touch."""
    touch = _touch_statement(True, sender).cte("touched")
    was_touched = sa.exists(sa.select(touch.c.id))
    c = inbound_messages.c
    if was_without_dead_letter is None:
        source = sa.select(
            *(sa.bindparam("v_" + name, type_=c[name].type) for name in columns)
        ).where(was_touched)
        write: sa.Insert | sa.Update = sa.insert(inbound_messages).from_select(
            list(columns), source
        )
    else:
        write = _save_statement(columns, was_without_dead_letter).where(was_touched)
    written = write.returning(c.id).cte("written")
    statement = sa.select(
        sa.select(sa.func.count()).select_from(touch).scalar_subquery().label("touched"),
        sa.select(sa.func.count()).select_from(written).scalar_subquery().label("written"),
    ).add_cte(touch, written)
    if event_count:
        rows = [
            sa.select(
                *(
                    sa.bindparam(f"e{index}_{name}", type_=event_logs.c[name].type)
                    for name in event_columns
                )
            ).select_from(written)
            for index in range(event_count)
        ]
        source_events = rows[0] if event_count == 1 else sa.union_all(*rows)
        insert_events = (
            sa.insert(event_logs)
            .from_select(list(event_columns), source_events)
            .returning(event_logs.c.id)
            .cte("logged")
        )
        statement = statement.add_cte(insert_events)
    return statement


def _part(row: Any, prefix: str) -> mappers.Row | None:
    """The columns of one joined table, unprefixed; None when the join found no row (its key,
    ``id``, is NULL)."""
    if row[prefix + "id"] is None:
        return None
    # A plain dict read like a row's mapping: the mappers only look columns up by name.
    return cast(mappers.Row, {name: row[prefix + name] for name in _NAMES[prefix]})
