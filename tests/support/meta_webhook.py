"""Meta webhook payloads as Meta documents them, and their signature.

The shapes and example values are those of Meta's messages webhook reference, one page per type
(https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/button/,
``.../interactive``, ``.../location/``, ``.../status/``, ``.../system``, ``.../errors``; the
text, image, contacts and reaction pages as mirrored under
https://support.chatarchitect.com/books/meta-whatsapp/): business display number
``15550783881``, phone-number id ``106540352242922``, WABA ``102290129340398``, user
``16505551234`` "Sheena Nelson", the message and contextual ``wamid`` values, timestamp
``1739321024``, the ad referral's example values. The second business number is Meta's sample
test notification (display ``16505551111``, id ``123456123``, user ``16315551181`` "test user
name", message ``ABGGFlA5Fpa`` "this is a text message"), as logged copies of it show
(http://playnow.my/WAWeb/data.txt). The status examples with ``conversation`` and ``pricing``
are real ones of that shape from the same copies (recipient ``5516992318222``). Where a page
gives no example value (a longitude, an image's ``url``) the value is ours.

Bodies are serialised as Meta sends them, non-ASCII escaped (``\\ud83d\\udc4d``), and signed
``sha256=`` + HMAC-SHA256 of those bytes with the app secret
(https://developers.facebook.com/docs/graph-api/webhooks/getting-started).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

APP_SECRET = "app-secret-of-the-test-app"
WABA_ID = "102290129340398"
DISPLAY_NUMBER = "15550783881"
PHONE_NUMBER_ID = "106540352242922"
USER = "16505551234"
USER_NAME = "Sheena Nelson"
MESSAGE_ID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA="
CONTEXT_ID = "wamid.HBgLMTQxMjU1NTA4MjkVAgASGBQzQUNCNjk5RDUwNUZGMUZEM0VBRAA="
TIMESTAMP = "1739321024"

OTHER_DISPLAY_NUMBER = "16505551111"
OTHER_PHONE_NUMBER_ID = "123456123"
OTHER_USER = "16315551181"

REFERRAL = {
    "source_url": "https://fb.me/3cr4Wqqkv",
    "source_id": "120226305854810726",
    "source_type": "ad",
    "body": "Summer succulents are here!",
    "headline": "Chat with us",
    "media_type": "image",
    "image_url": "https://scontent.xx.fbcdn.net/v/t45.1...",
    "ctwa_clid": "Aff-n8ZTODiE79d22KtAwQKj9e_mIEOOj27vDVwFjN80dp4_0NiNhEgpGo0AHemvuSoifXaytfTz",
    "welcome_message": {"text": "Hi there! Let us know how we can help!"},
}


def metadata(display: str = DISPLAY_NUMBER, number_id: str = PHONE_NUMBER_ID) -> dict[str, str]:
    return {"display_phone_number": display, "phone_number_id": number_id}


def contact(wa_id: str = USER, name: str = USER_NAME) -> dict[str, Any]:
    return {"profile": {"name": name}, "wa_id": wa_id}


def message(kind: str, content: Any, **extra: Any) -> dict[str, Any]:
    """A ``messages[]`` item of ``kind`` from the default user."""
    item: dict[str, Any] = {"from": USER, "id": MESSAGE_ID, "timestamp": TIMESTAMP, "type": kind}
    if content is not None:
        item[kind] = content
    item.update(extra)
    return item


def change(value: dict[str, Any], field: str = "messages") -> dict[str, Any]:
    return {"value": {"messaging_product": "whatsapp", **value}, "field": field}


def notification(*changes: dict[str, Any], waba_id: str = WABA_ID) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": list(changes)}],
    }


def inbound(
    *messages: dict[str, Any], contacts: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A notification of ``messages`` to the default business number."""
    return notification(
        change(
            {
                "metadata": metadata(),
                "contacts": contacts if contacts is not None else [contact()],
                "messages": list(messages),
            }
        )
    )


def status(
    state: str, *, wamid: str = MESSAGE_ID, recipient: str = USER, **extra: Any
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": wamid,
        "status": state,
        "timestamp": TIMESTAMP,
        "recipient_id": recipient,
    }
    item.update(extra)
    return item


def statuses(*items: dict[str, Any]) -> dict[str, Any]:
    return notification(change({"metadata": metadata(), "statuses": list(items)}))


def body_of(payload: dict[str, Any]) -> bytes:
    """The bytes Meta posts: compact JSON, non-ASCII escaped."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode()


def sign(raw_body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()
