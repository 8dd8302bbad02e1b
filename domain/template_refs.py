"""A template reference: which approved template an outbound message sends (ADR 0023).

Twilio names a template by its Content SID, ``HX`` and 32 hexadecimal digits
(https://www.twilio.com/docs/content/content-api-resources); Meta by its name and language. The
outbox holds either in ``content_sid``: the domain accepts both forms, each provider adapter
sends its own and refuses the other's.
"""

from __future__ import annotations

import re

from domain.service_window import CONTENT_SID_PATTERN

META_TEMPLATE_PATTERN = re.compile(
    r"^(?P<name>[a-z0-9_]{1,512}):(?P<language>[a-z]{2,3}(?:_[A-Z]{2,4})?)$"
)
"""A Meta template reference ``<name>:<language>`` (ADR 0023). Meta names a template with
lower-case letters, digits and underscores, at most 512 characters ("Message templates",
https://developers.facebook.com/docs/whatsapp/business-management-api/message-templates; also
"Unique identifier (lowercase, underscores only)",
https://docs.zavu.dev/guides/whatsapp/templates/overview),
and sends it with a language code such as ``fr``, ``en_US``, ``pt_BR`` ("Supported languages",
https://developers.facebook.com/documentation/business-messaging/whatsapp/templates/supported-languages)."""


def is_twilio_content_sid(reference: str) -> bool:
    """``HX`` and 32 hexadecimal digits: a Twilio Content SID."""
    return CONTENT_SID_PATTERN.match(reference) is not None


def meta_template(reference: str) -> tuple[str, str] | None:
    """``(name, language)`` of a Meta template reference ``name:language``, else None."""
    match = META_TEMPLATE_PATTERN.match(reference)
    return (match["name"], match["language"]) if match else None
