"""Phone numbers: WhatsApp addresses normalised to E.164 with ``phonenumbers``."""

from __future__ import annotations

import re

import phonenumbers

from domain.errors import InvalidPhoneNumber

WHATSAPP_PREFIX = "whatsapp:"


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


# Where a phone stands as a phone in free text (ADR 0011): after ``whatsapp:`` (plain or
# URL-encoded), after a ``+`` (plain or ``%2B``) that is not glued to a word or a number, and
# quoted or not right after the word "phone" (``invalid phone number '06 12 34 56 78'``). A phone
# is 7 to 15 digits with single separators (``+1 (415) 555-2671``). Nothing else is touched:
# uuids, ULIDs, Twilio SIDs, amounts, times and dates hold no such marker.
_DIGITS = r"\d(?:[ ().-]{0,2}\d){6,14}(?!\d)"
_MARKED_PHONE = re.compile(
    r"(?P<mark>(?i:whatsapp(?::|%3A)\s*))(?P<phone>(?:\+|(?i:%2B))?" + _DIGITS + r")"
    r"|(?P<plus>(?<![\w+%])\+|(?<![\w+])(?i:%2B))(?P<number>" + _DIGITS + r")"
)
_NAMED_PHONE = re.compile(
    r"(?P<mark>(?i:\bphone(?:[ _-]?number)?)[\s:=]*(?P<quote>['\"]?))"
    r"(?P<phone>\+?\(?" + _DIGITS + r")(?P=quote)"
)


def mask_phones_in(text: str) -> str:
    """Mask every phone standing as a phone in free text (log messages, errors) to its last
    four digits; every other run of digits is left as it is."""

    def mask(match: re.Match[str]) -> str:
        if match.groupdict().get("plus") is not None:
            return mask_phone(match.group("plus") + match.group("number"))
        phone = match.group("phone")
        start = match.start("phone") - match.start()
        whole = match.group(0)
        return whole[:start] + mask_phone(phone) + whole[start + len(phone) :]

    return _NAMED_PHONE.sub(mask, _MARKED_PHONE.sub(mask, text))
