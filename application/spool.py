"""What waits in the durable spool while the database is down, and how it gets there (ADR 0013).

- ``accept_inbound_message``: the webhook's use case. The message goes to the durable inbox
  (``receive_inbound_message``); when the database cannot take it, the verified request goes to
  the spool and the webhook still answers 200. Only when the spool cannot take it either is
  StoreUnavailable raised (the webhook answers 503 and Twilio retries).
- ``dead_letter_or_park``: the retries-exhausted dead letter of a job; when the database cannot
  take it (the outage that exhausted the retries), it is parked in the spool with its id.
- ``drain_spool``: one pass of the spool drainer: applies the oldest entries to the database, once
  each (an inbound request is idempotent per ``(tenant, MessageSid)``, a parked dead letter per
  its id), and enqueues the drained messages.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

from application.inbound import InboundOutcome, Rejected, reject_inbound
from application.inbox import ReceiveOutcome, receive_inbound_message
from application.webhook_input import WebhookMessage
from domain.inbound_content import InboundContent
from ports.clock import Clock, IdGenerator
from ports.queue import InboundQueue
from ports.repositories import StoreUnavailable
from ports.spool import Spool, SpoolEntry, SpoolUnavailable
from ports.unit_of_work import UnitOfWorkFactory

log = logging.getLogger("livesell.spool")

INBOUND = "inbound"
DEAD_LETTER = "dead_letter"
FORMAT_VERSION = 1
UNREADABLE_ENTRY = "unreadable_spool_entry"


@attrs.frozen(kw_only=True)
class Spooled:
    """The database could not record the message: the verified request waits in the spool, and
    the spool drainer records it when the database answers."""

    provider_message_id: str
    correlation_id: str


@attrs.frozen(kw_only=True)
class Parked:
    """The dead letter could not be written: it waits in the spool under ``dead_letter_id``."""

    dead_letter_id: str


def accept_inbound_message(
    message: WebhookMessage,
    *,
    params: Sequence[tuple[str, str]],
    correlation_id: str | None,
    uow_factory: UnitOfWorkFactory,
    queue: InboundQueue,
    spool: Spool,
    clock: Clock,
    ids: IdGenerator,
) -> ReceiveOutcome | Spooled:
    """Record ``message`` in the inbox, or spool it when the database is down.

    ``params`` are the request's verified form fields, kept with the spooled request. Raises
    StoreUnavailable when neither the database nor the spool can take it: the caller must not
    answer success then.
    """
    received_at = clock.now()
    correlation_id = correlation_id or ids.new_id()
    try:
        return receive_inbound_message(
            message,
            correlation_id=correlation_id,
            uow_factory=uow_factory,
            queue=queue,
            clock=clock,
            ids=ids,
            received_at=received_at,
        )
    except StoreUnavailable as exc:
        store_error = exc
        document = {
            "kind": INBOUND,
            "version": FORMAT_VERSION,
            "message": _plain(attrs.asdict(message)),
            "params": [list(pair) for pair in params],
            "receivedAt": received_at.isoformat(),
            "correlationId": correlation_id,
        }
        try:
            spool.append(document)
        except SpoolUnavailable as spool_error:
            raise StoreUnavailable(
                f"{store_error}; the spool is unavailable too: {spool_error}"
            ) from exc
    log.warning(
        "Inbound message spooled, the database is unavailable",
        extra={
            "context": {
                "providerMessageId": message.provider_message_id,
                "correlationId": correlation_id,
                "error": str(store_error),
            }
        },
    )
    return Spooled(provider_message_id=message.provider_message_id, correlation_id=correlation_id)


def dead_letter_or_park(
    payload: object,
    reason: str,
    error: str,
    *,
    attempts: int,
    uow_factory: UnitOfWorkFactory,
    spool: Spool,
    clock: Clock,
    ids: IdGenerator,
) -> InboundOutcome | Parked:
    """Write the dead letter of a job given up on, or park it in the spool when the database
    cannot take it. Raises SpoolUnavailable when neither can (the job's own record in the queue
    is then all that is left). A message processed meanwhile (a replay) gets no dead letter: its
    Processed outcome is returned."""
    dead_letter_id = ids.new_id()
    rejected_at = clock.now()
    try:
        return reject_inbound(
            payload,
            reason,
            error,
            uow_factory=uow_factory,
            clock=clock,
            ids=ids,
            attempts=attempts,
            dead_letter_id=dead_letter_id,
            rejected_at=rejected_at,
        )
    except StoreUnavailable as exc:
        store_error = str(exc)
    spool.append(
        {
            "kind": DEAD_LETTER,
            "version": FORMAT_VERSION,
            "deadLetterId": dead_letter_id,
            "payload": payload,
            "reason": reason,
            "error": error,
            "attempts": attempts,
            "rejectedAt": rejected_at.isoformat(),
        }
    )
    log.error(
        "Dead letter parked in the spool, the database is unavailable",
        extra={"context": {"deadLetterId": dead_letter_id, "error": store_error}},
    )
    return Parked(dead_letter_id=dead_letter_id)


@attrs.frozen(kw_only=True)
class DrainReport:
    """One drain pass: entries applied, and the database error that stopped it early, if any."""

    drained: int
    store_error: str | None = None


def drain_spool(
    *,
    spool: Spool,
    uow_factory: UnitOfWorkFactory,
    queue: InboundQueue,
    clock: Clock,
    ids: IdGenerator,
    limit: int,
) -> DrainReport:
    """Apply up to ``limit`` spool entries, oldest first, each acknowledged once applied.

    An entry the database cannot take yet is released (first in line again) and the pass stops.
    An entry that cannot be read becomes a ``webhook-processing`` dead letter holding its text.
    Raises SpoolUnavailable when the spool cannot be reached (a claimed entry then stays claimed
    and is recovered).
    """
    drained = 0
    for _ in range(limit):
        entry = spool.claim()
        if entry is None:
            break
        try:
            _apply(entry, uow_factory=uow_factory, queue=queue, clock=clock, ids=ids)
        except StoreUnavailable as exc:
            spool.release(entry)
            return DrainReport(drained=drained, store_error=str(exc))
        spool.ack(entry)
        drained += 1
    return DrainReport(drained=drained)


def _apply(
    entry: SpoolEntry,
    *,
    uow_factory: UnitOfWorkFactory,
    queue: InboundQueue,
    clock: Clock,
    ids: IdGenerator,
) -> None:
    document = entry.document or {}
    kind = document.get("kind")
    try:
        if kind == INBOUND:
            _apply_inbound(document, uow_factory=uow_factory, queue=queue, clock=clock, ids=ids)
            return
        if kind == DEAD_LETTER:
            _apply_dead_letter(document, uow_factory=uow_factory, clock=clock, ids=ids)
            return
        problem = f"unknown spool entry kind {kind!r}"
    except (KeyError, TypeError, ValueError) as exc:
        problem = f"unreadable spool entry: {type(exc).__name__}: {exc}"
    rejected = reject_inbound(
        {"spoolEntry": entry.raw},
        UNREADABLE_ENTRY,
        problem,
        uow_factory=uow_factory,
        clock=clock,
        ids=ids,
    )
    if isinstance(rejected, Rejected):
        log.error(
            "Spool entry unreadable, kept as a dead letter",
            extra={"context": {"deadLetterId": rejected.dead_letter_id, "error": problem}},
        )


def _apply_inbound(
    document: Mapping[str, Any],
    *,
    uow_factory: UnitOfWorkFactory,
    queue: InboundQueue,
    clock: Clock,
    ids: IdGenerator,
) -> None:
    message = _webhook_message(document["message"])
    received_at = datetime.fromisoformat(document["receivedAt"])
    outcome = receive_inbound_message(
        message,
        correlation_id=document["correlationId"],
        uow_factory=uow_factory,
        queue=queue,
        clock=clock,
        ids=ids,
        received_at=received_at,
    )
    log.info(
        "Spooled inbound message drained",
        extra={
            "context": {
                "providerMessageId": message.provider_message_id,
                "correlationId": document["correlationId"],
                "outcome": type(outcome).__name__,
                "receivedAt": received_at.isoformat(),
            }
        },
    )


def _apply_dead_letter(
    document: Mapping[str, Any], *, uow_factory: UnitOfWorkFactory, clock: Clock, ids: IdGenerator
) -> None:
    rejected = reject_inbound(
        document["payload"],
        str(document["reason"]),
        str(document["error"]),
        uow_factory=uow_factory,
        clock=clock,
        ids=ids,
        attempts=int(document["attempts"]),
        dead_letter_id=str(document["deadLetterId"]),
        rejected_at=datetime.fromisoformat(document["rejectedAt"]),
    )
    if isinstance(rejected, Rejected):
        log.info(
            "Parked dead letter written",
            extra={"context": {"deadLetterId": rejected.dead_letter_id, "reason": rejected.reason}},
        )
    else:
        log.info(
            "Parked dead letter dropped, the message was processed meanwhile",
            extra={"context": {"deadLetterId": document["deadLetterId"]}},
        )


def _plain(value: Any) -> Any:
    """JSON-ready: tuples as lists, recursively."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


_MESSAGE_TUPLES = ("media_urls", "params", "flags")
_CONTENT_TUPLES = ("media_content_types", "flags")


def _webhook_message(fields: Mapping[str, Any]) -> WebhookMessage:
    """The WebhookMessage that ``_plain(attrs.asdict(message))`` was made of."""
    values = dict(fields)
    content = dict(values.pop("content", None) or {})
    for name in _CONTENT_TUPLES:
        if name in content:
            content[name] = tuple(content[name])
    for name in _MESSAGE_TUPLES:
        if name in values:
            values[name] = _tuples(values[name])
    return WebhookMessage(**values, content=InboundContent(**content))


def _tuples(value: Any) -> Any:
    """The inverse of ``_plain`` for the attrs fields of WebhookMessage: lists as tuples."""
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    return value
