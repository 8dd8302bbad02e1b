"""Outbox use cases: write an outbound message; claim, send and record due messages (the steps
``application.outbox_sender.OutboxSender`` runs)."""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

import attrs

from domain.dead_letters import DeadLetter
from domain.errors import UnknownTenant
from domain.outbox import DeadLettered, DeliveryFailure, OutboxMessage
from domain.phones import mask_phone, normalise_phone
from domain.retry import RetryPolicy
from domain.service_window import SendTemplate
from ports.clock import Clock, IdGenerator
from ports.messaging import (
    DeliveryFailed,
    MessagingProvider,
    RateLimiter,
    SendReceipt,
    SendRequest,
)
from ports.unit_of_work import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger("livesell.outbox")

DEFAULT_LEASE = timedelta(seconds=60)


def write_outbound_message(
    uow: UnitOfWork,
    *,
    tenant_id: str,
    to: str,
    body: str,
    correlation_id: str,
    clock: Clock,
    ids: IdGenerator,
    content_sid: str | None = None,
    content_variables: Mapping[str, str] | None = None,
    media_urls: Sequence[str] = (),
    expires_in: timedelta | None = None,
) -> OutboxMessage:
    """Add a pending outbox row in the caller's transaction (the caller commits).

    A free-form ``body`` (with optional ``media_urls``) or a template (``content_sid`` and its
    ``content_variables``); ``expires_in``: not handed to the provider after that long."""
    tenant = uow.tenants.get(tenant_id)
    if tenant is None:
        raise UnknownTenant(tenant_id)
    now = clock.now()
    message = OutboxMessage.new(
        id=ids.new_id(),
        tenant_id=tenant.id,
        to_phone=normalise_phone(to, tenant.default_region),
        body=body,
        correlation_id=correlation_id,
        now=now,
        from_phone=tenant.sender,
        provider=tenant.provider,
        content_sid=content_sid,
        content_variables=content_variables,
        media_urls=media_urls,
        expires_at=now + expires_in if expires_in is not None else None,
    )
    uow.outbox.add(message)
    return message


def queue_outbound_message(
    *,
    uow_factory: UnitOfWorkFactory,
    tenant_id: str,
    to: str,
    body: str,
    correlation_id: str,
    clock: Clock,
    ids: IdGenerator,
    content_sid: str | None = None,
    content_variables: Mapping[str, str] | None = None,
    media_urls: Sequence[str] = (),
    expires_in: timedelta | None = None,
) -> str:
    """Write one outbound message to the outbox and commit; returns its id.

    Raises UnknownTenant, InvalidPhoneNumber (number read with the tenant's region) or
    InvalidOutboundContent (a ValueError: oversize body, neither body, media nor template, bad
    media URL, non-positive expiry).
    """
    with uow_factory() as uow:
        message = write_outbound_message(
            uow,
            tenant_id=tenant_id,
            to=to,
            body=body,
            correlation_id=correlation_id,
            clock=clock,
            ids=ids,
            content_sid=content_sid,
            content_variables=content_variables,
            media_urls=media_urls,
            expires_in=expires_in,
        )
        uow.commit()
    return message.id


@attrs.frozen
class Attempt:
    """One send's result: a receipt or the failure."""

    message: OutboxMessage
    result: SendReceipt | DeliveryFailure


@attrs.frozen
class Expired:
    """A claimed message found past its ``expires_at`` before the provider call: not sent."""

    message: OutboxMessage


@attrs.frozen
class BatchReport:
    claimed: int
    sent: int
    retried: int
    dead: int
    lost: int
    """Outcomes not stored because a later claim took the row over (lease passed mid-send)."""
    expired: int = 0
    """Claims ended ``expired`` without a provider call."""

    @property
    def processed(self) -> int:
        return self.sent + self.retried + self.dead + self.expired


def claim_due_messages(
    *, uow_factory: UnitOfWorkFactory, clock: Clock, lease: timedelta, limit: int
) -> Sequence[OutboxMessage]:
    """Claim up to ``limit`` due messages and commit before any is sent."""
    with uow_factory() as uow:
        claimed = uow.outbox.claim_due(clock.now(), lease, limit)
        uow.commit()
    return claimed


def send_request(message: OutboxMessage, now: datetime) -> SendRequest:
    """What the provider is asked to send, as the message was written; an expiring message
    carries the seconds it has left (at least 1) as ``validity_period``."""
    validity = None
    if message.expires_at is not None:
        validity = max(1, math.ceil((message.expires_at - now).total_seconds()))
    return SendRequest(
        outbox_id=message.id,
        tenant_id=message.tenant_id,
        to_phone=message.to_phone,
        body=message.body,
        correlation_id=message.correlation_id,
        from_phone=message.from_phone,
        content_sid=message.content_sid,
        content_variables=message.content_variables,
        media_urls=message.media_urls,
        validity_period=validity,
        provider=message.provider,
    )


