"""The dead letters repository (``ports.repositories.DeadLetterRepository``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from adapters.sqlalchemy import mappers
from adapters.sqlalchemy.repositories.base import Repository
from adapters.sqlalchemy.tables import dead_letter_jobs
from domain.dead_letters import DeadLetter, DeadLetterSource


class SqlDeadLetterRepository(Repository):
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
