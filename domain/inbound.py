"""Inbound WhatsApp messages: the job payload of SPEC §2 and the recorded, classified message."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from domain.errors import FieldError, IllegalTransition, InvalidPayload
from domain.events import Event, MessageClassified
from domain.inbound_content import (
    MAX_MEDIA_URL_LENGTH,
    MAX_TEXT_FIELD_LENGTH,
    InboundContent,
    storable,
)
from domain.senders import SenderType

MAX_BODY_LENGTH = 4096
MAX_PROVIDER_ID_LENGTH = 128
"""A provider's message id: Twilio's SIDs are 34 characters, Meta's ``wamid`` is ``wamid.`` and
the base64 of the user's number and a message id, 58 to 66 characters in Meta's examples and
longer for longer ids (ADR 0019); 128 leaves room, and the columns are ``Text``."""
MAX_ID_LENGTH = 128


class InboundStatus(enum.StrEnum):
    """``received`` until the processor is done with it; ``processed`` and ``rejected`` are
    terminal (a rejected message moves again only when its dead letter is replayed)."""

    RECEIVED = "received"
    PROCESSED = "processed"
    REJECTED = "rejected"


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


class _Reader:
    """Collects one FieldError per bad field so the caller hears about all of them at once."""

    def __init__(self, payload: Mapping[str, Any]) -> None:
        self.payload = payload
        self.errors: list[FieldError] = []

    def text(self, key: str, *, required: bool, min_len: int = 0, max_len: int) -> str | None:
        if key not in self.payload or self.payload[key] is None:
            if required:
                self.errors.append(FieldError(key, "is required"))
            return None
        value = self.payload[key]
        if not isinstance(value, str):
            self.errors.append(FieldError(key, f"must be a string, got {_type_name(value)}"))
            return None
        if len(value) < min_len:
            self.errors.append(FieldError(key, "must not be empty"))
            return None
        if len(value) > max_len:
            self.errors.append(
                FieldError(key, f"is {len(value)} characters, at most {max_len} allowed")
            )
            return None
        if "\x00" in value:
            self.errors.append(FieldError(key, "holds a NUL character, which no store can keep"))
            return None
        return value

    def moment(self, key: str) -> datetime | None:
        raw = self.text(key, required=False, min_len=1, max_len=64)
        if raw is None:
            return None
        try:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            self.errors.append(FieldError(key, f"is not an ISO-8601 timestamp: {raw!r}"))
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            self.errors.append(FieldError(key, "must carry a UTC offset (e.g. 2026-01-01T10:00Z)"))
            return None
        return value

    def count(self, key: str) -> int:
        value = self.payload.get(key)
        if value is None:
            return 0
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.errors.append(FieldError(key, f"must be a whole number >= 0, got {value!r}"))
            return 0
        return value

    def urls(self, key: str, max_len: int = MAX_MEDIA_URL_LENGTH) -> tuple[str, ...]:
        value = self.payload.get(key)
        if value is None:
            return ()
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            self.errors.append(FieldError(key, "must be a list of strings"))
            return ()
        if any(len(v) > max_len for v in value):
            self.errors.append(FieldError(key, f"holds a string over {max_len} characters"))
            return ()
        return tuple(value)

    def flag(self, key: str) -> bool:
        value = self.payload.get(key)
        if value is None:
            return False
        if not isinstance(value, bool):
            self.errors.append(FieldError(key, f"must be a boolean, got {_type_name(value)}"))
            return False
        return value

    def strings(self, key: str, max_len: int = MAX_TEXT_FIELD_LENGTH) -> dict[str, str]:
        """An object of short strings (``location``, ``button``, ``repliedTo``, ``referral``)."""
        value = self.payload.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            self.errors.append(FieldError(key, "must be an object of strings"))
            return {}
        if any(len(v) > max_len for v in value.values()):
            self.errors.append(FieldError(key, f"holds a string over {max_len} characters"))
            return {}
        return dict(value)

    def params(self, key: str) -> dict[str, str | list[str]]:
        """The provider's parameter set: names to a string, or to a list for a repeated name."""
        value = self.payload.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str)
            and (isinstance(v, str) or (isinstance(v, list) and all(isinstance(i, str) for i in v)))
            for k, v in value.items()
        ):
            self.errors.append(FieldError(key, "must be an object of strings or string lists"))
            return {}
        return {k: list(v) if isinstance(v, list) else v for k, v in value.items()}

    def content(self) -> InboundContent:
        """The optional keys of ``InboundContent`` (issue 11 §3)."""
        location = self.strings("location")
        button = self.strings("button")
        replied = self.strings("repliedTo")
        flags = self.urls("inputFlags", 64)
        return InboundContent(
            kind=self.text("messageKind", required=False, min_len=1, max_len=64),
            media_content_types=self.urls("mediaContentTypes", 255),
            latitude=location.get("latitude"),
            longitude=location.get("longitude"),
            address=location.get("address"),
            label=location.get("label"),
            button_text=button.get("text"),
            button_payload=button.get("payload"),
            replied_to_message_id=replied.get("messageId"),
            replied_to_sender=replied.get("sender"),
            referral=self.strings("referral"),
            wa_id=self.text("waId", required=False, max_len=64),
            forwarded=self.flag("forwarded"),
            frequently_forwarded=self.flag("frequentlyForwarded"),
            provider_params=self.params("providerParams"),
            raw_form=self.text("rawForm", required=False, max_len=10 * 1024 * 1024),
            flags=flags,
        )