def deliver(
    message: OutboxMessage,
    *,
    provider: MessagingProvider,
    rate_limiter: RateLimiter | None,
    clock: Clock,
    template: SendTemplate | None = None,
) -> Attempt | Expired:
    """Send one claimed message, as written or, outside the customer-service window, as the
    tenant's fallback ``template`` (ADR 0021), unless it expired (checked after the rate-limit
    wait, just before the provider call). Never raises: every failure becomes a
    DeliveryFailure."""
    context = _context(message)
    if template is not None:
        context["contentSid"] = template.content_sid
        context["window"] = "outside: the tenant's fallback template"
    log.info("Processing outbound message", extra={"context": context})

    def request_at(now: datetime) -> SendRequest:
        request = send_request(message, now)
        if template is None:
            return request
        # A template replaces the body and the media (Twilio: a template's content is its own).
        return attrs.evolve(
            request,
            content_sid=template.content_sid,
            content_variables=template.content_variables,
            media_urls=(),
        )

    request = request_at(clock.now())
    try:
        if rate_limiter is not None:
            rate_limiter.acquire(provider.sender_key(request))
        now = clock.now()
        if message.is_expired(now):
            return Expired(message)
        if request.validity_period is not None:
            request = request_at(now)
        return Attempt(message, provider.send(request))
    except DeliveryFailed as exc:
        return Attempt(message, exc.failure)
    except Exception as exc:  # a provider bug must not kill the sender: retry it as transient
        log.exception("Provider raised an untranslated error", extra={"context": _context(message)})
        return Attempt(
            message, DeliveryFailure(transient=True, message=f"{type(exc).__name__}: {exc}")
        )


def record_outcomes(
    attempts: Iterable[Attempt],
    *,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    ids: IdGenerator,
    policy: RetryPolicy,
    abandoned: Iterable[OutboxMessage] = (),
    expired: Iterable[OutboxMessage] = (),
) -> BatchReport:
    """Store each attempt's outcome with its event (and dead letter) in one transaction.

    ``abandoned`` are claims past the last attempt (their sender died mid-send): dead-lettered.
    ``expired`` are claims past their ``expires_at``, never handed to the provider: ``expired``,
    with their event and no dead letter.
    An outcome whose row was claimed again meanwhile (lease passed) is dropped and counted ``lost``.
    """
    counts = {"claimed": 0, "sent": 0, "retried": 0, "dead": 0, "lost": 0, "expired": 0}
    stored: list[tuple[str, OutboxMessage]] = []
    with uow_factory() as uow:
        now = clock.now()
        work: list[tuple[OutboxMessage, SendReceipt | DeliveryFailure | _Ending]] = [
            (a.message, a.result) for a in attempts
        ]
        work.extend((message, _Ending.ABANDONED) for message in abandoned)
        work.extend((message, _Ending.EXPIRED) for message in expired)
        applied = [(m, *_apply(m, result, now, policy, ids)) for m, result in work]
        saved = uow.outbox.save_outcomes([message for message, _, _ in applied])
        for (message, kind, dead_letter), was_saved in zip(applied, saved, strict=True):
            counts["claimed"] += 1
            if not was_saved:
                counts["lost"] += 1
                continue
            if dead_letter is not None:
                uow.dead_letters.add(dead_letter)
            counts[kind] += 1
            stored.append((kind, message))
        uow.commit()
    for kind, message in stored:
        _log_outcome(kind, message, policy)
    return BatchReport(**counts)


class _Ending(enum.Enum):
    """A claim that ends without a provider call."""

    ABANDONED = "abandoned"
    EXPIRED = "expired"


def _apply(
    message: OutboxMessage,
    result: SendReceipt | DeliveryFailure | _Ending,
    now: datetime,
    policy: RetryPolicy,
    ids: IdGenerator,
) -> tuple[str, DeadLetter | None]:
    """Apply one attempt's result to the message: ("sent" | "retried" | "dead" | "expired",
    dead letter)."""
    if result is _Ending.ABANDONED:
        return "dead", message.abandon(now, policy, ids.new_id()).dead_letter
    if result is _Ending.EXPIRED:
        message.expire(now)
        return "expired", None
    if isinstance(result, SendReceipt):
        message.mark_sent(result.provider_message_id, now)
        return "sent", None
    outcome = message.record_failure(result, now, policy, ids.new_id())
    if isinstance(outcome, DeadLettered):
        return "dead", outcome.dead_letter
    return "retried", None


def _log_outcome(kind: str, message: OutboxMessage, policy: RetryPolicy) -> None:
    context = _context(message)
    if kind == "sent":
        context["providerMessageId"] = message.provider_message_id
        log.info("Message sent successfully", extra={"context": context})
        return
    if kind == "expired":
        context["expiresAt"] = message.expires_at.isoformat() if message.expires_at else None
        log.warning("Message expired before it was sent", extra={"context": context})
        return
    context.update(error=message.last_error, errorCode=message.last_error_code)
    if kind == "retried":
        context["nextAttemptAt"] = message.next_attempt_at.isoformat()
        context["attemptsRemaining"] = policy.attempts_remaining(message.attempts)
        if message.rate_limited_since is not None:
            # Rate-limited reschedules spend no attempt, up to a ceiling of time (ADR 0015).
            context["rateLimitedSince"] = message.rate_limited_since.isoformat()
        log.warning("Message send failed, will retry", extra={"context": context})
    else:
        log.error("Creating DeadLetterJob after max retries", extra={"context": context})


def _context(message: OutboxMessage) -> dict[str, object]:
    return {
        "outboxId": message.id,
        "tenantId": message.tenant_id,
        "to": mask_phone(message.to_phone),
        "attempt": message.attempts,
        "correlationId": message.correlation_id,
    }
