"""An inbound message as the webhook read it, and the one rule that makes whatever the provider
signed storable (issue 11 §4, ADR 0010): nothing signed is refused for its content.

Text fields lose their control characters and are cut to their limits, each with a flag; the
provider's whole parameter set is kept (``provider_params``, NUL made storable), and whenever a
field was changed the exact signed form is kept beside it (``raw_form``, percent-encoded, so any
store can hold it). Only what no cleaning can make into a message (no ``MessageSid``, an id or a
sender address over its limit) is left to the payload contract, which dead-letters it whole.
"""

from __future__ import annotations

from urllib.parse import urlencode

import attrs

from domain.inbound import MAX_BODY_LENGTH, MAX_PROVIDER_ID_LENGTH
from domain.inbound_content import (
    MAX_MEDIA_URL_LENGTH,
    MAX_TEXT_FIELD_LENGTH,
    InboundContent,
    InputFlag,
    ProviderParams,
    clean_text,
    storable,
)

TO_NUMBER_REGION = "US"
"""Twilio sends ``To`` in E.164 (``whatsapp:+14155238886``); the region only reads a number
written without ``+``, which Twilio never sends."""

MAX_PROFILE_NAME_LENGTH = 256
MAX_CONTENT_TYPE_LENGTH = 255


@attrs.frozen(kw_only=True)
class WebhookMessage:
    """An inbound message as the webhook read it from the provider, before its tenant is known.

    ``params`` is every signed form field in order (repeated names included); ``flags`` are what
    the reading itself noticed (an unreadable ``NumMedia``)."""

    provider_message_id: str
    from_address: str
    to_address: str
    body: str
    profile_name: str | None = None
    num_media: int = 0
    media_urls: tuple[str, ...] = ()
    content: InboundContent = attrs.field(factory=InboundContent)
    params: tuple[tuple[str, str], ...] = ()
    flags: tuple[str, ...] = ()
    meta_phone_number_id: str | None = None
    """Set for a message Meta's webhook delivered: its tenant is the one with this business
    phone-number id (ADR 0019); None (Twilio): the tenant whose number is ``to_address``."""


def provider_params(pairs: tuple[tuple[str, str], ...]) -> ProviderParams:
    """The signed fields as JSON: a name to its value, or to the list of its values when the
    name is repeated; NUL made storable."""
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        grouped.setdefault(storable(key), []).append(storable(value))
    return {key: values[0] if len(values) == 1 else values for key, values in grouped.items()}


def cleaned(message: WebhookMessage) -> WebhookMessage:
    """``message`` with every text field storable (control characters removed, cut to its
    limit), its flags saying what changed, the whole parameter set, and the exact form kept when
    anything changed."""
    flags: set[str] = set(message.flags)

    def text(
        value: str | None, limit: int, truncated: InputFlag = InputFlag.FIELD_TRUNCATED
    ) -> str | None:
        if value is None:
            return None
        result, changed = clean_text(value, limit)
        flags.update(truncated if f is InputFlag.FIELD_TRUNCATED else f for f in changed)
        return result

    def texts(values: tuple[str, ...], limit: int) -> tuple[str, ...]:
        return tuple(text(v, limit) or "" for v in values)

    content = message.content
    body = text(message.body, MAX_BODY_LENGTH, InputFlag.BODY_TRUNCATED) or ""
    profile_name = text(message.profile_name, MAX_PROFILE_NAME_LENGTH)
    media_urls = texts(message.media_urls, MAX_MEDIA_URL_LENGTH)
    content = attrs.evolve(
        content,
        kind=text(content.kind, 64),
        media_content_types=texts(content.media_content_types, MAX_CONTENT_TYPE_LENGTH),
        latitude=text(content.latitude, 64),
        longitude=text(content.longitude, 64),
        address=text(content.address, MAX_TEXT_FIELD_LENGTH),
        label=text(content.label, MAX_TEXT_FIELD_LENGTH),
        button_text=text(content.button_text, MAX_TEXT_FIELD_LENGTH),
        button_payload=text(content.button_payload, MAX_TEXT_FIELD_LENGTH),
        replied_to_message_id=text(content.replied_to_message_id, MAX_PROVIDER_ID_LENGTH),
        replied_to_sender=text(content.replied_to_sender, 64),
        referral={
            key: text(value, MAX_TEXT_FIELD_LENGTH) or "" for key, value in content.referral.items()
        },
        wa_id=text(content.wa_id, 64),
        provider_params=provider_params(message.params),
    )
    if any("\x00" in key or "\x00" in value for key, value in message.params):
        flags.add(InputFlag.CONTROL_CHARACTERS_REMOVED)
    ordered = tuple(sorted(flags))
    return attrs.evolve(
        message,
        body=body,
        profile_name=profile_name,
        media_urls=media_urls,
        content=attrs.evolve(
            content,
            flags=ordered,
            raw_form=urlencode(message.params) if ordered and message.params else None,
        ),
        flags=ordered,
    )
