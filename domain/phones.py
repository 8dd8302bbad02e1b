"""Phone numbers: WhatsApp addresses normalised to E.164 with ``phonenumbers``, and the one
canonical key per number that makes WhatsApp's country variants equal (ADR 0012).

Two readings, on purpose:

- an *international* number (``+`` or an international dialling prefix, a ``whatsapp:`` address,
  a WhatsApp ID) is taken as it stands whenever it is a possible E.164 number: a known country
  calling code and 4 to 15 digits in all. WhatsApp delivered it, so it exists, whatever the
  library's metadata says (``+491511234567``, Mexico's ``+52 1 ...``, Brazil's eight-digit mobiles);
- a *national* number (written without ``+``) needs the metadata to be read at all: it is read in
  the tenant's region and must be valid there, in itself or in its WhatsApp variant.
"""

from __future__ import annotations

import re

import phonenumbers

from domain.errors import InvalidPhoneNumber

WHATSAPP_PREFIX = "whatsapp:"

E164_MAX_DIGITS = 15
"""ITU-T E.164: a number is at most 15 digits, country code included."""
MIN_NATIONAL_DIGITS = 4
"""The shortest national significant numbers in service (Niue, Tokelau) have 4 digits."""
# What a person or a provider writes in a phone number: digits, one leading "+", separators.
_PHONE_TEXT = re.compile(r"\+?[\d\s().\-/]+")
_INTERNATIONAL = (
    phonenumbers.CountryCodeSource.FROM_NUMBER_WITH_PLUS_SIGN,
    phonenumbers.CountryCodeSource.FROM_NUMBER_WITH_IDD,
)
_PARSE_PROBLEMS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    phonenumbers.NumberParseException.NOT_A_NUMBER: "not a phone number",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too few digits for a phone number",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "too few digits for a phone number",
    phonenumbers.NumberParseException.TOO_LONG: f"more than {E164_MAX_DIGITS} digits (E.164)",
}
# Mexico's dialling prefixes abolished on 3 August 2019 (IFT): 044/045 before a mobile, 01 before
# a long-distance number; people still type them. The ten digits after them are the number.
_MX_OLD_PREFIXES = (("044", 13), ("045", 13), ("01", 12))
# phonenumbers' "unknown region": a number written with "+" is read from its own country code.
_NO_REGION = "ZZ"


def strip_whatsapp_prefix(raw: str) -> str:
    """``whatsapp:+33612345678`` -> ``+33612345678``; anything else unchanged but trimmed."""
    value = raw.strip()
    if value.lower().startswith(WHATSAPP_PREFIX):
        value = value[len(WHATSAPP_PREFIX) :].strip()
    return value


def normalise_phone(raw: str, default_region: str) -> str:
    """Return ``raw`` in E.164; numbers without ``+`` are read in ``default_region``.

    An international number is kept whenever it is a possible E.164 number (see the module
    docstring); a national one must be valid in the region, itself or in its WhatsApp variant
    (``phone_key``). Raises InvalidPhoneNumber naming the problem otherwise: not a phone number
    at all (letters, symbols), too few or too many digits, an unknown country code.
    """
    return _normalise(raw, strip_whatsapp_prefix(raw), default_region.upper())


def normalise_sender(raw: str, default_region: str, *, wa_id: str | None = None) -> str:
    """The E.164 number of the sender of an inbound message, as WhatsApp delivered it.

    ``raw`` is Twilio's ``From`` (``whatsapp:+491511234567``); a ``whatsapp:`` address of digits
    without ``+`` is a WhatsApp ID (the international number's digits, Twilio's ``WaId``), unless
    it starts with the national trunk ``0``. When ``raw``
    cannot be read and ``wa_id`` is given, the WhatsApp ID is used. Raises InvalidPhoneNumber
    only for what is not a phone number at all.
    """
    value = strip_whatsapp_prefix(raw)
    if value != raw.strip() and value.isdigit() and not value.startswith("0"):
        value = "+" + value  # no country code starts with 0: a leading 0 is a national trunk
    try:
        return _normalise(raw, value, default_region.upper())
    except InvalidPhoneNumber:
        if wa_id is None or not wa_id.strip().isdigit():
            raise
        return _normalise(wa_id, "+" + wa_id.strip(), default_region.upper())


def normalise_international_sender(raw: str, *, wa_id: str | None = None) -> str | None:
    """``normalise_sender``'s answer, whatever the tenant's region, when the sender's address is
    an international number (``whatsapp:+...``, a WhatsApp ID) that reads as one: such a number
    is taken as it stands, the region plays no part (see the module docstring). None when the
    region may matter (a national number, an international dialling prefix, or an address that
    does not read, whose error then names the region's reading): call ``normalise_sender``."""
    value = strip_whatsapp_prefix(raw)
    if value != raw.strip() and value.isdigit() and not value.startswith("0"):
        value = "+" + value
    if not value.startswith("+"):
        return None
    try:
        return _normalise(raw, value, _NO_REGION)
    except InvalidPhoneNumber:
        return None


