"""Twilio's webhook forms: the request's body read into form parameters (``read_form``), and
the inbound WhatsApp form read into a ``WebhookMessage`` (``read_twilio_message``; issue 11 §3,
ADR 0010).

``read_form`` refuses (``HttpProblem``) what is not a bounded, strictly decoded UTF-8 form.

The parameter names are Twilio's (https://www.twilio.com/docs/messaging/guides/webhook-request):
``MessageSid``, ``From``, ``To``, ``Body``, ``ProfileName``, ``WaId``, ``MessageType``,
``NumMedia`` with ``MediaUrlN`` / ``MediaContentTypeN``, ``Latitude`` / ``Longitude`` /
``Address`` / ``Label`` (a shared location), ``ButtonText`` / ``ButtonPayload`` (a quick reply),
``OriginalRepliedMessageSid`` / ``OriginalRepliedMessageSender`` (the message replied to),
``Referral*`` (a click-to-WhatsApp ad), ``Forwarded`` / ``FrequentlyForwarded``. Reading the
message is total: ``read_twilio_message`` refuses no signed form; every field, known or not, is
also kept in the parameter set.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from starlette.requests import Request

from application.webhook_input import WebhookMessage
from domain.inbound_content import InboundContent, InputFlag
from entrypoints.webhook_problems import HttpProblem

_NUMBERED = re.compile(r"^(MediaUrl|MediaContentType)(\d{1,4})$")
REFERRAL_PREFIX = "Referral"
FORM_TYPE = "application/x-www-form-urlencoded"


class FormParams(dict[str, str]):
    """Form fields (the first value of each) that also answer ``getall`` for repeated keys, as
    Twilio's ``RequestValidator`` expects of a multi-dict."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__()
        self.pairs = pairs
        self._all: dict[str, list[str]] = {}
        for key, value in pairs:
            self._all.setdefault(key, []).append(value)
            self.setdefault(key, value)

    def getall(self, key: str) -> list[str]:
        return self._all[key]


async def read_form(request: Request, max_body_bytes: int) -> FormParams:
    """The request's form. Raises HttpProblem: 415 (not a UTF-8 form), 413 (over
    ``max_body_bytes``), 400 (unreadable)."""
    media_type, _, parameters = request.headers.get("content-type", "").partition(";")
    if media_type.strip().lower() != FORM_TYPE:
        raise HttpProblem(
            415, f"expected {FORM_TYPE}", contentType=request.headers.get("content-type")
        )
    charset = _charset(parameters)
    if charset not in (None, "utf-8", "utf8"):
        raise HttpProblem(415, f"expected a UTF-8 form, got charset {charset}")
    body = await bounded_body(request, max_body_bytes)
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
        )
    except UnicodeDecodeError as exc:
        raise HttpProblem(400, "the form is not valid UTF-8") from exc
    except ValueError as exc:
        raise HttpProblem(400, f"unreadable form: {exc}") from exc
    return FormParams(pairs)


async def bounded_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HttpProblem(400, "invalid Content-Length")
        if int(declared) > limit:
            raise HttpProblem(413, f"body over {limit} bytes", contentLength=int(declared))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HttpProblem(413, f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _charset(parameters: str) -> str | None:
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


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
