"""Phone numbers: WhatsApp addresses normalised to E.164 with ``phonenumbers``."""

from __future__ import annotations

import re

import phonenumbers

from domain.errors import InvalidPhoneNumber

WHATSAPP_PREFIX = "whatsapp:"
_MASK_RE = re.compile(r"\+?\d[\d\s().-]{5,}\d")


def strip_whatsapp_prefix(raw: str) -> str:
    """``whatsapp:+33612345678`` -> ``+33612345678``; anything else unchanged but trimmed."""
    value = raw.strip()
    if value.lower().startswith(WHATSAPP_PREFIX):
        value = value[len(WHATSAPP_PREFIX) :].strip()
    return value


def normalise_phone(raw: str, default_region: str) -> str:
    """Return ``raw`` in E.164; numbers without ``+`` are read in ``default_region``.

    Raises InvalidPhoneNumber when the text is not a phone number or the number is not valid.
    """
    value = strip_whatsapp_prefix(raw)
    if not value:
        raise InvalidPhoneNumber(raw, "empty")
    try:
        parsed = phonenumbers.parse(value, default_region.upper())
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(raw, str(exc)) from exc
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhoneNumber(raw, "not a valid number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def is_valid_region(region: str) -> bool:
    """True when ``region`` is a two-letter region phonenumbers knows (``FR``, ``US`` ...)."""
    return region.upper() in phonenumbers.SUPPORTED_REGIONS


def mask_phone(phone: str) -> str:
    """Hide all but the last four digits: ``+33612345678`` -> ``********5678``."""
    digits = strip_whatsapp_prefix(phone)
    if len(digits) <= 4:
        return "*" * len(digits)
    return "*" * (len(digits) - 4) + digits[-4:]


def mask_phones_in(text: str) -> str:
    """Mask every phone-looking run of digits inside free text (log messages, errors)."""
    return _MASK_RE.sub(lambda m: mask_phone(m.group(0)), text)
