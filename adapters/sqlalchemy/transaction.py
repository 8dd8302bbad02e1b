"""One connection and its transaction, shared by the repositories of a unit of work.

Driver errors that mean "the store is not there or gave up on us" (connection lost, timeouts,
deadlocks, SQLite's "database is locked") become ``StoreUnavailable``, raised ``from`` the
original, so no SQLAlchemy exception crosses the port for them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, CursorResult, Engine

from adapters.sqlalchemy.mappers import event_to_row
from adapters.sqlalchemy.tables import event_logs
from domain.events import Event
from ports.repositories import StoreUnavailable

# Built once: the statement object reused keeps its cache key (ADR 0022).
_INSERT_EVENTS = sa.insert(event_logs)


def is_unavailable(error: BaseException) -> bool:
    """True for errors that say the store could not do the work now (worth a retry)."""
    if isinstance(error, sa_exc.DBAPIError):
        return error.connection_invalidated or isinstance(
            error, sa_exc.OperationalError | sa_exc.InterfaceError
        )
    return isinstance(error, sa_exc.TimeoutError)  # no pooled connection came free in time


@contextmanager
def translated_errors() -> Iterator[None]:
    try:
        yield
    except (sa_exc.DBAPIError, sa_exc.TimeoutError) as exc:
        if is_unavailable(exc):
            raise StoreUnavailable(
                f"database unavailable: {type(exc.__cause__ or exc).__name__}: {_first_line(exc)}"
            ) from exc
        raise


def _first_line(error: BaseException) -> str:
    cause = getattr(error, "orig", None) or error
    return str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__


class Transaction:
    """The connection of one unit of work. Opened on ``with uow:``; statements begin a database
    transaction on first use (again after each commit) and nothing is durable until ``commit``.

    Events appended by repositories are buffered and written in one statement before the commit
    (or before the event log is read), inside the same transaction.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._connection: Connection | None = None
        self._events: list[dict[str, Any]] = []

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def open(self) -> None:
        with translated_errors():
            self._connection = self.engine.connect()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            raise RuntimeError("use the unit of work inside `with uow:`")
        return self._connection

    def execute(
        self, statement: sa.Executable, parameters: Mapping[str, Any] | Sequence[Any] | None = None
    ) -> CursorResult[Any]:
        """Run ``statement`` in the transaction. A pooled connection found dead by the first
        statement of a transaction (nothing done in it yet: a Postgres restart, a proxy that
        dropped it) is replaced and the statement run once more on a fresh connection: the
        reconnect-on-error that takes the place of the pool's ping on every checkout (one round
        trip per unit of work, ADR 0028). Any later loss raises StoreUnavailable: work done in
        the transaction is gone, the caller (the job) starts again."""
        connection = self.connection
        first = not connection.in_transaction()
        try:
            with translated_errors():
                return connection.execute(statement, parameters)
        except StoreUnavailable as exc:
            cause = exc.__cause__
            if not (
                first and isinstance(cause, sa_exc.DBAPIError) and cause.connection_invalidated
            ):
                raise
        self.close()
        self.open()
        with translated_errors():
            return self.connection.execute(statement, parameters)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A SAVEPOINT around a statement that may violate a constraint: on error only the
        savepoint is rolled back and the transaction stays usable."""
        with translated_errors(), self.connection.begin_nested():
            yield

    def add_events(self, events: Iterable[Event]) -> None:
        self._events.extend(event_to_row(e) for e in events)

    def flush_events(self) -> None:
        if self._events:
            rows, self._events = self._events, []
            self.execute(_INSERT_EVENTS, rows)

    def commit(self) -> None:
        self.flush_events()
        with translated_errors():
            self.connection.commit()

    def rollback(self) -> None:
        self._events.clear()
        connection = self._connection
        if connection is not None and connection.in_transaction():
            with translated_errors():
                connection.rollback()
