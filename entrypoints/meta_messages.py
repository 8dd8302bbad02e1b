"""One message of Meta's ``messages`` webhook, read into the same ``WebhookMessage`` a Twilio form
becomes (issue 17 §2; ADR 0010, ADR 0019). Reading is total: nothing here refuses a signed
message; every field, known or not, is also kept in the parameter set.

The fields are Meta's "messages webhook reference" pages, one per type
(https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/location/,
``.../button/``, ``.../interactive``, ``.../system``; the text, image, contacts and reaction pages
as mirrored under https://support.chatarchitect.com/books/meta-whatsapp/):
every message has ``from`` (the user's number, digits without ``+``), ``id`` (``wamid...``),
``timestamp`` and ``type``, and the object named by ``type``:

- ``text.body``; ``image`` / ``video`` / ``audio`` / ``document`` / ``sticker`` with ``id`` (the
  media id), ``mime_type``, ``sha256``, ``caption`` (image, video, document), ``filename``
  (document), ``url`` (newer payloads), ``animated`` (sticker);
- ``location`` with ``latitude`` and ``longitude`` (numbers), ``name``, ``address``, ``url``;
- ``contacts`` (a list of vCard-like objects), ``interactive`` (``button_reply`` or
  ``list_reply``, each with ``id`` and ``title``), ``button`` (``payload``, ``text``: a
  template's quick reply), ``reaction`` (``message_id``, ``emoji``, omitted when removed),
  ``order``, ``system``, ``unsupported`` (with ``errors``);
- ``context``: ``from`` and ``id`` of the business message replied to (with ``referred_product``
  for a product inquiry), or ``forwarded`` / ``frequently_forwarded``;
- ``referral``: the click-to-WhatsApp ad (``source_url``, ``source_id``, ``source_type``,
  ``body``, ``headline``, ``media_type``, ``image_url``, ``video_url``, ``thumbnail_url``,
  ``ctwa_clid``, ``welcome_message.text``).

Where Twilio has a field, Meta's value goes to the same place: the caption or the button's text
is the body as Twilio sends it, the location's ``name`` is Twilio's ``Label``, a reaction names
the message reacted to as the replied-to message, and the referral's keys are camelCase as
Twilio's ``Referral*`` are read (``sourceUrl``, ``ctwaClid`` ...). Numbers are normalised to the
``whatsapp:+E.164`` addresses Twilio sends, with the domain's phone rules (``wa_id`` and ``from``
carry no ``+``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import attrs

from application.webhook_input import WebhookMessage
from domain.errors import InvalidPhoneNumber
from domain.inbound_content import InboundContent
from domain.phones import WHATSAPP_PREFIX, normalise_sender

WA_ID_REGION = "US"
"""The region only reads a number written without its country code, which a WhatsApp ID never
is (``16505551234``); any region gives the same E.164."""
MEDIA_KINDS = ("image", "video", "audio", "document", "sticker")
_CAMEL = re.compile(r"_([a-z0-9])")


@attrs.frozen(kw_only=True)
class MetaInboundMessage:
    """One inbound message of a Meta webhook: the ``WebhookMessage`` livesell records, the
    business phone-number id it was sent to (how the tenant is found), its media ids, and which
    of the fields no message can do without (``id``, ``from``) were missing."""

    phone_number_id: str
    message: WebhookMessage
    media_ids: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()


def whatsapp_address(number: object) -> str:
    """``16505551234`` -> ``whatsapp:+16505551234``; a value the phone rules cannot read is kept
    as received behind ``whatsapp:`` (processing rejects it with its own reason)."""
    raw = "" if number is None else str(number).strip()
    address = WHATSAPP_PREFIX + raw
    try:
        return WHATSAPP_PREFIX + normalise_sender(address, WA_ID_REGION)
    except InvalidPhoneNumber:
        return address


def read_meta_message(
    message: Mapping[str, Any],
    *,
    metadata: Mapping[str, Any],
    contacts: list[Any],
) -> MetaInboundMessage:
    """The message of one ``messages[]`` item, with its change's ``metadata`` and ``contacts``."""
    sender = _text(message.get("from"))
    kind = _text(message.get("type"))
    contact = _contact_of(sender, contacts)
    profile = contact.get("profile")
    profile_name = _text(profile.get("name")) if isinstance(profile, Mapping) else None
    wa_id = _text(contact.get("wa_id")) or sender
    part = message.get(kind) if kind else None
    part = part if isinstance(part, Mapping) else {}
    context = message.get("context")
    context = context if isinstance(context, Mapping) else {}

    body = ""
    media_urls: tuple[str, ...] = ()
    content_types: tuple[str, ...] = ()
    media_ids: tuple[str, ...] = ()
    num_media = 0
    replied_to = _text(context.get("id"))
    fields: dict[str, str | None] = {}
    if kind == "text":
        body = _text(part.get("body")) or ""
    elif kind in MEDIA_KINDS:
        num_media = 1
        body = _text(part.get("caption")) or ""
        media_ids = tuple(i for i in (_text(part.get("id")),) if i)
        url = _text(part.get("url"))
        if url:
            media_urls = (url,)
            content_types = (_text(part.get("mime_type")) or "",)
    elif kind == "location":
        fields = {
            "latitude": _number(part.get("latitude")),
            "longitude": _number(part.get("longitude")),
            "address": _text(part.get("address")),
            "label": _text(part.get("name")),
        }
    elif kind == "interactive":
        reply = part.get(_text(part.get("type")) or "")
        if isinstance(reply, Mapping):
            body = _text(reply.get("title")) or ""
            fields = {
                "button_text": _text(reply.get("title")),
                "button_payload": _text(reply.get("id")),
            }
    elif kind == "button":
        body = _text(part.get("text")) or ""
        fields = {
            "button_text": _text(part.get("text")),
            "button_payload": _text(part.get("payload")),
        }
    elif kind == "reaction":
        body = _text(part.get("emoji")) or ""
        replied_to = _text(part.get("message_id")) or replied_to
    elif kind in ("order", "system"):
        body = _text(part.get("text") if kind == "order" else part.get("body")) or ""

    content = InboundContent(
        kind=kind,
        media_content_types=content_types,
        replied_to_message_id=replied_to,
        replied_to_sender=whatsapp_address(context["from"]) if context.get("from") else None,
        referral=_referral(message.get("referral")),
        wa_id=wa_id,
        forwarded=context.get("forwarded") is True,
        frequently_forwarded=context.get("frequently_forwarded") is True,
        latitude=fields.get("latitude"),
        longitude=fields.get("longitude"),
        address=fields.get("address"),
        label=fields.get("label"),
        button_text=fields.get("button_text"),
        button_payload=fields.get("button_payload"),
    )
    display = metadata.get("display_phone_number")
    phone_number_id = _text(metadata.get("phone_number_id")) or ""
    webhook_message = WebhookMessage(
        provider_message_id=_text(message.get("id")) or "",
        from_address=whatsapp_address(sender) if sender else "",
        to_address=whatsapp_address(display) if display else "",
        body=body,
        profile_name=profile_name,
        num_media=num_media,
        media_urls=media_urls,
        content=content,
        params=_params(message, metadata, contact),
        meta_phone_number_id=phone_number_id,
    )
    return MetaInboundMessage(
        phone_number_id=phone_number_id,
        message=webhook_message,
        media_ids=media_ids,
        missing=tuple(key for key in ("id", "from") if not _text(message.get(key))),
    )


