"""Phone numbers: WhatsApp addresses normalised to E.164 with ``phonenumbers``."""

from __future__ import annotations

import re

import phonenumbers

from domain.errors import InvalidPhoneNumber

WHATSAPP_PREFIX = "whatsapp:"
# A phone-looking run: 7+ digits, single separators allowed, not glued to a word (ids, provider
# SIDs), not a date (``2026-03-02``) nor the seconds of a time (``18:00:08.123456``).
_MASK_RE = re.compile(r"(?<![\w.+])(?<!\d:)(?!\d{4}-\d\d-\d\d)\+?\d(?:[ ().-]{0,2}\d)+(?!\w)")
_MIN_PHONE_DIGITS = 7


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
    """Hide all but the last four digits: ``+33612345678`` -> ``********5678``,
    ``06 12 34 56 78`` -> ``*********56 78``."""
    value = strip_whatsapp_prefix(phone)
    if len(value) <= 4:
        return "*" * len(value)
    seen = 0
    for index in range(len(value) - 1, -1, -1):
        if value[index].isdigit():
            seen += 1
            if seen == 4:
                return "*" * index + value[index:]
    return "*" * len(value)


def mask_phones_in(text: str) -> str:
    """Mask every phone-looking run of digits inside free text (log messages, errors)."""

    def mask(match: re.Match[str]) -> str:
        run = match.group(0)
        if sum(c.isdigit() for c in run) < _MIN_PHONE_DIGITS:
            return run
        return mask_phone(run)

    return _MASK_RE.sub(mask, text)
