"""Twilio's inbound WhatsApp form, read into a ``WebhookMessage`` (issue 11 §3, ADR 0010).

The parameter names are Twilio's (https://www.twilio.com/docs/messaging/guides/webhook-request):
``MessageSid``, ``From``, ``To``, ``Body``, ``ProfileName``, ``WaId``, ``MessageType``,
``NumMedia`` with ``MediaUrlN`` / ``MediaContentTypeN``, ``Latitude`` / ``Longitude`` /
``Address`` / ``Label`` (a shared location), ``ButtonText`` / ``ButtonPayload`` (a quick reply),
``OriginalRepliedMessageSid`` / ``OriginalRepliedMessageSender`` (the message replied to),
``Referral*`` (a click-to-WhatsApp ad), ``Forwarded`` / ``FrequentlyForwarded``. Reading is
total: nothing here refuses a signed form; every field, known or not, is also kept in the
parameter set.
"""

from __future__ import annotations

import re

from application.webhook_input import WebhookMessage
from domain.inbound_content import InboundContent, InputFlag

_NUMBERED = re.compile(r"^(MediaUrl|MediaContentType)(\d{1,4})$")
REFERRAL_PREFIX = "Referral"


def read_twilio_message(pairs: list[tuple[str, str]]) -> WebhookMessage:
    """The message of a signed form (``pairs`` in order; the first value of a repeated name
    counts for the typed fields)."""
    form: dict[str, str] = {}
    for key, value in pairs:
        form.setdefault(key, value)
    flags: list[str] = []
    media_urls, content_types = _media(form)
    raw_count = form.get("NumMedia", "").strip()
    if raw_count.isdigit() and len(raw_count) <= 6:
        num_media = int(raw_count)
    else:
        num_media = len(media_urls)
        if raw_count:
            flags.append(InputFlag.NUM_MEDIA_UNREADABLE)

    def opt(key: str) -> str | None:
        value = form.get(key)
        return value if value else None

    referral = {
        key[len(REFERRAL_PREFIX)][0].lower() + key[len(REFERRAL_PREFIX) + 1 :]: value
        for key, value in form.items()
        if key.startswith(REFERRAL_PREFIX)
        and len(key) > len(REFERRAL_PREFIX)
        and value
        and (key, value) != ("ReferralNumMedia", "0")  # sent with every message, ad or not
    }
    content = InboundContent(
        kind=opt("MessageType"),
        media_content_types=content_types,
        latitude=opt("Latitude"),
        longitude=opt("Longitude"),
        address=opt("Address"),
        label=opt("Label"),
        button_text=opt("ButtonText"),
        button_payload=opt("ButtonPayload"),
        replied_to_message_id=opt("OriginalRepliedMessageSid"),
        replied_to_sender=opt("OriginalRepliedMessageSender"),
        referral=referral,
        wa_id=opt("WaId"),
        forwarded=_true(form.get("Forwarded")),
        frequently_forwarded=_true(form.get("FrequentlyForwarded")),
    )
    return WebhookMessage(
        provider_message_id=form.get("MessageSid", ""),
        from_address=form.get("From", ""),
        to_address=form.get("To", ""),
        body=form.get("Body", ""),
        profile_name=opt("ProfileName"),
        num_media=num_media,
        media_urls=media_urls,
        content=content,
        params=tuple(pairs),
        flags=tuple(flags),
    )


def _media(form: dict[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``MediaUrlN`` in N order, with ``MediaContentTypeN`` of the same N ("" when absent)."""
    urls: dict[int, str] = {}
    types: dict[int, str] = {}
    for key, value in form.items():
        match = _NUMBERED.match(key)
        if match and value:
            (urls if match.group(1) == "MediaUrl" else types)[int(match.group(2))] = value
    order = sorted(urls)
    return tuple(urls[n] for n in order), tuple(types.get(n, "") for n in order)


def _true(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("true", "1")