def _contact_of(sender: str | None, contacts: list[Any]) -> Mapping[str, Any]:
    """The ``contacts[]`` entry of the message's sender (by ``wa_id``), or the only one."""
    entries = [c for c in contacts if isinstance(c, Mapping)]
    for entry in entries:
        if sender and _text(entry.get("wa_id")) == sender:
            return entry
    return entries[0] if len(entries) == 1 else {}


def _referral(value: object) -> dict[str, str]:
    """The ad's fields, camelCase as Twilio's ``Referral*`` are read (``source_url`` ->
    ``sourceUrl``; ``welcome_message.text`` -> ``welcomeMessageText``)."""
    if not isinstance(value, Mapping):
        return {}
    return {
        _CAMEL.sub(lambda m: m.group(1).upper(), key.replace(".", "_")): text
        for key, text in _flatten(value, "")
        if text
    }


def _params(
    message: Mapping[str, Any], metadata: Mapping[str, Any], contact: Mapping[str, Any]
) -> tuple[tuple[str, str], ...]:
    """Every field of the message as dotted paths (``interactive.button_reply.id``,
    ``contacts.0.phones.0.wa_id``), then the change's metadata and the sender's contact, so a
    field Meta adds tomorrow is kept too."""
    return (
        *_flatten(message, ""),
        *_flatten(metadata, "metadata."),
        *_flatten(contact, "contact."),
    )


def _flatten(value: Any, prefix: str) -> list[tuple[str, str]]:
    if isinstance(value, Mapping):
        if not value and prefix:
            return [(prefix.rstrip("."), "")]
        pairs: list[tuple[str, str]] = []
        for key, item in value.items():
            pairs.extend(_flatten(item, f"{prefix}{key}."))
        return pairs
    if isinstance(value, list):
        if not value:
            return [(prefix.rstrip("."), "")]
        pairs = []
        for index, item in enumerate(value):
            pairs.extend(_flatten(item, f"{prefix}{index}."))
        return pairs
    return [(prefix.rstrip("."), _scalar(value))]


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value)  # true / false, and numbers exactly as parsed (37.44221496582)


def _text(value: object) -> str | None:
    """A present, non-empty scalar as text (Meta sends ids and timestamps as strings, but a
    number is read too); None otherwise."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool) or value is None or isinstance(value, Mapping | list):
        return None
    return str(value)


def _number(value: object) -> str | None:
    """A latitude or longitude as text, as Twilio sends them."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return json.dumps(value)
    return _text(value)
