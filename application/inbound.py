"""The inbound use case: validate, classify the sender, attach to the live session, record once."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import attrs

from application.errors import ContentionError
from application.live_sessions import Unread, attach_to_current_session
from domain.dead_letters import DeadLetter, DeadLetterSource, as_json_payload
from domain.errors import InvalidPayload, InvalidPhoneNumber, UnknownTenant
from domain.events import InboundRejected
from domain.inbound import InboundMessage, InboundRecord, best_effort_ids
from domain.live_sessions import InactivityWindow, LiveSession, received_instant
from domain.phones import normalise_international_sender, normalise_sender, phone_key
from domain.senders import SenderType, classify_sender
from ports.clock import Clock, IdGenerator
from ports.repositories import DuplicateInboundMessage, TouchedWrite
from ports.unit_of_work import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger("livesell.inbound")

RACE_RETRIES = 5


class RejectReason:
    INVALID_PAYLOAD = "invalid_payload"
    UNKNOWN_TENANT = "unknown_tenant"
    INVALID_PHONE = "invalid_phone"
    UNKNOWN_NUMBER = "unknown_number"
    MISSING_FIELDS = "missing_fields"
    WEBHOOK_ERROR = "webhook_error"
    RETRIES_EXHAUSTED = "retries_exhausted"


@attrs.frozen
class Processed:
    """The message is recorded and classified; ``enriched`` is the EnrichedInboundMessage."""

    enriched: dict[str, Any]
    duplicate: bool = False


@attrs.frozen
class Rejected:
    """Rejected for good: a dead letter and an ``inbound.rejected`` event hold the message;
    ``duplicate`` when it had been rejected already (nothing recorded again)."""

    reason: str
    error: str
    dead_letter_id: str
    duplicate: bool = False


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
    outcome = _process(message, uow_factory=uow_factory, now=now, ids=ids, window=window)
    if isinstance(outcome, Processed):
        return outcome
    return reject_inbound(
        payload,
        outcome.reason,
        str(outcome.error),
        uow_factory=uow_factory,
        clock=clock,
        ids=ids,
        tenant_id=outcome.tenant_id,
    )


@attrs.frozen
class _Refused:
    """The message cannot be processed and is to be rejected for ``reason``; ``tenant_id``: the
    tenant it names, when that tenant exists."""

    reason: str
    error: Exception
    tenant_id: str | None = None


def _process(
    message: InboundMessage,
    *,
    uow_factory: UnitOfWorkFactory,
    now: datetime,
    ids: IdGenerator,
    window: InactivityWindow,
) -> Processed | _Refused:
    """``_process_once``, again from the start while a concurrent job of the same message writes
    its record first. Raises ContentionError when that keeps happening."""
    for _ in range(RACE_RETRIES):
        with uow_factory() as uow:
            outcome = _process_once(uow, message, now=now, ids=ids, window=window)
        if outcome is not None:
            return outcome
    raise ContentionError(f"inbound message {message.provider_message_id!r} kept racing")


def _process_once(
    uow: UnitOfWork,
    message: InboundMessage,
    *,
    now: datetime,
    ids: IdGenerator,
    window: InactivityWindow,
) -> Processed | _Refused | None:
    """Classify the sender, attach the message to the live session and record it processed,
    committed in ``uow``. None when a concurrent job wrote the record first: nothing is committed
    and the caller tries again."""
    international = normalise_international_sender(
        message.from_address, wa_id=message.content.wa_id
    )
    if international is not None:
        # The phone key does not depend on the tenant's region: the tenant, the record, the
        # seller and the active session read at once (one round trip in SQL, ADR 0028).
        from_e164 = international
        tenant, facts = uow.lookups.tenant_and_facts(
            message.tenant_id, message.provider_message_id, phone_key(from_e164)
        )
        if tenant is None:
            return _Refused(RejectReason.UNKNOWN_TENANT, UnknownTenant(message.tenant_id))
    else:
        tenant = uow.tenants.get(message.tenant_id)
        if tenant is None:
            return _Refused(RejectReason.UNKNOWN_TENANT, UnknownTenant(message.tenant_id))
        try:
            from_e164 = normalise_sender(
                message.from_address, tenant.default_region, wa_id=message.content.wa_id
            )
        except InvalidPhoneNumber as exc:
            return _Refused(RejectReason.INVALID_PHONE, exc, tenant_id=message.tenant_id)
        # The record, the seller and the active session read at once (one round trip in SQL).
        facts = uow.lookups.inbound_facts(
            tenant.id, message.provider_message_id, phone_key(from_e164)
        )
    record = facts.record
    if record is not None and record.is_processed:
        return Processed(record.enriched(), duplicate=True)
    sender = classify_sender(facts.seller)
    at = received_instant(message.received_at, now)
    active: LiveSession | Unread | None = facts.active_session
    if (
        isinstance(active, LiveSession)
        and not active.is_stale(at, window)
        and (sender is SenderType.SELLER or active.covers(at, window))
    ):
        # The common case: the message joins the active session it read, the touch and the
        # record's write in one round trip (ADR 0028).
        written = _record_touching(
            uow,
            record,
            message,
            ids=ids,
            from_e164=from_e164,
            sender=sender,
            session=active,
            at=at,
            now=now,
        )
        if isinstance(written, Processed):
            return written
        if written is TouchedWrite.RECORD_TAKEN:
            return None  # a concurrent job's record: start again from the reads
        # The session was closed meanwhile (nothing written): the general path in this unit of
        # work, which reads the active session again and never reopens a closed one.
        if record is not None:
            record = uow.inbound.get(tenant.id, message.provider_message_id)
            if record is not None and record.is_processed:
                return Processed(record.enriched(), duplicate=True)
        active = Unread.UNREAD
    session_id = attach_to_current_session(
        uow,
        tenant_id=tenant.id,
        sender=sender,
        at=at,
        now=now,
        window=window,
        ids=ids,
        correlation_id=message.correlation_id,
        known_active=active,
    )
    record = _write_processed(
        uow,
        record,
        message,
        ids=ids,
        from_e164=from_e164,
        sender=sender,
        live_session_id=session_id,
        now=now,
    )
    if record is None:
        return None
    uow.commit()
    return Processed(record.enriched())


def _record_touching(
    uow: UnitOfWork,
    record: InboundRecord | None,
    message: InboundMessage,
    *,
    ids: IdGenerator,
    from_e164: str,
    sender: SenderType,
    session: LiveSession,
    at: datetime,
    now: datetime,
) -> Processed | TouchedWrite:
    """The message's record moved to ``processed`` in ``session``, written with the session's
    touch at ``at`` and committed. Otherwise what ``record_touching`` answered, nothing
    committed: the session closed meanwhile, or the record written by a concurrent job."""
    was = None if record is None else record.state
    if record is None:
        record = InboundRecord(id=ids.new_id(), message=message)
    record.mark_processed(from_e164=from_e164, sender=sender, live_session_id=session.id, now=now)
    written = uow.lookups.record_touching(
        record, was=was, session_id=session.id, at=at, sender=sender
    )
    if written is not TouchedWrite.WRITTEN:
        return written
    uow.commit()
    return Processed(record.enriched())


def _write_processed(
    uow: UnitOfWork,
    record: InboundRecord | None,
    message: InboundMessage,
    *,
    ids: IdGenerator,
    from_e164: str,
    sender: SenderType,
    live_session_id: str | None,
    now: datetime,
) -> InboundRecord | None:
    """The message's record (a new one when it has none yet) moved to ``processed`` and written;
    None when a concurrent job wrote it first."""
    new = record is None
    if record is None:
        record = InboundRecord(id=ids.new_id(), message=message)
    was = record.state
    record.mark_processed(
        from_e164=from_e164, sender=sender, live_session_id=live_session_id, now=now
    )
    if not new:
        return record if uow.inbound.save(record, was=was) else None
    try:
        uow.inbound.add(record)
    except DuplicateInboundMessage:
        return None
    return record


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
) -> InboundOutcome:
    """Record a message given up on, once (issue 11 §1): a ``webhook-processing`` dead letter
    holding the payload whole, an ``inbound.rejected`` event, and its inbox record, when it has
    one, moved to the terminal ``rejected`` state, all in one transaction. ``tenant_id`` is kept
    only when it names an existing tenant.

    Idempotent per ``(tenantId, providerMessageId)``: while the message has a dead letter not yet
    replayed, a repeat records nothing and returns that first rejection; a message processed
    meanwhile returns its processed result. The record's conditional write serialises concurrent
    rejections of one message, so however often the job runs there is one dead letter. A given
    ``dead_letter_id`` is written once: when it exists already, nothing is written again (a parked
    dead letter drained twice, ADR 0013); ``rejected_at`` is when it was given up on.
    """
    claimed_tenant, provider_id, correlation_id = best_effort_ids(payload)
    for _ in range(RACE_RETRIES):
        now = rejected_at or clock.now()
        with uow_factory() as uow:
            if dead_letter_id is not None and uow.dead_letters.get(dead_letter_id) is not None:
                return Rejected(reason, error, dead_letter_id, duplicate=True)
            if tenant_id is None and claimed_tenant is not None:
                tenant_id = claimed_tenant if uow.tenants.get(claimed_tenant) is not None else None
            record = (
                uow.inbound.get(tenant_id, provider_id)
                if tenant_id is not None and provider_id is not None
                else None
            )
            if record is not None and record.is_processed:
                return Processed(record.enriched(), duplicate=True)
            first = (
                uow.dead_letters.find_open(
                    DeadLetterSource.WEBHOOK_PROCESSING, tenant_id, provider_id
                )
                if provider_id is not None
                else None
            )
            if first is not None:
                if record is not None and not record.is_rejected:
                    # A record left received by an older version: end it on its dead letter.
                    was = record.state
                    record.mark_rejected(
                        reason=first.error_code or reason, dead_letter_id=first.id, now=now
                    )
                    if not uow.inbound.save(record, was=was):
                        continue
                    uow.commit()
                return Rejected(first.error_code or reason, first.error, first.id, duplicate=True)
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
            if not _end_record(uow, record, reason, dead_letter.id, now):
                continue
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
        break
    else:
        raise ContentionError(f"rejection of inbound message {provider_id!r} kept racing")
    log.warning(
        "Inbound message rejected",
        extra={
            "context": {
                "reason": reason,
                "error": error,
                "deadLetterId": dead_letter.id,
                "tenantId": tenant_id,
                "providerMessageId": provider_id,
                "correlationId": correlation_id,
            }
        },
    )
    return Rejected(reason, error, dead_letter.id)


def _end_record(
    uow: UnitOfWork, record: InboundRecord | None, reason: str, dead_letter_id: str, now: datetime
) -> bool:
    """Move the message's inbox record, if it has one, to ``rejected``. A job that came without
    a record (enqueued by another service) gets none: its dead letter is its trace, and writing a
    record could fail for the very reason the job was given up on. False when a concurrent job
    moved the record first: the caller reads again."""
    if record is None:
        return True
    was = record.state
    record.mark_rejected(reason=reason, dead_letter_id=dead_letter_id, now=now)
    return uow.inbound.save(record, was=was)
