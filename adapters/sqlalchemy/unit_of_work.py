"""The SQL unit of work: one connection, one transaction, rolled back unless committed."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from sqlalchemy.engine import Engine

from adapters.sqlalchemy.repositories import (
    SqlDeadLetterRepository,
    SqlEventLog,
    SqlInboundLookup,
    SqlInboundMessageRepository,
    SqlLiveSessionRepository,
    SqlOutboxRepository,
    SqlSellerDirectory,
    SqlTenantRepository,
)
from adapters.sqlalchemy.transaction import Transaction
from ports.repositories import StoreUnavailable


class SqlUnitOfWork:
    """``with uow:`` checks a connection out of the pool; leaving without ``commit()`` rolls back
    and returns it. Repositories that store an aggregate store its events in the same transaction.
    After ``commit()`` the unit of work can go on: the next statement begins a new transaction.
    """

    def __init__(self, engine: Engine) -> None:
        self._tx = Transaction(engine)
        self.tenants = SqlTenantRepository(self._tx)
        self.sellers = SqlSellerDirectory(self._tx)
        self.sessions = SqlLiveSessionRepository(self._tx)
        self.inbound = SqlInboundMessageRepository(self._tx)
        self.outbox = SqlOutboxRepository(self._tx)
        self.dead_letters = SqlDeadLetterRepository(self._tx)
        self.events = SqlEventLog(self._tx)
        self.lookups = SqlInboundLookup(self._tx)
        self._depth = 0

    def __enter__(self) -> Self:
        if self._depth == 0:
            self._tx.open()
        self._depth += 1
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.rollback()
        except StoreUnavailable:
            if exc is None:
                raise
            # The error in flight already says what went wrong; the connection is discarded.
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._tx.close()

    def commit(self) -> None:
        """Make everything durable. Raises StoreUnavailable when the store failed transiently."""
        self._tx.commit()

    def rollback(self) -> None:
        self._tx.rollback()


class SqlUnitOfWorkFactory:
    """Makes units of work over one engine (the container holds it as a Singleton)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __call__(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine)
