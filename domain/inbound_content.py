"""What a WhatsApp message carries beyond its text (issue 11 §3, ADR 0010), and the rules that make
whatever the provider signed storable (§4).

``InboundContent`` keeps the message kind, the media content types, a shared location, a
quick-reply button, the product post replied to, a click-to-WhatsApp ad referral, the sender's
WhatsApp id, the forwarded flags, and the provider's whole signed parameter set, so a parameter
added tomorrow is kept too. ``clean_text`` is the one rule for text that cannot be stored as sent:
control characters are removed (NUL cannot be stored in Postgres text at all) and text over its
limit is cut, each with a flag saying so; the exact signed form is then kept beside it.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from typing import Any

import attrs

MAX_TEXT_FIELD_LENGTH = 1024
"""Button texts and payloads, addresses, labels, referral fields: WhatsApp caps them far lower
(a button title at 20, a payload at 256 characters); longer is cut with a flag."""

MAX_MEDIA_URL_LENGTH = 2048

_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
"""C0 and C1 control characters but tab, line feed and carriage return (which WhatsApp texts
carry)."""


class MessageKind(enum.StrEnum):
    """Twilio's ``MessageType`` for WhatsApp. Any other value is kept as sent (a kind added
    tomorrow is a string like these)."""

    TEXT = "text"
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    DOCUMENT = "document"
    STICKER = "sticker"
    LOCATION = "location"
    CONTACTS = "contacts"
    INTERACTIVE = "interactive"
    BUTTON = "button"
    REACTION = "reaction"
    ORDER = "order"
    UNSUPPORTED = "unsupported"


class InputFlag(enum.StrEnum):
    """Why a stored field differs from what the provider sent (the signed form is kept whole)."""

    CONTROL_CHARACTERS_REMOVED = "control_characters_removed"
    BODY_TRUNCATED = "body_truncated"
    FIELD_TRUNCATED = "field_truncated"
    NUM_MEDIA_UNREADABLE = "num_media_unreadable"


def clean_text(value: str, max_length: int) -> tuple[str, set[InputFlag]]:
    """``value`` without control characters (but tab, LF, CR) and cut to at most ``max_length``
    characters, never inside a character as the reader sees it, with the flags saying what was
    done."""
    flags: set[InputFlag] = set()
    cleaned = _CONTROL.sub("", value)
    if cleaned != value:
        flags.add(InputFlag.CONTROL_CHARACTERS_REMOVED)
    if len(cleaned) > max_length:
        cut = max_length
        # Never cut inside a character as the reader sees it: back off to before a base whose
        # combining marks, variation selector, skin tone or ZWJ-joined emoji would be cut off.
        while cut > 0 and (_extends(cleaned[cut]) or cleaned[cut - 1] == ZWJ):
            cut -= 1
        cleaned = cleaned[: cut or max_length]
        flags.add(InputFlag.FIELD_TRUNCATED)
    return cleaned, flags


ZWJ = "\u200d"


def _extends(char: str) -> bool:
    """Whether ``char`` belongs to the character before it (Unicode's grapheme extenders that
    WhatsApp texts carry: combining marks, ZWJ, variation selectors, skin tones, tag characters)."""
    return bool(
        unicodedata.combining(char)
        or char == ZWJ
        or "\ufe00" <= char <= "\ufe0f"
        or "\U0001f3fb" <= char <= "\U0001f3ff"
        or "\U000e0020" <= char <= "\U000e007f"
    )


def storable(value: str) -> str:
    """``value`` as any store can hold it: NUL (refused by Postgres text and jsonb) replaced by
    U+FFFD. Used for the kept parameter set, whose exact form is ``raw_form``."""
    return value.replace("\x00", "\ufffd")


ProviderParams = dict[str, str | list[str]]


@attrs.frozen(kw_only=True)
class InboundContent:
    """Everything the provider sent about one message besides sender, recipient and text."""

    kind: str | None = None
    media_content_types: tuple[str, ...] = ()
    latitude: str | None = None
    longitude: str | None = None
    address: str | None = None
    label: str | None = None
    button_text: str | None = None
    button_payload: str | None = None
    replied_to_message_id: str | None = None
    replied_to_sender: str | None = None
    referral: dict[str, str] = attrs.field(factory=dict)
    wa_id: str | None = None
    forwarded: bool = False
    frequently_forwarded: bool = False
    provider_params: ProviderParams = attrs.field(factory=dict)
    raw_form: str | None = None
    flags: tuple[str, ...] = ()

    @property
    def known_kind(self) -> MessageKind | None:
        """The kind as one this code knows, or None (absent or new)."""
        try:
            return MessageKind(self.kind) if self.kind is not None else None
        except ValueError:
            return None

    @property
    def has_location(self) -> bool:
        return self.latitude is not None and self.longitude is not None

    def to_payload(self) -> dict[str, Any]:
        """The optional camelCase keys of the job payload; only those with a value."""
        out: dict[str, Any] = {}
        if self.kind is not None:
            out["messageKind"] = self.kind
        if self.media_content_types:
            out["mediaContentTypes"] = list(self.media_content_types)
        location = _present(
            latitude=self.latitude, longitude=self.longitude, address=self.address, label=self.label
        )
        if location:
            out["location"] = location
        button = _present(text=self.button_text, payload=self.button_payload)
        if button:
            out["button"] = button
        replied = _present(messageId=self.replied_to_message_id, sender=self.replied_to_sender)
        if replied:
            out["repliedTo"] = replied
        if self.referral:
            out["referral"] = dict(self.referral)
        if self.wa_id is not None:
            out["waId"] = self.wa_id
        if self.forwarded:
            out["forwarded"] = True
        if self.frequently_forwarded:
            out["frequentlyForwarded"] = True
        if self.provider_params:
            out["providerParams"] = {
                k: list(v) if isinstance(v, list) else v for k, v in self.provider_params.items()
            }
        if self.raw_form is not None:
            out["rawForm"] = self.raw_form
        if self.flags:
            out["inputFlags"] = list(self.flags)
        return out


def _present(**values: str | None) -> dict[str, str]:
    return {key: value for key, value in values.items() if value is not None}
