"""The in-memory unit of work and its factory (the tables and repositories are in
``adapters.memory.repositories``; every name stays importable from here).

``with uow:`` holds the store's one lock (serializable isolation: stricter than Postgres' read
committed, which the contract tests allow for); leaving without ``commit()`` undoes every write.
"""

from __future__ import annotations

from datetime import datetime
from types import TracebackType
from typing import Self

from adapters.memory.repositories.base import EventRow, MemoryEventLog, MemoryStore, _Journal
from adapters.memory.repositories.dead_letters import MemoryDeadLetterRepository
from adapters.memory.repositories.inbound_messages import MemoryInboundMessageRepository
from adapters.memory.repositories.live_sessions import MemoryLiveSessionRepository
from adapters.memory.repositories.outbox import MemoryOutboxRepository
from adapters.memory.repositories.tenants import MemorySellerDirectory, MemoryTenantRepository
from domain.inbound import InboundRecord, InboundState
from domain.senders import SenderType
from domain.tenants import Tenant
from ports.repositories import InboundFacts, TouchedWrite, compose_record_touching

__all__ = [
    "EventRow",
    "MemoryDeadLetterRepository",
    "MemoryEventLog",
    "MemoryInboundLookup",
    "MemoryInboundMessageRepository",
    "MemoryLiveSessionRepository",
    "MemoryOutboxRepository",
    "MemorySellerDirectory",
    "MemoryStore",
    "MemoryTenantRepository",
    "MemoryUnitOfWork",
    "MemoryUnitOfWorkFactory",
]


class MemoryInboundLookup:
    """The three reads of the unit of work's own repositories (so a test's substitute of one of
    them is what the lookup reads)."""

    def __init__(self, uow: MemoryUnitOfWork) -> None:
        self._uow = uow

    def inbound_facts(
        self, tenant_id: str, provider_message_id: str, phone_key: str
    ) -> InboundFacts:
        return InboundFacts(
            record=self._uow.inbound.get(tenant_id, provider_message_id),
            seller=self._uow.sellers.find_by_key(tenant_id, phone_key),
            active_session=self._uow.sessions.get_active(tenant_id),
        )

    def tenant_and_facts(
        self, tenant_id: str, provider_message_id: str, phone_key: str
    ) -> tuple[Tenant | None, InboundFacts]:
        tenant = self._uow.tenants.get(tenant_id)
        if tenant is None:
            return None, InboundFacts(None, None, None)
        return tenant, self.inbound_facts(tenant_id, provider_message_id, phone_key)

    def record_touching(
        self,
        record: InboundRecord,
        *,
        was: InboundState | None,
        session_id: str,
        at: datetime,
        sender: SenderType,
    ) -> TouchedWrite:
        return compose_record_touching(
            self._uow.sessions,
            self._uow.inbound,
            record,
            was=was,
            session_id=session_id,
            at=at,
            sender=sender,
        )


class MemoryUnitOfWork:
    """``with uow:`` holds the store's lock; leaving without ``commit()`` undoes every write."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._journal = _Journal()
        self.events = MemoryEventLog(store, self._journal)
        parts = (store, self._journal, self.events)
        self.tenants = MemoryTenantRepository(*parts)
        self.sellers = MemorySellerDirectory(*parts)
        self.sessions = MemoryLiveSessionRepository(*parts)
        self.inbound = MemoryInboundMessageRepository(*parts)
        self.outbox = MemoryOutboxRepository(*parts)
        self.dead_letters = MemoryDeadLetterRepository(*parts)
        self.lookups = MemoryInboundLookup(self)

    def __enter__(self) -> Self:
        self._store.lock.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.rollback()
        finally:
            self._store.lock.release()

    def commit(self) -> None:
        self._journal.undo.clear()

    def rollback(self) -> None:
        self._journal.rollback()


class MemoryUnitOfWorkFactory:
    """Makes units of work over one shared store."""

    def __init__(self, store: MemoryStore | None = None) -> None:
        self.store = store or MemoryStore()

    def __call__(self) -> MemoryUnitOfWork:
        return MemoryUnitOfWork(self.store)
