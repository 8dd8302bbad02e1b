"""The Meta WhatsApp Cloud API provider: ``httpx`` against the Graph API, behind the
``MessagingProvider`` port (ADR 0019).

One request per message: ``POST {base_url}/{version}/{phone-number-id}/messages`` with
``Authorization: Bearer <access token>`` and a JSON body (``adapters.meta.bodies``); a success
answers ``{"messaging_product": "whatsapp", "contacts": [{"input", "wa_id"}], "messages":
[{"id": "wamid..."}]}`` and ``messages[0].id`` is the provider message id
(https://developers.facebook.com/documentation/business-messaging/whatsapp/messages/text-messages,
whose example calls ``https://graph.facebook.com/v25.0/106540352242922/messages``).

Every failure leaves ``send`` as ``DeliveryFailed`` with a failure made in one place,
``adapters.meta.codes.translate``. The HTTP client has a timeout, a connection pool as large as
the number of threads that send at once, follows no redirect and never retries on its own (a
silent retry of a POST could send twice; the outbox retries instead). ``httpx.Client`` "can be
shared between threads" (its docstring, httpx 0.28.1), so one provider serves every sender
thread.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx

from adapters.meta.bodies import (
    CAPTIONED,
    MediaKind,
    callback_data,
    media_body,
    template_body,
    text_body,
)
from adapters.meta.codes import translate
from domain.outbox import DeliveryFailure
from domain.template_refs import is_twilio_content_sid, meta_template
from ports.messaging import DeliveryFailed, SendReceipt, SendRequest

DEFAULT_GRAPH_BASE_URL = "https://graph.facebook.com"
GRAPH_API_VERSION = "v25.0"
"""The Graph API version of Meta's current examples (the text-messages page above: "Graph API
version. v25.0"), also pywa 4.4.0's latest (``Version.GRAPH_API = ("17.0", "25.0")``). Moving
on is a one-line change, pinned by the HTTP-shape tests."""
WHATSAPP_PREFIX = "whatsapp:"
MEDIA_KINDS: dict[str, MediaKind] = {
    **dict.fromkeys(("jpg", "jpeg", "png"), MediaKind.IMAGE),
    **dict.fromkeys(("mp4", "3gp", "3gpp"), MediaKind.VIDEO),
    **dict.fromkeys(("aac", "amr", "mp3", "m4a", "ogg", "opus"), MediaKind.AUDIO),
    "webp": MediaKind.STICKER,
}
"""A media URL's kind by its extension, from the Cloud API's supported media types (image:
JPEG, PNG; video: MP4, 3GPP; audio: AAC, AMR, MP3, M4A, OGG/Opus; sticker: WebP; document: text,
PDF, Office files), "Supported media types",
https://developers.facebook.com/docs/whatsapp/cloud-api/reference/media#supported-media-types
(mirrored at https://docs.bizmagnets.ai/whatsapp-channel/supported-media-types). Any other
extension, or none, is sent as a document: WhatsApp shows any file as one (ADR 0023)."""


class MetaMessagingProvider:
    """Sends WhatsApp messages through Meta's Cloud API. Thread-safe.

    ``phone_number_id`` is the default sender (a business phone-number id, digits); a request's
    ``from_phone`` names another one of the same app. ``transport`` replaces the network (tests:
    ``httpx.MockTransport``)."""

    def __init__(
        self,
        *,
        access_token: str,
        phone_number_id: str,
        base_url: str = DEFAULT_GRAPH_BASE_URL,
        api_version: str = GRAPH_API_VERSION,
        timeout_seconds: float = 10.0,
        pool_size: int = 16,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if timeout_seconds <= 0:
            raise ValueError(f"timeout must be positive, got {timeout_seconds}")
        if not access_token.strip():
            raise ValueError("an access token is required")
        if not _is_phone_number_id(phone_number_id):
            raise ValueError(f"a Meta phone-number id is digits, got {phone_number_id!r}")
        if not base_url.lower().startswith(("https://", "http://")):
            raise ValueError(f"the Graph API base URL must be http(s), got {base_url!r}")
        self.default_sender = phone_number_id.strip()
        self.api_version = api_version.strip("/")
        self.base_url = base_url.rstrip("/")
        size = max(pool_size, 1)
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {access_token.strip()}"},
            timeout=httpx.Timeout(timeout_seconds),
            follow_redirects=False,
            transport=transport or httpx.HTTPTransport(limits=limits, retries=0),
        )

    def sender_key(self, request: SendRequest) -> str:
        """The phone-number id the request goes out from (the rate limit is per sender). A
        phone-number id is digits only, a Twilio sender ``+`` and digits: the keys of the two
        providers never meet."""
        return request.from_phone.strip() if request.from_phone else self.default_sender

    def messages_path(self, phone_number_id: str) -> str:
        return f"/{self.api_version}/{phone_number_id}/messages"

    def send(self, request: SendRequest) -> SendReceipt:
        sender = self.sender_key(request)
        if not _is_phone_number_id(sender):
            raise DeliveryFailed(
                DeliveryFailure(
                    transient=False,
                    code="meta-sender",
                    message="configuration error: the sender is not a Meta phone-number id "
                    "(digits); a Twilio number cannot send through Meta",
                )
            )
        try:
            body = message_body(request)
        except ValueError as exc:
            raise DeliveryFailed(
                DeliveryFailure(transient=False, code="invalid-request", message=str(exc))
            ) from exc
        data = callback_data(request.tenant_id, request.outbox_id)
        if data is not None:
            body["biz_opaque_callback_data"] = data
        return self.post(sender, body)

    def post(self, phone_number_id: str, body: dict[str, Any]) -> SendReceipt:
        """Hand one message body (``adapters.meta.bodies``) to the Cloud API. Raises
        DeliveryFailed for every failure."""
        try:
            response = self._client.post(self.messages_path(phone_number_id), json=body)
        except Exception as exc:
            raise DeliveryFailed(translate(exc)) from exc
        if not response.is_success:
            raise DeliveryFailed(translate(response))
        message_id = _message_id(response)
        if message_id is None:
            # Accepted without an id: retrying could send twice, but recording "sent" without
            # one would hide the anomaly. Transient, so the schedule decides (ADR 0006).
            raise DeliveryFailed(
                DeliveryFailure(
                    transient=True,
                    code="no-message-id",
                    message=f"Meta answered HTTP {response.status_code} without messages[0].id",
                )
            )
        return SendReceipt(message_id)

    def close(self) -> None:
        self._client.close()


def media_kind(url: str) -> MediaKind:
    """The kind of the media at ``url`` by its path's extension (``MEDIA_KINDS``); document when
    unknown."""
    name = urlsplit(url).path.rsplit("/", 1)[-1]
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return MEDIA_KINDS.get(extension, MediaKind.DOCUMENT)


def message_body(request: SendRequest) -> dict[str, Any]:
    """The Graph API body for a request: a template (``name:language``, its variables as body
    parameters), a media message by ``link`` with the body as caption, or a text. Raises
    DeliveryFailed (permanent, a configuration error) for a Twilio Content SID; ValueError for
    what Meta would refuse (a caption on audio or a sticker, text over the limits)."""
    to = _recipient(request.to_phone)
    if request.content_sid is not None:
        template = meta_template(request.content_sid)
        if template is None:
            twilio = is_twilio_content_sid(request.content_sid)
            raise DeliveryFailed(
                DeliveryFailure(
                    transient=False,
                    code="meta-template",
                    message=f"configuration error: the template {request.content_sid!r} is not "
                    "a Meta template (name:language)"
                    + (", it is a Twilio Content SID" if twilio else ""),
                )
            )
        name, language = template
        return template_body(
            to, name=name, language=language, variables=request.content_variables or {}
        )
    if request.media_urls:
        (url,) = request.media_urls[:1]
        kind = media_kind(url)
        if request.body and kind not in CAPTIONED:
            raise ValueError(f"a {kind} message takes no caption: send the text on its own")
        filename = urlsplit(url).path.rsplit("/", 1)[-1] if kind is MediaKind.DOCUMENT else ""
        return media_body(to, kind, url, caption=request.body or None, filename=filename or None)
    return text_body(to, request.body)


def _message_id(response: httpx.Response) -> str | None:
    try:
        payload: Any = response.json()
    except ValueError:
        return None
    messages = payload.get("messages") if isinstance(payload, dict) else None
    if not isinstance(messages, list) or not messages or not isinstance(messages[0], dict):
        return None
    message_id = messages[0].get("id")
    return message_id if isinstance(message_id, str) and message_id else None


def _recipient(phone: str) -> str:
    """``whatsapp:+33...`` or ``+33...`` -> ``+33...`` (Meta takes ``+`` and country code)."""
    value = phone.strip()
    if value.lower().startswith(WHATSAPP_PREFIX):
        value = value[len(WHATSAPP_PREFIX) :].strip()
    return value


def _is_phone_number_id(value: str) -> bool:
    return bool(value) and value.strip().isdigit()
