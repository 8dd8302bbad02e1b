"""The unit of work owns the transaction: ``with uow:`` rolls back unless ``uow.commit()``."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Protocol, Self

from ports.repositories import (
    DeadLetterRepository,
    EventLog,
    InboundLookup,
    InboundMessageRepository,
    LiveSessionRepository,
    OutboxRepository,
    SellerDirectory,
    TenantRepository,
)


class UnitOfWork(Protocol):
    """One transaction over every repository. Repositories that store an aggregate also store the
    events it recorded, in the same transaction; ``commit`` makes all of it durable at once.
    """

    @property
    def tenants(self) -> TenantRepository: ...

    @property
    def sellers(self) -> SellerDirectory: ...

    @property
    def lookups(self) -> InboundLookup: ...

    @property
    def sessions(self) -> LiveSessionRepository: ...

    @property
    def inbound(self) -> InboundMessageRepository: ...

    @property
    def outbox(self) -> OutboxRepository: ...

    @property
    def dead_letters(self) -> DeadLetterRepository: ...

    @property
    def events(self) -> EventLog: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Roll back whatever was not committed."""
        ...

    def commit(self) -> None:
        """Make the transaction durable. Raises StoreUnavailable on a transient store failure."""
        ...

    def rollback(self) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]
