"""Meta's webhook, pure: the verification request, the payload signature, and a POST body read
into inbound messages and delivery reports (issue 17 §2, ADR 0019). No I/O: the routes of the
``livesell webhook`` service call these and then the same use cases as Twilio's.

- **Verification** ("Verification Requests",
  https://developers.facebook.com/docs/graph-api/webhooks/getting-started, and WhatsApp's
  "Create a webhook endpoint", as mirrored at
  https://support.chatarchitect.com/books/meta-whatsapp/page/create-a-webhook-endpoint-developer-documentation):
  Meta sends ``GET ?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=...``; the
  endpoint compares the token with its own and answers the challenge.
- **Signature** (same page, "Validating Payloads"): ``X-Hub-Signature-256: sha256=<hex>``, the
  HMAC-SHA256 of the payload keyed with the app secret. Meta signs the body as it sends it (an
  "escaped unicode version of the payload": non-ASCII text arrives as ``\\u00e4``), so the HMAC
  is computed over the raw bytes received, never over re-encoded JSON.
- **Payload** (the messages webhook reference, one page per type, e.g.
  https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/button/):
  ``{"object": "whatsapp_business_account", "entry": [{"id": <WABA id>, "changes": [{"field":
  "messages", "value": {"messaging_product": "whatsapp", "metadata": {"display_phone_number",
  "phone_number_id"}, "contacts": [...], "messages": [...], "statuses": [...], "errors":
  [...]}}]}]}``. One POST may carry several entries and changes, for several business numbers,
  each with several messages or statuses.
- **Statuses** (the status reference,
  https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/status/):
  ``id`` (the ``wamid`` the send answered), ``status`` (``sent``, ``delivered``, ``read``,
  ``failed``), ``timestamp``, ``recipient_id``, ``biz_opaque_callback_data`` (what the send put
  there: our tenant and outbox ids), ``errors`` (``code``, ``title``, ``message``,
  ``error_data.details``) on a failure. They become the arguments of
  ``application.inbox.record_delivery_report``, the use case Twilio's status callback calls:
  Meta's four statuses are Twilio's names, so the same join (``domain.delivery``) orders them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

import attrs

from adapters.meta.bodies import read_callback_data
from domain.delivery import DeliveryStatus
from entrypoints.meta_messages import MetaInboundMessage, read_meta_message, whatsapp_address

SIGNATURE_HEADER = "X-Hub-Signature-256"
SIGNATURE_PREFIX = "sha256="
WHATSAPP_OBJECT = "whatsapp_business_account"
MESSAGES_FIELD = "messages"


class InvalidMetaPayload(ValueError):
    """A signed POST body that is not a WhatsApp Business Account notification at all."""


def signature_of(raw_body: bytes, app_secret: str) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends for ``raw_body``."""
    digest = hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def signature_is_valid(raw_body: bytes, header: str | None, app_secret: str) -> bool:
    """Whether ``header`` is the HMAC-SHA256 of ``raw_body`` with ``app_secret`` (``sha256=``
    prefix, hex digits in any case), compared in constant time. False without a header, without
    the prefix, or without a secret."""
    if not header or not app_secret:
        return False
    value = header.strip()
    if value[: len(SIGNATURE_PREFIX)].lower() != SIGNATURE_PREFIX:
        return False
    received = value[len(SIGNATURE_PREFIX) :].lower()
    expected = signature_of(raw_body, app_secret)[len(SIGNATURE_PREFIX) :]
    return hmac.compare_digest(received.encode(), expected.encode())


def verification_challenge(params: Mapping[str, str], verify_token: str) -> str | None:
    """The ``hub.challenge`` to answer (as plain text, 200) when ``hub.mode`` is ``subscribe``
    and ``hub.verify_token`` is ours (constant-time); None for anything else (answer 403)."""
    if not verify_token or params.get("hub.mode") != "subscribe":
        return None
    token = params.get("hub.verify_token", "")
    challenge = params.get("hub.challenge", "")
    if not challenge or not hmac.compare_digest(token.encode(), verify_token.encode()):
        return None
    return challenge


