"""Domain objects for the contract suites, built directly (no use case in between)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.dead_letters import DeadLetter, DeadLetterSource
from domain.inbound import InboundMessage, InboundRecord
from domain.live_sessions import LiveSession
from domain.outbox import OutboxMessage
from domain.tenants import Seller, Tenant
from ports.unit_of_work import UnitOfWorkFactory

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SELLER_PHONE = "+33612345678"
CLIENT_PHONE = "+33698765432"


def at(seconds: float = 0, *, minutes: float = 0) -> datetime:
    return T0 + timedelta(seconds=seconds, minutes=minutes)


def tenant(
    tenant_id: str = "shop-a",
    whatsapp_number: str | None = None,
    *,
    meta_phone_number_id: str | None = None,
) -> Tenant:
    """A tenant on Twilio, or on Meta when given its ``meta_phone_number_id``."""
    return Tenant(
        id=tenant_id,
        name=f"Shop {tenant_id}",
        whatsapp_number=whatsapp_number,
        created_at=T0,
        provider="meta" if meta_phone_number_id else "twilio",
        meta_phone_number_id=meta_phone_number_id,
    )


def seller(tenant_id: str = "shop-a", phone: str = SELLER_PHONE, seller_id: str = "") -> Seller:
    return Seller(
        id=seller_id or f"seller-{tenant_id}-{phone[-4:]}",
        tenant_id=tenant_id,
        phone_e164=phone,
        name="Alice",
        created_at=T0,
    )


def session(tenant_id: str = "shop-a", session_id: str = "", *, now: datetime = T0) -> LiveSession:
    return LiveSession.open(
        id=session_id or f"session-{tenant_id}",
        tenant_id=tenant_id,
        now=now,
        correlation_id=f"corr-{tenant_id}",
    )


def inbound(
    tenant_id: str = "shop-a",
    provider_message_id: str = "SM1",
    record_id: str = "",
    *,
    received_at: datetime = T0,
) -> InboundRecord:
    return InboundRecord(
        id=record_id or f"in-{tenant_id}-{provider_message_id}",
        message=InboundMessage(
            tenant_id=tenant_id,
            provider_message_id=provider_message_id,
            from_address=f"whatsapp:{CLIENT_PHONE}",
            body="I'll take the blue one",
            correlation_id=f"corr-{provider_message_id}",
            received_at=received_at,
            to_address="whatsapp:+14155238886",
            profile_name="Bob",
            num_media=2,
            media_urls=("https://example.com/a.jpg", "https://example.com/b.jpg"),
        ),
    )


def outbox(
    tenant_id: str = "shop-a",
    message_id: str = "",
    *,
    now: datetime = T0,
    to: str = CLIENT_PHONE,
) -> OutboxMessage:
    return OutboxMessage.new(
        id=message_id or f"out-{tenant_id}",
        tenant_id=tenant_id,
        to_phone=to,
        body="Your order is confirmed",
        correlation_id=f"corr-{message_id or tenant_id}",
        now=now,
        from_phone="+14155238886",
    )


def dead_letter(
    tenant_id: str | None = "shop-a", dead_letter_id: str = "", *, created_at: datetime = T0
) -> DeadLetter:
    return DeadLetter(
        id=dead_letter_id or f"dl-{tenant_id}",
        tenant_id=tenant_id,
        source=DeadLetterSource.WEBHOOK_PROCESSING,
        source_id="SM1",
        payload={"tenantId": tenant_id, "nested": {"list": [1, 2.5, None, True]}},
        error="invalid payload: body: is required",
        error_code="invalid_payload",
        attempts=1,
        created_at=created_at,
    )


def seed(uow_factory: UnitOfWorkFactory, *tenant_ids: str) -> None:
    """Store the tenants the rows of a test belong to (the SQL tables reference them)."""
    with uow_factory() as uow:
        for tenant_id in tenant_ids:
            uow.tenants.add(tenant(tenant_id))
        uow.commit()
