"""Domain events: what happened, stored in ``event_logs`` by the transaction that made it happen."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import attrs


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@attrs.frozen(kw_only=True)
class Event:
    """Base of every event. ``tenant_id`` is None only when the input named no known tenant."""

    event_type: ClassVar[str] = ""
    tenant_id: str | None
    subject_id: str
    correlation_id: str
    occurred_at: datetime

    def payload(self) -> dict[str, Any]:
        """The event's own facts as JSON-ready values (the common fields are columns)."""
        skip = {"tenant_id", "subject_id", "correlation_id", "occurred_at"}
        out: dict[str, Any] = {}
        for field in attrs.fields(type(self)):
            if field.name in skip:
                continue
            value = getattr(self, field.name)
            out[_camel(field.name)] = _iso(value) if isinstance(value, datetime) else value
        return out


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@attrs.frozen(kw_only=True)
class MessageClassified(Event):
    """An inbound message was classified and (maybe) attached to a live session."""

    event_type: ClassVar[str] = "message.classified"
    provider_message_id: str
    message_type: str
    live_session_id: str | None


@attrs.frozen(kw_only=True)
class LiveSessionOpened(Event):
    """A seller's message opened a live session."""

    event_type: ClassVar[str] = "live_session.opened"
    started_at: datetime


@attrs.frozen(kw_only=True)
class LiveSessionClosed(Event):
    """A live session was closed; it carries what an operator wants to know about it."""

    event_type: ClassVar[str] = "live_session.closed"
    reason: str
    started_at: datetime
    last_activity_at: datetime
    closed_at: datetime
    duration_seconds: float
    seller_message_count: int
    client_message_count: int


@attrs.frozen(kw_only=True)
class MessageSent(Event):
    """An outbound message was accepted by the provider."""

    event_type: ClassVar[str] = "message.sent"
    provider_message_id: str
    attempts: int


@attrs.frozen(kw_only=True)
class MessageRetryScheduled(Event):
    """An outbound message failed transiently and will be tried again at ``next_attempt_at``."""

    event_type: ClassVar[str] = "message.retry_scheduled"
    attempts: int
    next_attempt_at: datetime
    error: str
    error_code: str | None
    rate_limited: bool = False
    """The provider refused for capacity: no attempt was spent (ADR 0015)."""


@attrs.frozen(kw_only=True)
class MessageDeadLettered(Event):
    """An outbound message will not be tried again; a dead letter holds it."""

    event_type: ClassVar[str] = "message.dead_lettered"
    attempts: int
    error: str
    error_code: str | None
    permanent: bool


@attrs.frozen(kw_only=True)
class MessageExpired(Event):
    """An outbound message reached its ``expires_at`` before it was handed to the provider: it
    will not be sent (no dead letter: nothing is wrong with it, it is too late)."""

    event_type: ClassVar[str] = "message.expired"
    attempts: int
    expires_at: datetime


@attrs.frozen(kw_only=True)
class InboundRejected(Event):
    """An inbound job was rejected for good (bad payload, unknown tenant, invalid phone)."""

    event_type: ClassVar[str] = "inbound.rejected"
    reason: str
    error: str
    dead_letter_id: str
