"""The inbound use case: validate, classify the sender, attach to the live session, record once."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import attrs

from application.errors import ContentionError
from application.live_sessions import attach_to_current_session
from domain.dead_letters import DeadLetter, DeadLetterSource, as_json_payload
from domain.errors import InvalidPayload, InvalidPhoneNumber, UnknownTenant
from domain.events import InboundRejected
from domain.inbound import InboundMessage, InboundRecord, best_effort_ids
from domain.live_sessions import InactivityWindow, received_instant
from domain.phones import normalise_sender, phone_key
from domain.senders import classify_sender
from ports.clock import Clock, IdGenerator
from ports.repositories import DuplicateInboundMessage
from ports.unit_of_work import UnitOfWorkFactory

log = logging.getLogger("livesell.inbound")

RACE_RETRIES = 5


class RejectReason:
    INVALID_PAYLOAD = "invalid_payload"
    UNKNOWN_TENANT = "unknown_tenant"
    INVALID_PHONE = "invalid_phone"
    RETRIES_EXHAUSTED = "retries_exhausted"


@attrs.frozen
class Processed:
    """The message is recorded and classified; ``enriched`` is the EnrichedInboundMessage."""

    enriched: dict[str, Any]
    duplicate: bool = False


@attrs.frozen
class Rejected:
    """Rejected for good: a dead letter and an ``inbound.rejected`` event hold the message."""

    reason: str
    error: str
    dead_letter_id: str


InboundOutcome = Processed | Rejected


def process_inbound_message(
    payload: object,
    *,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    ids: IdGenerator,
    window: InactivityWindow,
) -> InboundOutcome:
    """Process one inbound job payload (SPEC §3 "Inbound processing").

    Idempotent per ``(tenantId, providerMessageId)``: a repeat returns the first result and records
    nothing. Bad payloads, unknown tenants and invalid phones are rejected (dead letter + event),
    never raised. Store failures raise, so the job is retried; a seller lookup that cannot be done
    never falls back to ``client``.
    """
    now = clock.now()
    try:
        message = InboundMessage.from_payload(payload, now)
    except InvalidPayload as exc:
        return reject_inbound(
            payload,
            RejectReason.INVALID_PAYLOAD,
            str(exc),
            uow_factory=uow_factory,
            clock=clock,
            ids=ids,
        )
    for _ in range(RACE_RETRIES):
        with uow_factory() as uow:
            tenant = uow.tenants.get(message.tenant_id)
            if tenant is None:
                error: Exception = UnknownTenant(message.tenant_id)
                reason = RejectReason.UNKNOWN_TENANT
                break
            try:
                from_e164 = normalise_sender(message.from_address, tenant.default_region)
            except InvalidPhoneNumber as exc:
                error, reason = exc, RejectReason.INVALID_PHONE
                break
            record = uow.inbound.get(tenant.id, message.provider_message_id)
            if record is not None and record.is_processed:
                return Processed(record.enriched(), duplicate=True)
            sender = classify_sender(uow.sellers.find_by_key(tenant.id, phone_key(from_e164)))
            session_id = attach_to_current_session(
                uow,
                tenant_id=tenant.id,
                sender=sender,
                at=received_instant(message.received_at, now),
                now=now,
                window=window,
                ids=ids,
                correlation_id=message.correlation_id,
            )
            if record is None:
                record = InboundRecord(id=ids.new_id(), message=message)
                record.mark_processed(
                    from_e164=from_e164, sender=sender, live_session_id=session_id, now=now
                )
                try:
                    uow.inbound.add(record)
                except DuplicateInboundMessage:
                    continue
            else:
                record.mark_processed(
                    from_e164=from_e164, sender=sender, live_session_id=session_id, now=now
                )
                if not uow.inbound.save(record):
                    continue
            uow.commit()
            return Processed(record.enriched())
    else:
        raise ContentionError(f"inbound message {message.provider_message_id!r} kept racing")
    return reject_inbound(
        payload,
        reason,
        str(error),
        uow_factory=uow_factory,
        clock=clock,
        ids=ids,
        tenant_id=message.tenant_id if reason == RejectReason.INVALID_PHONE else None,
    )


def reject_inbound(
    payload: object,
    reason: str,
    error: str,
    *,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    ids: IdGenerator,
    tenant_id: str | None = None,
    attempts: int = 1,
    dead_letter_id: str | None = None,
    rejected_at: datetime | None = None,
) -> Rejected:
    """Record a job given up on: a ``webhook-processing`` dead letter holding the payload whole,
    and an ``inbound.rejected`` event, in one transaction. ``tenant_id`` is kept only when it names
    an existing tenant. A given ``dead_letter_id`` is written once: when it exists already,
    nothing is written again (a parked dead letter drained twice, ADR 0013).
    """
    now = rejected_at or clock.now()
    claimed_tenant, provider_id, correlation_id = best_effort_ids(payload)
    with uow_factory() as uow:
        if dead_letter_id is not None and uow.dead_letters.get(dead_letter_id) is not None:
            return Rejected(reason, error, dead_letter_id)
        if tenant_id is None and claimed_tenant is not None:
            tenant_id = claimed_tenant if uow.tenants.get(claimed_tenant) is not None else None
        dead_letter = DeadLetter(
            id=dead_letter_id or ids.new_id(),
            tenant_id=tenant_id,
            source=DeadLetterSource.WEBHOOK_PROCESSING,
            source_id=provider_id or "(none)",
            payload=as_json_payload(payload),
            error=error,
            error_code=reason,
            attempts=attempts,
            created_at=now,
        )
        uow.dead_letters.add(dead_letter)
        uow.events.append(
            [
                InboundRejected(
                    tenant_id=tenant_id,
                    subject_id=provider_id or dead_letter.id,
                    correlation_id=correlation_id or dead_letter.id,
                    occurred_at=now,
                    reason=reason,
                    error=error,
                    dead_letter_id=dead_letter.id,
                )
            ]
        )
        uow.commit()
    log.warning(
        "Inbound message rejected",
        extra={
            "context": {
                "reason": reason,
                "error": error,
                "deadLetterId": dead_letter.id,
                "tenantId": tenant_id,
                "correlationId": correlation_id,
            }
        },
    )
    return Rejected(reason, error, dead_letter.id)
