"""The inbound job's reads in one statement (``ports.repositories.InboundLookup``, ADR 0022).

The message's inbox record, the seller with the sender's phone key and the tenant's active session
are each at most one row (unique keys; the partial unique index on active sessions), so one
statement LEFT JOINs the three onto a one-row relation: one round trip instead of three, the same
rows each lookup would have read at this point of the transaction.
"""

from __future__ import annotations

from typing import Any, cast

import sqlalchemy as sa

from adapters.sqlalchemy import mappers
from adapters.sqlalchemy.repositories.base import Repository
from adapters.sqlalchemy.tables import inbound_messages, live_sessions, sellers
from ports.repositories import InboundFacts

_TABLES = (("i_", inbound_messages), ("s_", sellers), ("l_", live_sessions))
_ONE = sa.select(sa.literal(1).label("one")).subquery("one")
_FACTS = sa.select(
    *(column.label(prefix + column.name) for prefix, table in _TABLES for column in table.c)
).select_from(
    _ONE.outerjoin(
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
_NAMES = {prefix: tuple(column.name for column in table.c) for prefix, table in _TABLES}


class SqlInboundLookup(Repository):
    def inbound_facts(
        self, tenant_id: str, provider_message_id: str, phone_key: str
    ) -> InboundFacts:
        parameters = {
            "tenant_id": tenant_id,
            "provider_message_id": provider_message_id,
            "phone_key": phone_key,
        }
        row = self._tx.execute(_FACTS, parameters).one()._mapping
        record, seller, session = (_part(row, prefix) for prefix, _ in _TABLES)
        return InboundFacts(
            record=mappers.inbound_to_domain(record) if record else None,
            seller=mappers.seller_to_domain(seller) if seller else None,
            active_session=mappers.session_to_domain(session) if session else None,
        )


def _part(row: Any, prefix: str) -> mappers.Row | None:
    """The columns of one joined table, unprefixed; None when the join found no row (its key,
    ``id``, is NULL)."""
    if row[prefix + "id"] is None:
        return None
    # A plain dict read like a row's mapping: the mappers only look columns up by name.
    return cast(mappers.Row, {name: row[prefix + name] for name in _NAMES[prefix]})
