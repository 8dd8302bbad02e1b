"""The durable inbox (ADR 0008): what the webhook does with a verified Twilio request.

An inbound message is recorded ``received`` in the database before the webhook answers, then
enqueued on ``webhook-processing``; the processor marks it processed. A message whose enqueue
failed (Redis down, evicted, a crash between commit and enqueue) stays ``received``, and
``reconcile_inbox`` (``application.inbox_reconcile``) enqueues it again later: processing is
idempotent, so a second job is harmless.

Delivery status callbacks update the outbox row's delivery report, forward only
(``application.delivery_reports``). Every name of both stays importable from here.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import attrs

from application.delivery_reports import (
    DeliveryIgnored,
    DeliveryOutcome,
    DeliveryRecorded,
    record_delivery_report,
)
from application.inbound import Processed, RejectReason, reject_inbound
from application.inbox_reconcile import (
    MAX_PAGES_PER_PASS,
    ReconcileReport,
    RequeueSchedule,
    reconcile_inbox,
)
from application.webhook_input import TO_NUMBER_REGION, WebhookMessage, cleaned, provider_params
from domain.errors import FieldError, InvalidPayload, InvalidPhoneNumber
from domain.inbound import InboundMessage, InboundRecord
from domain.phones import normalise_phone
from domain.tenants import Tenant
from ports.clock import Clock, IdGenerator
from ports.queue import InboundQueue, QueueUnavailable
from ports.repositories import DuplicateInboundMessage
from ports.unit_of_work import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger("livesell.inbox")

__all__ = [
    "MAX_PAGES_PER_PASS",
    "META_PHONE_NUMBER_ID_PARAM",
    "TO_NUMBER_REGION",
    "UNKNOWN_NUMBER",
    "DeliveryIgnored",
    "DeliveryOutcome",
    "DeliveryRecorded",
    "Duplicate",
    "Invalid",
    "ReceiveOutcome",
    "ReconcileReport",
    "Recorded",
    "RequeueSchedule",
    "UnknownNumber",
    "WebhookMessage",
    "receive_inbound_message",
    "reconcile_inbox",
    "record_delivery_report",
    "reject_webhook_message",
    "serves_meta_phone_number_id",
    "tenant_for_number",
    "tenant_for_payload",
]


@attrs.frozen(kw_only=True)
class Recorded:
    """Recorded ``received``; ``enqueued`` False means the reconciler will enqueue it later;
    ``flags`` say which fields were cleaned to be stored (the exact form is kept)."""

    tenant_id: str
    record_id: str
    correlation_id: str
    enqueued: bool
    job_id: str | None = None
    flags: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class Duplicate:
    """Already recorded (a provider retry): nothing recorded or enqueued again."""

    tenant_id: str
    record_id: str
    correlation_id: str
    processed: bool


@attrs.frozen(kw_only=True)
class UnknownNumber:
    """No tenant has the number the message was sent to: not recorded nor enqueued, but kept
    whole as a dead letter without a tenant (a mistyped number must not drop messages
    silently)."""

    to_address: str
    dead_letter_id: str | None = None


@attrs.frozen(kw_only=True)
class Invalid:
    """The message breaks the payload contract (SPEC §2): kept as a dead letter, not enqueued."""

    errors: tuple[FieldError, ...]
    dead_letter_id: str


ReceiveOutcome = Recorded | Duplicate | UnknownNumber | Invalid


def receive_inbound_message(
    message: WebhookMessage,
    *,
    correlation_id: str | None,
    uow_factory: UnitOfWorkFactory,
    queue: InboundQueue,
    clock: Clock,
    ids: IdGenerator,
    received_at: datetime | None = None,
) -> ReceiveOutcome:
    """Record one inbound message in the durable inbox, then enqueue it once.

    The message is first made storable (``application.webhook_input.cleaned``: flagged, the
    exact form kept). The tenant is the one whose WhatsApp number is ``to_address``; a number no
    tenant has is an UnknownNumber, kept as a dead letter without a tenant (once per
    ``MessageSid``). A repeated ``provider_message_id`` of the tenant is a Duplicate: neither
    recorded nor enqueued again. A queue failure is not an error (the message is durable; the
    reconciler enqueues it). Raises StoreUnavailable when the database cannot record it: the
    caller must not answer success then. ``received_at`` is when the webhook received it (a
    request drained from the spool, ADR 0013), the clock's now by default.
    """
    now = received_at or clock.now()
    message = cleaned(message)
    correlation_id = correlation_id or ids.new_id()
    invalid: InvalidPayload | None = None
    with uow_factory() as uow:
        tenant = _tenant_of(uow, message)
        if tenant is not None:
            payload = _payload(message, tenant.id, correlation_id, now)
            try:
                record = InboundRecord(
                    id=ids.new_id(), message=InboundMessage.from_payload(payload, now)
                )
            except InvalidPayload as exc:
                invalid = exc
            else:
                try:
                    uow.inbound.add(record)
                except DuplicateInboundMessage:
                    return _duplicate(uow, tenant.id, message.provider_message_id)
                uow.commit()
    if tenant is None:
        return _unknown_number(message, correlation_id, now, uow_factory, clock, ids)
    if invalid is not None:
        rejected = reject_inbound(
            payload,
            RejectReason.INVALID_PAYLOAD,
            str(invalid),
            uow_factory=uow_factory,
            clock=clock,
            ids=ids,
            tenant_id=tenant.id,
        )
        if isinstance(rejected, Processed):  # pragma: no cover - an invalid message has no record
            raise DuplicateInboundMessage(f"{message.provider_message_id!r} was processed")
        return Invalid(errors=invalid.errors, dead_letter_id=rejected.dead_letter_id)
    job_id = _enqueue(record, queue)
    return Recorded(
        tenant_id=tenant.id,
        record_id=record.id,
        correlation_id=correlation_id,
        enqueued=job_id is not None,
        job_id=job_id,
        flags=message.flags,
    )


UNKNOWN_NUMBER = RejectReason.UNKNOWN_NUMBER


def _number(address: object) -> str | None:
    if not isinstance(address, str):
        return None
    try:
        return normalise_phone(address, TO_NUMBER_REGION)
    except InvalidPhoneNumber:
        return None


def _tenant_of(uow: UnitOfWork, message: WebhookMessage) -> Tenant | None:
    """The tenant a message was sent to: by Meta phone-number id for Meta's webhook, else by
    the WhatsApp number of ``to_address``."""
    if message.meta_phone_number_id is not None:
        return uow.tenants.find_by_meta_phone_number_id(message.meta_phone_number_id)
    number = _number(message.to_address)
    return uow.tenants.find_by_whatsapp_number(number) if number is not None else None


META_PHONE_NUMBER_ID_PARAM = "metadata.phone_number_id"
"""Where a Meta message's business phone-number id is kept in its parameters (ADR 0019)."""