@attrs.frozen(kw_only=True)
class InboundMessage:
    """The normalised inbound message, as the webhook enqueues it (SPEC §2).

    ``from_address`` is kept as received; the sender's E.164 number needs the tenant's region and
    is computed once the tenant is known.
    """

    tenant_id: str
    provider_message_id: str
    from_address: str
    body: str
    correlation_id: str
    received_at: datetime
    to_address: str | None = None
    profile_name: str | None = None
    num_media: int = 0
    media_urls: tuple[str, ...] = ()
    content: InboundContent = attrs.field(factory=InboundContent)

    @classmethod
    def from_payload(cls, payload: object, now: datetime) -> InboundMessage:
        """Validate a job payload; ``receivedAt`` defaults to ``now``.

        Raises InvalidPayload naming every bad field.
        """
        if not isinstance(payload, Mapping):
            raise InvalidPayload(
                [FieldError("payload", f"must be a JSON object, got {_type_name(payload)}")]
            )
        read = _Reader(payload)
        tenant_id = read.text("tenantId", required=True, min_len=1, max_len=MAX_ID_LENGTH)
        provider_id = read.text(
            "providerMessageId", required=True, min_len=1, max_len=MAX_PROVIDER_ID_LENGTH
        )
        from_address = read.text("from", required=True, min_len=1, max_len=64)
        body = read.text("body", required=True, max_len=MAX_BODY_LENGTH)
        correlation_id = read.text("correlationId", required=True, min_len=1, max_len=MAX_ID_LENGTH)
        to_address = read.text("to", required=False, max_len=64)
        profile_name = read.text("profileName", required=False, max_len=256)
        received_at = read.moment("receivedAt")
        num_media = read.count("numMedia")
        media_urls = read.urls("mediaUrls")
        content = read.content()
        if (
            read.errors
            or tenant_id is None
            or provider_id is None
            or from_address is None
            or body is None
            or correlation_id is None
        ):
            raise InvalidPayload(read.errors)
        return cls(
            tenant_id=tenant_id,
            provider_message_id=provider_id,
            from_address=from_address,
            body=body,
            correlation_id=correlation_id,
            received_at=received_at or now,
            to_address=to_address,
            profile_name=profile_name,
            num_media=num_media,
            media_urls=media_urls,
            content=content,
        )

    def to_payload(self) -> dict[str, Any]:
        """The camelCase job payload (the inverse of ``from_payload``)."""
        payload: dict[str, Any] = {
            "tenantId": self.tenant_id,
            "providerMessageId": self.provider_message_id,
            "from": self.from_address,
            "body": self.body,
            "correlationId": self.correlation_id,
            "receivedAt": self.received_at.isoformat(),
        }
        if self.to_address is not None:
            payload["to"] = self.to_address
        if self.profile_name is not None:
            payload["profileName"] = self.profile_name
        if self.num_media:
            payload["numMedia"] = self.num_media
        if self.media_urls:
            payload["mediaUrls"] = list(self.media_urls)
        payload.update(self.content.to_payload())
        return payload


