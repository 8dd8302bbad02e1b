"""Delivery status callbacks: a provider's report updates the outbox row's delivery report,
forward only (``domain.delivery``)."""

from __future__ import annotations

import attrs

from application.webhook_input import TO_NUMBER_REGION
from domain.delivery import DeliveryReport, DeliveryStatus
from domain.errors import InvalidPhoneNumber
from domain.phones import normalise_phone
from ports.clock import Clock
from ports.unit_of_work import UnitOfWork, UnitOfWorkFactory


@attrs.frozen(kw_only=True)
class DeliveryRecorded:
    """The report changed the message's delivery report (now ``status``, ``error_code``)."""

    tenant_id: str
    outbox_id: str
    status: DeliveryStatus
    error_code: str | None = None


@attrs.frozen(kw_only=True)
class DeliveryIgnored:
    """The report changed nothing: ``stale`` (repeated, or behind what is stored),
    ``unknown_status`` (not an outbound status) or ``unknown_message`` (no such outbox row of the
    tenant, or no row with that MessageSid). The ids are those of the row when one was found."""

    reason: str
    tenant_id: str | None = None
    outbox_id: str | None = None


DeliveryOutcome = DeliveryRecorded | DeliveryIgnored


def record_delivery_report(
    *,
    status: str,
    error_code: str | None,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    tenant_id: str | None = None,
    outbox_id: str | None = None,
    provider_message_id: str | None = None,
    sender: str | None = None,
) -> DeliveryOutcome:
    """Merge a provider's status report into an outbound message's delivery report
    (``DeliveryReport.merged_into``): repeated and out-of-order reports are ignored, never errors.

    The message is the tenant's ``outbox_id`` when the callback URL carries both ids (the sender
    sets them); else the one the provider knows as ``provider_message_id`` (a Messaging Service's
    callback has no ids in its URL), looked up in the tenant whose WhatsApp number is ``sender``
    (the report's ``From``), or else by the row itself: the write is always scoped to the row's
    tenant. Raises StoreUnavailable."""
    delivery = DeliveryStatus.from_provider(status)
    if delivery is None:
        return DeliveryIgnored(reason="unknown_status", tenant_id=tenant_id, outbox_id=outbox_id)
    report = DeliveryReport.of(delivery, clock.now(), error_code)
    with uow_factory() as uow:
        target = _delivery_target(uow, tenant_id, outbox_id, provider_message_id, sender)
        if target is None:
            return DeliveryIgnored(
                reason="unknown_message", tenant_id=tenant_id, outbox_id=outbox_id
            )
        tenant_id, outbox_id = target
        if uow.outbox.record_delivery_status(tenant_id, outbox_id, report):
            stored = uow.outbox.delivery_report(tenant_id, outbox_id)
            uow.commit()
            return DeliveryRecorded(
                tenant_id=tenant_id,
                outbox_id=outbox_id,
                status=stored.status if stored else delivery,
                error_code=stored.error_code if stored else report.error_code,
            )
        if uow.outbox.get(tenant_id, outbox_id) is None:
            return DeliveryIgnored(
                reason="unknown_message", tenant_id=tenant_id, outbox_id=outbox_id
            )
    return DeliveryIgnored(reason="stale", tenant_id=tenant_id, outbox_id=outbox_id)


def _delivery_target(
    uow: UnitOfWork,
    tenant_id: str | None,
    outbox_id: str | None,
    provider_message_id: str | None,
    sender: str | None,
) -> tuple[str, str] | None:
    """``(tenant_id, outbox_id)`` of the message a report is about, or None."""
    if tenant_id and outbox_id:
        return tenant_id, outbox_id
    if not provider_message_id:
        return None
    tenant = None
    if sender:
        try:
            number = normalise_phone(sender, TO_NUMBER_REGION)
        except InvalidPhoneNumber:
            number = None
        tenant = uow.tenants.find_by_whatsapp_number(number) if number else None
    if tenant is not None:
        found = uow.outbox.find_by_provider_message_id(tenant.id, provider_message_id)
        if found is not None:
            return tenant.id, found
    return uow.outbox.locate_provider_message(provider_message_id)