def serves_meta_phone_number_id(
    *, uow_factory: UnitOfWorkFactory, tenant_id: str, phone_number_id: str
) -> bool:
    """Whether ``tenant_id`` is the tenant Meta serves under ``phone_number_id``: a status whose
    callback data names another tenant than its business number's is not matched by those ids."""
    with uow_factory() as uow:
        tenant = uow.tenants.find_by_meta_phone_number_id(phone_number_id)
    return tenant is not None and tenant.id == tenant_id


def tenant_for_payload(uow: UnitOfWork, payload: dict[str, Any]) -> str | None:
    """The id of the tenant a dead-lettered message was sent to: by its Meta phone-number id
    (kept in ``providerParams``) for a message of Meta's webhook, else by its ``to`` number."""
    params = payload.get("providerParams")
    phone_number_id = params.get(META_PHONE_NUMBER_ID_PARAM) if isinstance(params, dict) else None
    if isinstance(phone_number_id, str) and phone_number_id:
        tenant = uow.tenants.find_by_meta_phone_number_id(phone_number_id)
        return tenant.id if tenant is not None else None
    return tenant_for_number(uow, payload.get("to"))


def tenant_for_number(uow: UnitOfWork, to_address: object) -> str | None:
    """The id of the tenant whose WhatsApp number ``to_address`` is, or None."""
    number = _number(to_address)
    tenant = uow.tenants.find_by_whatsapp_number(number) if number is not None else None
    return tenant.id if tenant is not None else None


