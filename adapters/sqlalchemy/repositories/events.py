"""The event log (``ports.repositories.EventLog``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import sqlalchemy as sa

from adapters.sqlalchemy import mappers
from adapters.sqlalchemy.repositories.base import Repository
from adapters.sqlalchemy.tables import event_logs
from domain.events import Event


class SqlEventLog(Repository):
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
