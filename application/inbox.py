"""The durable inbox (ADR 0008): what the webhook does with a verified Twilio request.

An inbound message is recorded ``received`` in the database before the webhook answers, then
enqueued on ``webhook-processing``; the processor marks it processed. A message whose enqueue
failed (Redis down, evicted, a crash between commit and enqueue) stays ``received``, and
``reconcile_inbox`` enqueues it again later: processing is idempotent, so a second job is harmless.

Delivery status callbacks update the outbox row's delivery report, forward only
(``domain.delivery``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import attrs

from application.inbound import Processed, RejectReason, reject_inbound
from application.webhook_input import WebhookMessage, cleaned, provider_params
from domain.delivery import DeliveryReport, DeliveryStatus
from domain.errors import FieldError, InvalidPayload, InvalidPhoneNumber
from domain.inbound import InboundMessage, InboundRecord
from domain.phones import normalise_phone
from domain.tenants import Tenant
from ports.clock import Clock, IdGenerator
from ports.queue import InboundQueue, QueueUnavailable
from ports.repositories import DuplicateInboundMessage
from ports.unit_of_work import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger("livesell.inbox")

TO_NUMBER_REGION = "US"
"""Twilio sends ``To`` in E.164 (``whatsapp:+14155238886``); the region only reads a number
written without ``+``, which Twilio never sends."""


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


MAX_PAGES_PER_PASS = 50
"""A pass reads at most this many pages of ``limit`` waiting records (it goes on where it
stopped at the next pass), so one pass's work is bounded however large the backlog."""


@attrs.frozen(kw_only=True)
class ReconcileReport:
    """One reconciler pass: records read still ``received``, how many were enqueued again, how
    many were left for a later pass (enqueued again recently), whether the pass reached the end
    of the waiting records (else the next pass goes on from where this one stopped), and the
    queue error that stopped the pass early, if any."""

    found: int
    enqueued: int
    deferred: int = 0
    complete: bool = True
    queue_error: str | None = None


class RequeueSchedule:
    """When a record still ``received`` may be enqueued again, and where the reconciler's walk
    over the waiting records stands. After each re-enqueue a record's wait doubles (from
    ``first_wait`` up to ``max_wait``), so a long queue backlog, where records wait because their
    jobs have not run yet, is not multiplied by the reconciler. Kept in memory: a restarted
    reconciler starts again from ``first_wait`` and from the oldest record (a duplicate job is
    harmless)."""

    def __init__(self, first_wait: timedelta, max_wait: timedelta) -> None:
        self.first_wait = first_wait
        self.max_wait = max(max_wait, first_wait)
        self.cursor: tuple[datetime, str] | None = None
        self._next: dict[str, tuple[datetime, timedelta]] = {}
        self._seen: set[str] = set()

    def is_due(self, record_id: str, now: datetime) -> bool:
        entry = self._next.get(record_id)
        return entry is None or entry[0] <= now

    def enqueued(self, record_id: str, now: datetime) -> None:
        previous = self._next.get(record_id)
        wait = self.first_wait if previous is None else min(previous[1] * 2, self.max_wait)
        self._next[record_id] = (now + wait, wait)

    def seen(self, record_ids: set[str], *, end: bool) -> None:
        """Records read by the walk; at its ``end``, forget those no longer waiting (processed
        or rejected since) and start the next walk from the oldest record."""
        self._seen |= record_ids
        if end:
            self.keep_only(self._seen)
            self._seen = set()
            self.cursor = None

    def keep_only(self, record_ids: set[str]) -> None:
        for record_id in set(self._next) - record_ids:
            del self._next[record_id]


def reconcile_inbox(
    *,
    uow_factory: UnitOfWorkFactory,
    queue: InboundQueue,
    clock: Clock,
    older_than: timedelta,
    limit: int,
    schedule: RequeueSchedule | None = None,
    received_since: datetime | None = None,
) -> ReconcileReport:
    """Enqueue again up to ``limit`` records still ``received`` since before ``now - older_than``
    (terminal records, processed or rejected, never), oldest first, any tenant, skipping those
    ``schedule`` says were enqueued again too recently.

    Records are read page by page (keyset on ``(received_at, id)``), and the walk goes on from
    where the previous pass stopped (``schedule.cursor``): however many old records wait, every
    record is reached, so none can be starved. Stops at the first queue failure (the next pass
    tries again). Raises StoreUnavailable when the database cannot be read. ``received_since``
    starts the walk at the records received at or after it (a pass after a queue outage, with no
    schedule, ADR 0013)."""
    now = clock.now()
    after = schedule.cursor if schedule is not None else None
    if after is None and received_since is not None:
        after = (received_since, "")  # keyset (received_at, id): every id sorts after ""
    found = enqueued = deferred = 0
    for _ in range(MAX_PAGES_PER_PASS):
        with uow_factory() as uow:
            page = list(uow.inbound.list_received_before(now - older_than, limit, after=after))
        found += len(page)
        for record in page:
            if schedule is not None and not schedule.is_due(record.id, now):
                deferred += 1
                continue
            try:
                queue.enqueue(record.message.to_payload())
            except QueueUnavailable as exc:
                return ReconcileReport(
                    found=found,
                    enqueued=enqueued,
                    deferred=deferred,
                    complete=False,
                    queue_error=str(exc),
                )
            enqueued += 1
            if schedule is not None:
                schedule.enqueued(record.id, now)
            _log_requeued(record)
        end = len(page) < limit
        if schedule is not None:
            schedule.seen({record.id for record in page}, end=end)
        if end:
            return ReconcileReport(found=found, enqueued=enqueued, deferred=deferred)
        after = (page[-1].message.received_at, page[-1].id)
        if schedule is not None:
            schedule.cursor = after
        if enqueued >= limit:
            break
    return ReconcileReport(found=found, enqueued=enqueued, deferred=deferred, complete=False)


def _log_requeued(record: InboundRecord) -> None:
    log.info(
        "Inbound message enqueued again by the reconciler",
        extra={
            "context": {
                "tenantId": record.tenant_id,
                "providerMessageId": record.provider_message_id,
                "correlationId": record.message.correlation_id,
                "receivedAt": record.message.received_at.isoformat(),
            }
        },
    )


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
