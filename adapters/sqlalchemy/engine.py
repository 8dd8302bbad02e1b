"""The pooled engine for ``DATABASE_URL``: Postgres in production, a SQLite file embedded.

Nothing connects here until the engine is first used.

Every Postgres wait is bounded (ADR 0014): libpq's ``connect_timeout``; TCP keepalives
(``keepalives_idle`` / ``_interval`` / ``_count``: an idle connection whose peer vanished is
closed after about 25 s); ``tcp_user_timeout`` (data left unacknowledged that long closes the
connection, where the kernel would otherwise retransmit for about 15 minutes); and, on the
server, a ``statement_timeout`` a little under the job timeout (a slow statement fails as a
database error the job retries, before the job's own deadline) and an
``idle_in_transaction_session_timeout`` of the job timeout (the locks of a client that stopped
talking mid-transaction are released). The parameters:
https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-PARAMKEYWORDS
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool

SQLITE_BUSY_TIMEOUT_SECONDS = 30
POSTGRES_CONNECT_TIMEOUT_SECONDS = 10
KEEPALIVES_IDLE_SECONDS = 10
KEEPALIVES_INTERVAL_SECONDS = 5
KEEPALIVES_COUNT = 3
TCP_USER_TIMEOUT_MS = 15_000
STATEMENT_TIMEOUT_MARGIN_SECONDS = 5


def statement_timeout_for(job_timeout_seconds: float) -> int:
    """The ``statement_timeout`` (ms) for jobs of ``job_timeout_seconds``: the job timeout less a
    margin, so a statement is cancelled by Postgres before the job's deadline (at least 1 s)."""
    return max(1000, round((job_timeout_seconds - STATEMENT_TIMEOUT_MARGIN_SECONDS) * 1000))


def postgres_connect_args() -> dict[str, Any]:
    """The libpq parameters of every pooled Postgres connection (client side)."""
    return {
        "connect_timeout": POSTGRES_CONNECT_TIMEOUT_SECONDS,
        "application_name": "livesell",
        "keepalives": 1,
        "keepalives_idle": KEEPALIVES_IDLE_SECONDS,
        "keepalives_interval": KEEPALIVES_INTERVAL_SECONDS,
        "keepalives_count": KEEPALIVES_COUNT,
        "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
    }


def build_engine(
    url: str, pool_size: int = 5, *, statement_timeout_ms: int | None = None
) -> Engine:
    """An engine for ``url`` (already normalised by ``normalise_database_url``).

    Postgres: a pool of ``pool_size`` connections (as many again on overflow), recycled after 30
    minutes; no ping on checkout: a connection a database restart or a proxy (Neon, Railway)
    dropped is replaced by the unit of work when its first statement finds it dead
    (``Transaction.execute``), so it costs neither a crash nor a retry.

    SQLite: foreign keys on, WAL journal (readers never wait for the writer), a busy timeout, and
    every transaction opened with ``BEGIN IMMEDIATE``: one writer at a time, taken at the start of
    the unit of work, so a read-then-write never fails half way on a lock upgrade (ADR 0005).

    ``statement_timeout_ms`` (Postgres): set on each new connection with ``SET`` (not the
    ``options`` startup parameter, which PgBouncer-style poolers refuse), with an
    ``idle_in_transaction_session_timeout`` of the same plus the margin (the job timeout).
    """
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, pool_size)
    engine = sa.create_engine(
        parsed,
        # Statement values (message bodies, phones) never go into an error's text, hence a log.
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=30,
        pool_recycle=1800,
        # No ping on checkout (one round trip per unit of work): a connection found dead by a
        # transaction's first statement is replaced there (Transaction.execute, ADR 0028).
        pool_pre_ping=False,
        connect_args=postgres_connect_args(),
    )

    @event.listens_for(engine, "connect")
    def _no_jit(dbapi_connection: Any, _record: Any) -> None:
        # Short OLTP statements only: Postgres' JIT compiles any plan estimated above
        # jit_above_cost, and the outbox claim's estimate (tenants never analysed) took 2.6 s of
        # compiling for a 100 ms statement (ADR 0020).
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET jit = off")
        dbapi_connection.commit()

    if statement_timeout_ms is not None:
        idle_ms = statement_timeout_ms + STATEMENT_TIMEOUT_MARGIN_SECONDS * 1000

        @event.listens_for(engine, "connect")
        def _set_timeouts(dbapi_connection: Any, _record: Any) -> None:
            with dbapi_connection.cursor() as cursor:
                cursor.execute(f"SET statement_timeout = {int(statement_timeout_ms)}")
                cursor.execute(f"SET idle_in_transaction_session_timeout = {int(idle_ms)}")
            dbapi_connection.commit()

    return engine


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