def _unknown_number(
    message: WebhookMessage,
    correlation_id: str,
    now: datetime,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    ids: IdGenerator,
) -> UnknownNumber:
    dead_letter_id = _dead_letter(
        message,
        None,
        RejectReason.UNKNOWN_NUMBER,
        "no tenant has the WhatsApp number the message was sent to"
        if message.meta_phone_number_id is None
        else "no tenant has the Meta phone-number id the message was sent to",
        correlation_id=correlation_id,
        now=now,
        uow_factory=uow_factory,
        clock=clock,
        ids=ids,
    )
    return UnknownNumber(to_address=message.to_address, dead_letter_id=dead_letter_id)


def reject_webhook_message(
    message: WebhookMessage,
    reason: str,
    error: str,
    *,
    correlation_id: str | None,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    ids: IdGenerator,
) -> str | None:
    """Keep a signed message the webhook cannot take (fields missing, or an error of ours) as a
    ``webhook-processing`` dead letter holding its whole parameter set, under the tenant its
    ``To`` names when one does. Returns the dead letter's id (the first one's, for a repeat).
    Raises StoreUnavailable."""
    now = clock.now()
    message = cleaned(message)
    with uow_factory() as uow:
        tenant = _tenant_of(uow, message)
    owner = tenant.id if tenant is not None else None
    return _dead_letter(
        message,
        owner,
        reason,
        error,
        correlation_id=correlation_id or ids.new_id(),
        now=now,
        uow_factory=uow_factory,
        clock=clock,
        ids=ids,
    )


def _dead_letter(
    message: WebhookMessage,
    tenant_id: str | None,
    reason: str,
    error: str,
    *,
    correlation_id: str,
    now: datetime,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    ids: IdGenerator,
) -> str | None:
    payload = _payload(message, tenant_id, correlation_id, now)
    if not message.content.provider_params:  # a message built without its form (tests, tools)
        payload["providerParams"] = provider_params(message.params)
    rejected = reject_inbound(
        payload, reason, error, uow_factory=uow_factory, clock=clock, ids=ids, tenant_id=tenant_id
    )
    return rejected.dead_letter_id if not isinstance(rejected, Processed) else None


def _payload(
    message: WebhookMessage, tenant_id: str | None, correlation_id: str, now: datetime
) -> dict[str, Any]:
    """The SPEC §2 job payload of a webhook message, with the optional keys of its content."""
    payload: dict[str, Any] = {
        "tenantId": tenant_id,
        "providerMessageId": message.provider_message_id,
        "from": message.from_address,
        "to": message.to_address,
        "body": message.body,
        "correlationId": correlation_id,
        "receivedAt": now.isoformat(),
        "profileName": message.profile_name,
        "numMedia": message.num_media,
        "mediaUrls": list(message.media_urls),
    }
    payload.update(message.content.to_payload())
    return payload


def _duplicate(uow: UnitOfWork, tenant_id: str, provider_message_id: str) -> Duplicate:
    first = uow.inbound.get(tenant_id, provider_message_id)
    if first is None:  # pragma: no cover - the conflicting row cannot vanish
        raise DuplicateInboundMessage(f"inbound message {provider_message_id!r} vanished")
    return Duplicate(
        tenant_id=tenant_id,
        record_id=first.id,
        correlation_id=first.message.correlation_id,
        processed=first.is_processed,
    )


def _enqueue(record: InboundRecord, queue: InboundQueue) -> str | None:
    """Enqueue a recorded message; None when the queue could not take it (it stays received)."""
    context = {
        "tenantId": record.tenant_id,
        "providerMessageId": record.provider_message_id,
        "correlationId": record.message.correlation_id,
    }
    try:
        return queue.enqueue(record.message.to_payload())
    except QueueUnavailable as exc:
        log.warning(
            "Inbound message recorded, enqueue deferred to the reconciler",
            extra={"context": {**context, "error": str(exc)}},
        )
    except Exception:  # the message is durable: a queue bug must not fail the request
        log.exception(
            "Inbound message recorded, enqueue failed; deferred to the reconciler",
            extra={"context": context},
        )
    return None