@attrs.frozen(kw_only=True)
class MetaStatusUpdate:
    """One ``statuses[]`` item: a delivery report of an outbound message. ``tenant_id`` and
    ``outbox_id`` are those the send put in ``biz_opaque_callback_data`` (None when absent);
    ``error_code`` is the first error's code of a failure."""

    phone_number_id: str
    provider_message_id: str
    status: str
    recipient: str | None = None
    error_code: str | None = None
    error_title: str | None = None
    tenant_id: str | None = None
    outbox_id: str | None = None
    timestamp: str | None = None
    sender: str | None = None

    @property
    def delivery_status(self) -> DeliveryStatus | None:
        """The status as the delivery-report rules know it (None: not an outbound status)."""
        return DeliveryStatus.from_provider(self.status)

    def report_arguments(self) -> dict[str, str | None]:
        """The keyword arguments of ``application.inbox.record_delivery_report`` (with its
        ``uow_factory`` and ``clock``), as the Twilio status route passes them."""
        return {
            "status": self.status,
            "error_code": self.error_code,
            "tenant_id": self.tenant_id,
            "outbox_id": self.outbox_id,
            "provider_message_id": self.provider_message_id or None,
            "sender": self.sender,
        }


@attrs.frozen(kw_only=True)
class MetaError:
    """An error Meta reported about the business number itself (``value.errors``)."""

    phone_number_id: str
    code: str | None
    title: str | None
    details: str | None = None


@attrs.frozen(kw_only=True)
class MetaNotification:
    """Everything one POST carried, in payload order; ``ignored`` names the change fields that
    are not messages (template or account updates) this service does not take."""

    messages: tuple[MetaInboundMessage, ...] = ()
    statuses: tuple[MetaStatusUpdate, ...] = ()
    errors: tuple[MetaError, ...] = ()
    ignored: tuple[str, ...] = ()


def read_notification(raw_body: bytes) -> MetaNotification:
    """Read a (verified) POST body. Raises InvalidMetaPayload when it is not JSON, not an object,
    or not a ``whatsapp_business_account`` notification; inside one, whatever is not a list or an
    object where one is expected is skipped, never refused."""
    try:
        payload: Any = json.loads(raw_body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidMetaPayload(f"the body is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise InvalidMetaPayload("the body is not a JSON object")
    if payload.get("object") != WHATSAPP_OBJECT:
        raise InvalidMetaPayload(f"object is {payload.get('object')!r}, not {WHATSAPP_OBJECT!r}")
    messages: list[MetaInboundMessage] = []
    statuses: list[MetaStatusUpdate] = []
    errors: list[MetaError] = []
    ignored: list[str] = []
    for entry in _objects(payload.get("entry")):
        for change in _objects(entry.get("changes")):
            field = change.get("field")
            value = change.get("value")
            if not isinstance(value, Mapping):
                continue
            if field not in (MESSAGES_FIELD, None):
                ignored.append(str(field))
                continue
            metadata = value.get("metadata")
            metadata = metadata if isinstance(metadata, Mapping) else {}
            contacts = value.get("contacts")
            contacts = contacts if isinstance(contacts, list) else []
            for item in _objects(value.get("messages")):
                messages.append(read_meta_message(item, metadata=metadata, contacts=contacts))
            statuses.extend(_status(item, metadata) for item in _objects(value.get("statuses")))
            errors.extend(_error(item, metadata) for item in _objects(value.get("errors")))
    return MetaNotification(
        messages=tuple(messages),
        statuses=tuple(statuses),
        errors=tuple(errors),
        ignored=tuple(ignored),
    )


def _status(item: Mapping[str, Any], metadata: Mapping[str, Any]) -> MetaStatusUpdate:
    first_error = next(iter(_objects(item.get("errors"))), {})
    code = first_error.get("code")
    tenant_id, outbox_id = read_callback_data(item.get("biz_opaque_callback_data"))
    recipient = _text(item.get("recipient_id"))
    display = metadata.get("display_phone_number")
    return MetaStatusUpdate(
        phone_number_id=_text(metadata.get("phone_number_id")) or "",
        provider_message_id=_text(item.get("id")) or "",
        status=_text(item.get("status")) or "",
        recipient=_e164(recipient)
        if recipient and item.get("recipient_type") != "group"
        else recipient,
        error_code=str(code) if isinstance(code, int | str) and str(code) else None,
        error_title=_text(first_error.get("title")),
        tenant_id=tenant_id,
        outbox_id=outbox_id,
        timestamp=_text(item.get("timestamp")),
        sender=_e164(display) if display else None,
    )


def _error(item: Mapping[str, Any], metadata: Mapping[str, Any]) -> MetaError:
    data = item.get("error_data")
    code = item.get("code")
    return MetaError(
        phone_number_id=_text(metadata.get("phone_number_id")) or "",
        code=str(code) if isinstance(code, int | str) else None,
        title=_text(item.get("title")),
        details=_text(data.get("details")) if isinstance(data, Mapping) else None,
    )


def _e164(number: object) -> str:
    return whatsapp_address(number).removeprefix("whatsapp:")


def _objects(value: object) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None
