"""What every SQL repository shares: the transaction it runs in and the conflict-tolerant insert."""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa

from adapters.sqlalchemy.transaction import Transaction


class Repository:
    """Base of the SQL repositories: statements run in the unit of work's transaction."""

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