def best_effort_ids(payload: object) -> tuple[str | None, str | None, str | None]:
    """(tenantId, providerMessageId, correlationId) from a payload that may be malformed, each
    storable (a NUL, which no store keeps, made U+FFFD)."""
    if not isinstance(payload, Mapping):
        return None, None, None

    def pick(key: str) -> str | None:
        value = payload.get(key)
        return storable(value) if isinstance(value, str) and value else None

    return pick("tenantId"), pick("providerMessageId"), pick("correlationId")


@attrs.frozen
class InboundState:
    """What a conditional write of a record expects to find stored: its status and the dead
    letter it points to (a rejected record moves again only once per dead letter)."""

    status: InboundStatus
    dead_letter_id: str | None = None


RECEIVED_STATE = InboundState(InboundStatus.RECEIVED)


@attrs.define(kw_only=True)
class InboundRecord:
    """A row of ``inbound_messages``: received (maybe by the webhook), then processed or rejected
    (terminal). A rejected record keeps its reason and its one dead letter; it is processed again
    only when that dead letter is replayed."""

    id: str
    message: InboundMessage
    from_e164: str | None = None
    status: InboundStatus = InboundStatus.RECEIVED
    message_type: SenderType | None = None
    live_session_id: str | None = None
    processed_at: datetime | None = None
    reject_reason: str | None = None
    rejected_at: datetime | None = None
    dead_letter_id: str | None = None
    events: list[Event] = attrs.field(factory=list, eq=False, repr=False)

    @property
    def state(self) -> InboundState:
        return InboundState(self.status, self.dead_letter_id)

    @property
    def is_rejected(self) -> bool:
        return self.status is InboundStatus.REJECTED

    def mark_rejected(self, *, reason: str, dead_letter_id: str, now: datetime) -> None:
        """Terminal: rejected for ``reason``, held by dead letter ``dead_letter_id`` (the caller
        writes the dead letter and the ``inbound.rejected`` event in the same transaction)."""
        if self.is_processed:
            raise IllegalTransition(f"inbound message {self.provider_message_id} already processed")
        self.status = InboundStatus.REJECTED
        self.reject_reason = reason
        self.rejected_at = now
        self.dead_letter_id = dead_letter_id

    @property
    def tenant_id(self) -> str:
        return self.message.tenant_id

    @property
    def provider_message_id(self) -> str:
        return self.message.provider_message_id

    @property
    def is_processed(self) -> bool:
        return self.status is InboundStatus.PROCESSED

    def mark_processed(
        self,
        *,
        from_e164: str,
        sender: SenderType,
        live_session_id: str | None,
        now: datetime,
    ) -> None:
        """Record the classification once and the ``message.classified`` event (a rejected
        record whose dead letter was replayed may be processed; it keeps that dead letter's id)."""
        if self.is_processed:
            raise IllegalTransition(f"inbound message {self.provider_message_id} already processed")
        self.status = InboundStatus.PROCESSED
        self.reject_reason = None
        self.from_e164 = from_e164
        self.message_type = sender
        self.live_session_id = live_session_id
        self.processed_at = now
        self.events.append(
            MessageClassified(
                tenant_id=self.tenant_id,
                subject_id=self.id,
                correlation_id=self.message.correlation_id,
                occurred_at=now,
                provider_message_id=self.provider_message_id,
                message_type=sender.value,
                live_session_id=live_session_id,
            )
        )

    def enriched(self) -> dict[str, Any]:
        """The EnrichedInboundMessage: the payload plus ``messageType`` and ``liveSessionId``."""
        payload = self.message.to_payload()
        payload["messageType"] = self.message_type.value if self.message_type else None
        payload["liveSessionId"] = self.live_session_id
        return payload

    def pull_events(self) -> list[Event]:
        events, self.events = self.events, []
        return events
