"""The JSON bodies of ``POST /{phone-number-id}/messages``: text, template and media, pure.

``adapters.meta.provider.message_body`` maps a ``SendRequest`` onto them: a Meta template
reference ``name:language`` with its ``content_variables``, a media URL with the body as caption,
else the text (ADR 0023). Shapes, from Meta's "Sending messages" pages:

- every body: ``messaging_product: "whatsapp"``, ``recipient_type: "individual"``, ``to`` (the
  user's number, ``+`` and country code accepted), ``type``, and the object named by ``type``;
  text: ``{"body": ..., "preview_url": bool}``, at most 4,096 characters
  (https://developers.facebook.com/documentation/business-messaging/whatsapp/messages/text-messages);
- media by ``link`` (a URL on a public server) with an optional ``caption`` (at most 1,024
  characters):
  https://developers.facebook.com/documentation/business-messaging/whatsapp/messages/image-messages;
  a document also takes a ``filename`` ("The WhatsApp client will use an appropriate file type
  icon based on the extension"):
  https://developers.facebook.com/docs/whatsapp/cloud-api/messages/document-messages; audio and
  stickers take ``link`` or ``id`` only, image, video and document a caption too (the media table
  of https://developers.whats91.com/messaging/meta-compatibility/media, which mirrors Meta's);
- a template: ``{"name", "language": {"code"}, "components": [{"type": "body", "parameters":
  [{"type": "text", "text": ...}]}]}``, positional parameters in the order of ``{{1}}``,
  ``{{2}}`` ...; a template with named parameters takes ``parameter_name`` beside each text:
  "Sending Message Templates", https://developers.facebook.com/docs/whatsapp/message-templates/creation,
  and the Cloud API's request shown at
  https://wa.expert/pages/docs/api-reference/send-a-template-message.html;
- ``biz_opaque_callback_data``: "an arbitrary 512B string, useful for tracking", returned in the
  status webhooks of the message
  (https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/status/):
  it carries our tenant and outbox ids, as Twilio's status callback URL does (ADR 0011).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 512
TENANT_KEY = "tenantId"
OUTBOX_KEY = "outboxId"


class MediaKind(enum.StrEnum):
    """What a media message is; the body's ``type`` and the name of its object."""

    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    DOCUMENT = "document"
    STICKER = "sticker"


CAPTIONED = frozenset({MediaKind.IMAGE, MediaKind.VIDEO, MediaKind.DOCUMENT})


def _envelope(to: str, kind: str, content: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": kind,
        kind: dict(content),
    }


def text_body(to: str, body: str, *, preview_url: bool = False) -> dict[str, Any]:
    """A text message. Raises ValueError over 4,096 characters (Meta would refuse it)."""
    if len(body) > MAX_TEXT_LENGTH:
        raise ValueError(f"text is {len(body)} characters, at most {MAX_TEXT_LENGTH} allowed")
    return _envelope(to, "text", {"body": body, "preview_url": preview_url})


def media_body(
    to: str,
    kind: MediaKind | str,
    link: str,
    *,
    caption: str | None = None,
    filename: str | None = None,
) -> dict[str, Any]:
    """A media message by URL. Raises ValueError for a caption on audio or a sticker, a caption
    over 1,024 characters, a file name on anything but a document, or a link that is not
    http(s)."""
    media = MediaKind(kind)
    if not link.lower().startswith(("https://", "http://")):
        raise ValueError(f"a media link must be an http(s) URL, got {link!r}")
    content: dict[str, Any] = {"link": link}
    if caption:
        if media not in CAPTIONED:
            raise ValueError(f"a {media} message takes no caption")
        if len(caption) > MAX_CAPTION_LENGTH:
            raise ValueError(
                f"caption is {len(caption)} characters, at most {MAX_CAPTION_LENGTH} allowed"
            )
        content["caption"] = caption
    if filename:
        if media is not MediaKind.DOCUMENT:
            raise ValueError(f"only a document takes a file name, not a {media}")
        content["filename"] = filename
    return _envelope(to, media.value, content)


def template_body(
    to: str,
    *,
    name: str,
    language: str,
    variables: Mapping[str, str] | Sequence[str] = (),
) -> dict[str, Any]:
    """A template message with its body variables.

    ``variables`` as a sequence: positional, ``{{1}}`` first. As a mapping (issue 15's
    ``content_variables``, ``{"1": "Robe", "2": "M"}``): keys that are all numbers are positions
    (sorted as numbers, and they must be 1..N without a gap); other keys are named parameters.
    No variables: no components. Raises ValueError for an empty name or language, mixed or
    gapped keys; TypeError for one string."""
    if not name.strip() or not language.strip():
        raise ValueError("a template needs a name and a language code")
    template: dict[str, Any] = {"name": name, "language": {"code": language}}
    parameters = _body_parameters(variables)
    if parameters:
        template["components"] = [{"type": "body", "parameters": parameters}]
    return _envelope(to, "template", template)


def _body_parameters(variables: Mapping[str, str] | Sequence[str]) -> list[dict[str, str]]:
    if isinstance(variables, str):
        raise TypeError("template variables are a list or a mapping, not one string")
    if not isinstance(variables, Mapping):
        return [{"type": "text", "text": value} for value in variables]
    keys = list(variables)
    if keys and all(key.isdigit() for key in keys):
        positions = sorted(keys, key=int)
        if [int(key) for key in positions] != list(range(1, len(positions) + 1)):
            raise ValueError(f"positional variables must be 1..{len(positions)}, got {positions}")
        return [{"type": "text", "text": variables[key]} for key in positions]
    if any(key.isdigit() for key in keys):
        raise ValueError("template variables are either all positional or all named")
    return [{"type": "text", "parameter_name": key, "text": variables[key]} for key in keys]


def callback_data(tenant_id: str, outbox_id: str) -> str | None:
    """The ``biz_opaque_callback_data`` naming an outbox message (``tenantId=..&outboxId=..``,
    the query of Twilio's callback URL), or None when it would not fit in 512 bytes."""
    data = urlencode({TENANT_KEY: tenant_id, OUTBOX_KEY: outbox_id})
    return data if len(data.encode()) <= MAX_CALLBACK_DATA_BYTES else None


def read_callback_data(data: object) -> tuple[str | None, str | None]:
    """``(tenant_id, outbox_id)`` from a status webhook's ``biz_opaque_callback_data`` as
    ``callback_data`` wrote it; (None, None) for anything else."""
    if not isinstance(data, str) or not data:
        return None, None
    fields = dict(parse_qsl(data, keep_blank_values=False))
    tenant, outbox = fields.get(TENANT_KEY), fields.get(OUTBOX_KEY)
    if tenant and outbox:
        return tenant, outbox
    return None, None
