"""Builders for the unit tier: the in-memory store, a fixed clock, readable ids, a scripted
provider and the production outbox sender on them (inline sends, virtual waits); nothing else."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.memory.clock import FixedClock, SequentialIds
from adapters.memory.store import EventRow, MemoryStore, MemoryUnitOfWork, MemoryUnitOfWorkFactory
from adapters.memory.waiting import VirtualWaiter
from adapters.system.executor import InlineExecutor
from application.inbound import InboundOutcome, Processed, process_inbound_message
from application.live_sessions import CloseReport, close_inactive_sessions
from application.outbox import DEFAULT_LEASE, BatchReport, queue_outbound_message
from application.outbox_sender import OutboxSender
from application.tenants import add_seller, add_tenant
from domain.live_sessions import InactivityWindow, LiveSession, SessionStatus
from domain.outbox import DeliveryFailure, OutboxMessage
from domain.retry import RetryPolicy
from domain.tenants import Seller, Tenant
from ports.executor import Executor
from ports.messaging import DeliveryFailed, MessagingProvider, RateLimiter, SendReceipt, SendRequest
from ports.wakeup import Waiter

START = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)
SELLER_PHONE = "+33612345678"
CLIENT_PHONE = "+33698765432"
OTHER_CLIENT_PHONE = "+33611223344"


def client(n: int) -> str:
    """The n-th of many customers: messages to different ones are not ordered (ADR 0020)."""
    return f"+3361000{n:04d}"


class ScriptedProvider:
    """A MessagingProvider that plays a script, one entry per send: a DeliveryFailure is raised,
    anything else (``OK``) accepts. Past the end of the script every send is accepted."""

    def __init__(self, *script: DeliveryFailure | str) -> None:
        self.script = list(script)
        self.requests: list[SendRequest] = []
        self.accepted: list[SendRequest] = []

    def send(self, request: SendRequest) -> SendReceipt:
        self.requests.append(request)
        step = self.script.pop(0) if self.script else OK
        if isinstance(step, DeliveryFailure):
            raise DeliveryFailed(step)
        self.accepted.append(request)
        return SendReceipt(f"SM{len(self.requests):04d}")

    def sender_key(self, request: SendRequest) -> str:
        return request.from_phone or "+15005550006"


OK = "ok"


def transient(code: str = "30001", retry_after: timedelta | None = None) -> DeliveryFailure:
    return DeliveryFailure(
        transient=True, code=code, message=f"transient {code}", retry_after=retry_after
    )


def permanent(code: str = "21211") -> DeliveryFailure:
    return DeliveryFailure(transient=False, code=code, message=f"permanent {code}")


class World:
    """One test's little universe: a memory store, its units of work, a fixed clock, ids."""

    def __init__(self, *, window_minutes: int = 45) -> None:
        self.store = MemoryStore()
        self.uow_factory: Callable[[], MemoryUnitOfWork] = MemoryUnitOfWorkFactory(self.store)
        self.clock = FixedClock(START)
        self.ids = SequentialIds("id")
        self.window = InactivityWindow(window_minutes)
        self.policy = RetryPolicy()
        self._provider_ids = itertools.count(1)

    # -- time ---------------------------------------------------------------------------------
    @property
    def now(self) -> datetime:
        return self.clock.now()

    def advance(self, **delta: float) -> datetime:
        return self.clock.advance(timedelta(**delta))

    # -- data an operator sets up ---------------------------------------------------------------
    def tenant(
        self,
        tenant_id: str = "shop-a",
        *,
        region: str = "FR",
        whatsapp_number: str | None = None,
        meta_phone_number_id: str | None = None,
    ) -> Tenant:
        """A tenant on Twilio, or on Meta when given its ``meta_phone_number_id``."""
        return add_tenant(
            uow_factory=self.uow_factory,
            clock=self.clock,
            tenant_id=tenant_id,
            name=f"Shop {tenant_id}",
            whatsapp_number=whatsapp_number,
            region=region,
            provider="meta" if meta_phone_number_id else "twilio",
            meta_phone_number_id=meta_phone_number_id,
        )

    def seller(self, tenant_id: str = "shop-a", phone: str = SELLER_PHONE) -> Seller:
        return add_seller(
            uow_factory=self.uow_factory,
            clock=self.clock,
            ids=self.ids,
            tenant_id=tenant_id,
            phone=phone,
        )

    # -- inbound --------------------------------------------------------------------------------
    def payload(
        self,
        tenant_id: str = "shop-a",
        sender: str = CLIENT_PHONE,
        *,
        provider_message_id: str | None = None,
        body: str = "I'll take the blue one",
        **extra: Any,
    ) -> dict[str, Any]:
        number = next(self._provider_ids)
        payload = {
            "tenantId": tenant_id,
            "providerMessageId": provider_message_id or f"SM{number:032d}",
            "from": f"whatsapp:{sender}",
            "body": body,
            "correlationId": f"corr-{number}",
        }
        payload.update(extra)
        return payload

    def receive(self, payload: object) -> InboundOutcome:
        return process_inbound_message(
            payload,
            uow_factory=self.uow_factory,
            clock=self.clock,
            ids=self.ids,
            window=self.window,
        )

    def message_from(self, sender: str, tenant_id: str = "shop-a", **extra: Any) -> Processed:
        outcome = self.receive(self.payload(tenant_id, sender, **extra))
        assert isinstance(outcome, Processed), outcome
        return outcome

    def close_inactive(self, batch_limit: int = 100) -> CloseReport:
        return close_inactive_sessions(
            uow_factory=self.uow_factory,
            clock=self.clock,
            window=self.window,
            batch_limit=batch_limit,
            run_id=f"close-{self.ids.new_id()}",
        )

    # -- outbox ---------------------------------------------------------------------------------
    def queue(self, to: str = CLIENT_PHONE, tenant_id: str = "shop-a", body: str = "Paid!") -> str:
        return queue_outbound_message(
            uow_factory=self.uow_factory,
            tenant_id=tenant_id,
            to=to,
            body=body,
            correlation_id=f"corr-out-{self.ids.new_id()}",
            clock=self.clock,
            ids=self.ids,
        )

    def sender(
        self,
        provider: MessagingProvider,
        *,
        batch_size: int = 10,
        concurrency: int | None = None,
        poll_interval: float = 5.0,
        policy: RetryPolicy | None = None,
        lease: timedelta = DEFAULT_LEASE,
        executor: Executor | None = None,
        waiter: Waiter | None = None,
        rate_limiter: RateLimiter | None = None,
        uow_factory: Callable[[], MemoryUnitOfWork] | None = None,
        recipient_gap: timedelta = timedelta(0),
    ) -> OutboxSender:
        """The production sender on this world: by default its sends run inline and its waits
        move the world's clock."""
        return OutboxSender(
            uow_factory=uow_factory or self.uow_factory,
            provider=provider,
            clock=self.clock,
            ids=self.ids,
            policy=policy or self.policy,
            lease=lease,
            batch_size=batch_size,
            concurrency=concurrency or batch_size,
            poll_interval=poll_interval,
            executor=executor or InlineExecutor(),
            waiter=waiter or VirtualWaiter(self.clock),
            rate_limiter=rate_limiter,
            recipient_gap=recipient_gap,
        )

    def send_due(
        self, provider: MessagingProvider, *, batch_size: int = 10, **options: Any
    ) -> BatchReport:
        """One cycle of the production sender: claim, send, record."""
        return self.sender(provider, batch_size=batch_size, **options).run_once()

    # -- reading the end state --------------------------------------------------------------------
    def sessions(self, tenant_id: str = "shop-a") -> list[LiveSession]:
        return [s for s in self.store.sessions.values() if s.tenant_id == tenant_id]

    def active_sessions(self, tenant_id: str = "shop-a") -> list[LiveSession]:
        return [s for s in self.sessions(tenant_id) if s.status is SessionStatus.ACTIVE]

    def session(self, session_id: str | None) -> LiveSession:
        assert session_id is not None
        return self.store.sessions[session_id]

    def outbox(self, message_id: str) -> OutboxMessage:
        return self.store.outbox[message_id]

    def events(self, event_type: str | None = None) -> list[EventRow]:
        return [e for e in self.store.events if event_type is None or e.event_type == event_type]

    def event_types(self) -> list[str]:
        return [e.event_type for e in self.store.events]
