"""The pooled engine for ``DATABASE_URL``: Postgres in production, a SQLite file embedded.

Nothing connects here until the engine is first used.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool

SQLITE_BUSY_TIMEOUT_SECONDS = 30
POSTGRES_CONNECT_TIMEOUT_SECONDS = 10


def build_engine(url: str, pool_size: int = 5) -> Engine:
    """An engine for ``url`` (already normalised by ``normalise_database_url``).

    Postgres: a pool of ``pool_size`` connections (as many again on overflow), each checked with
    a ping on checkout and recycled after 30 minutes, so a database restart or a proxy that drops
    idle connections (Neon, Railway) costs a retry, not a crash.

    SQLite: foreign keys on, WAL journal (readers never wait for the writer), a busy timeout, and
    every transaction opened with ``BEGIN IMMEDIATE``: one writer at a time, taken at the start of
    the unit of work, so a read-then-write never fails half way on a lock upgrade (ADR 0005).
    """
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, pool_size)
    return sa.create_engine(
        parsed,
        # Statement values (message bodies, phones) never go into an error's text, hence a log.
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=30,
        pool_recycle=1800,
        pool_pre_ping=True,
        connect_args={
            "connect_timeout": POSTGRES_CONNECT_TIMEOUT_SECONDS,
            "application_name": "livesell",
        },
    )


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def _sqlite_engine(url: sa.URL, pool_size: int) -> Engine:
    in_memory = url.database in (None, "", ":memory:")
    kwargs: dict[str, Any] = (
        {"poolclass": StaticPool}
        if in_memory
        else {"pool_size": pool_size, "max_overflow": pool_size, "pool_timeout": 60}
    )
    engine = sa.create_engine(
        url,
        hide_parameters=True,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        **kwargs,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when a transaction begins (see "begin" below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
            if not in_memory:
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