def phone_key(e164: str) -> str:
    """The one key per number that makes WhatsApp's country variants equal (ADR 0012).

    - Mexico: ``+52 1 55 1234 5678`` (the mobile "1" WhatsApp IDs still carry) and
      ``+52 55 1234 5678`` (the number since 2019) -> ``+525512345678``;
    - Argentina: ``+54 9 11 2345 6789`` (mobiles from abroad) and ``+54 11 2345 6789`` ->
      ``+541123456789``;
    - Brazil: ``+55 92 8172 3241`` (a mobile whose WhatsApp ID predates the ninth digit) and
      ``+55 92 98172 3241`` -> ``+5592981723241``. Only eight-digit numbers that were mobiles
      (first digit 6-9) gain the 9; landlines (2-5) are left alone.

    Every other number is its own key. Country codes are prefix-free, so the first digits tell
    the country.
    """
    digits = e164.removeprefix("+")
    if digits.startswith("52") and len(digits) == 13 and digits[2] == "1":
        return "+52" + digits[3:]
    if digits.startswith("54") and len(digits) == 13 and digits[2] == "9":
        return "+54" + digits[3:]
    if digits.startswith("55") and len(digits) == 12 and digits[4] in "6789":
        return "+55" + digits[2:4] + "9" + digits[4:]
    return e164


def phone_forms(e164: str) -> frozenset[str]:
    """Every E.164 form of the number that has its ``phone_key``: the number, its key and the
    key's other WhatsApp variant (``+52 1 ...``, ``+54 9 ...``, Brazil's mobile without its
    ninth digit). A lookup by any form of a number searches these."""
    key = phone_key(e164)
    digits = key.removeprefix("+")
    forms = {e164, key}
    if digits.startswith("52") and len(digits) == 12:
        forms.add("+521" + digits[2:])
    elif digits.startswith("54") and len(digits) == 12:
        forms.add("+549" + digits[2:])
    elif digits.startswith("55") and len(digits) == 13 and digits[4] == "9" and digits[5] in "6789":
        forms.add("+55" + digits[2:4] + digits[5:])
    return frozenset(form for form in forms if phone_key(form) == key)


def _normalise(raw: str, value: str, region: str) -> str:
    if not value:
        raise InvalidPhoneNumber(raw, "empty")
    if not _PHONE_TEXT.fullmatch(value):
        raise InvalidPhoneNumber(raw, "not a phone number (digits, spaces and + - . ( ) / only)")
    if region == "MX":
        value = _without_old_mexican_prefix(value)
    try:
        parsed = phonenumbers.parse(value, region, keep_raw_input=True)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(raw, _PARSE_PROBLEMS.get(exc.error_type, str(exc))) from exc
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if parsed.country_code_source in _INTERNATIONAL:
        code = parsed.country_code or 0
        if phonenumbers.region_code_for_country_code(code) == "ZZ":
            raise InvalidPhoneNumber(raw, f"unknown country code +{code}")
        national = phonenumbers.national_significant_number(parsed)
        if len(national) < MIN_NATIONAL_DIGITS:
            raise InvalidPhoneNumber(raw, "too few digits for a phone number")
        if len(e164) - 1 > E164_MAX_DIGITS:
            raise InvalidPhoneNumber(raw, f"more than {E164_MAX_DIGITS} digits (E.164)")
        return e164
    if phonenumbers.is_valid_number(parsed) or _is_valid_e164(phone_key(e164)):
        return e164
    raise InvalidPhoneNumber(raw, f"not a valid number in region {region}")


def _is_valid_e164(e164: str) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(e164, None))
    except phonenumbers.NumberParseException:
        return False


def _without_old_mexican_prefix(value: str) -> str:
    digits = "".join(c for c in value if c.isdigit())
    if value.startswith("+"):
        return value
    for prefix, length in _MX_OLD_PREFIXES:
        if digits.startswith(prefix) and len(digits) == length:
            return digits[len(prefix) :]
    return value


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


_MARKER = re.compile(r"\+|%2b|whatsapp|phone", re.IGNORECASE)
"""What ``_MARKED_PHONE`` or ``_NAMED_PHONE`` needs in a text before it can match."""


def mask_phones_in(text: str) -> str:
    """Mask every phone standing as a phone in free text (log messages, errors) to its last
    four digits; every other run of digits is left as it is."""
    if _MARKER.search(text) is None:
        return text  # no marker either pattern needs (most log values: ids, names)

    def mask(match: re.Match[str]) -> str:
        if match.groupdict().get("plus") is not None:
            return mask_phone(match.group("plus") + match.group("number"))
        phone = match.group("phone")
        start = match.start("phone") - match.start()
        whole = match.group(0)
        return whole[:start] + mask_phone(phone) + whole[start + len(phone) :]

    return _NAMED_PHONE.sub(mask, _MARKED_PHONE.sub(mask, text))
