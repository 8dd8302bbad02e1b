"""Twilio's error codes as data: which are worth a retry and which mean the message is dead.

SPEC §3 lists the permanent codes; the transient ones are Twilio's own rate-limit and server
codes. A code missing from ``TWILIO_CODES`` is classified by its HTTP status (``classify_status``):
429 and 5xx are transient, any other 4xx is permanent (Twilio refused this request as written,
and sending the same request again gets the same answer), an unknown status is transient.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType


class Kind(enum.Enum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"


CONTENT_CODES: Mapping[int, tuple[Kind, str, str]] = MappingProxyType(
    {
        # What was sent is not a message Twilio can build: the same request fails again.
        21602: (
            Kind.PERMANENT,
            "a Body or a MediaUrl is required",
            "https://www.twilio.com/docs/api/errors/21602",
        ),
        21619: (
            Kind.PERMANENT,
            "a Body, a MediaUrl or a ContentSid is required",
            "https://www.twilio.com/docs/api/errors/21619",
        ),
        21654: (
            Kind.PERMANENT,
            "ContentVariables were given without a ContentSid",
            "https://www.twilio.com/docs/api/errors/21654",
        ),
        50526: (
            Kind.PERMANENT,
            "invalid Content SID (not HX followed by 32 hex digits)",
            "https://www.twilio.com/docs/api/errors/50526",
        ),
        21624: (
            Kind.PERMANENT,
            "invalid ValidityPeriod (whole seconds, 1 to 36,000)",
            "https://www.twilio.com/docs/api/errors/21624",
        ),
        # the template itself
        63027: (
            Kind.PERMANENT,
            "the template does not exist for this language and locale",
            "https://www.twilio.com/docs/api/errors/63027",
        ),
        63028: (
            Kind.PERMANENT,
            "the ContentVariables do not match the template's placeholders",
            "https://www.twilio.com/docs/api/errors/63028",
        ),
        # content the channel refuses
        63005: (
            Kind.PERMANENT,
            "WhatsApp did not accept the content (invalid media, session-only fields)",
            "https://www.twilio.com/docs/api/errors/63005",
        ),
        63021: (
            Kind.PERMANENT,
            "content unsupported by WhatsApp (media type, template text over 1024 characters)",
            "https://www.twilio.com/docs/api/errors/63021",
        ),
        # media
        21620: (
            Kind.PERMANENT,
            "invalid media URL (no http:// or https://)",
            "https://www.twilio.com/docs/api/errors/21620",
        ),
        12300: (
            Kind.PERMANENT,
            "the media URL's Content-Type is not one Twilio accepts",
            "https://www.twilio.com/docs/api/errors/12300",
        ),
        11751: (
            Kind.PERMANENT,
            "the media exceeds the channel's size limit (WhatsApp: 16 MB)",
            "https://www.twilio.com/docs/api/errors/11751",
        ),
        63034: (
            Kind.PERMANENT,
            "the media exceeds the size limit (5 MB for an image)",
            "https://www.twilio.com/docs/api/errors/63034",
        ),
        # Fetching the media failed: the host may be back on the next attempt, which the retry
        # schedule bounds (five attempts), so these are worth a retry.
        11200: (
            Kind.TRANSIENT,
            "HTTP retrieval failure: Twilio could not fetch the media URL",
            "https://www.twilio.com/docs/api/errors/11200",
        ),
        63019: (
            Kind.TRANSIENT,
            "media failed to download (the attempt returned 0 bytes)",
            "https://www.twilio.com/docs/api/errors/63019",
        ),
    }
)
"""Twilio's template and media codes -> (kind, what it means, its page in Twilio's Error and
Warning Dictionary). Some come back on the API call (``21602``, ``21619``, ``21620``, ``21654``),
others in delivery reports; every one is classified wherever it arrives."""

TWILIO_CODES: Mapping[int, tuple[Kind, str]] = MappingProxyType(
    {
        # invalid number
        21211: (Kind.PERMANENT, "invalid 'To' phone number"),
        21614: (Kind.PERMANENT, "'To' number is not a valid mobile number"),
        63003: (Kind.PERMANENT, "channel could not find the 'To' address"),
        # opted out or blocked
        21610: (Kind.PERMANENT, "the recipient has opted out (STOP)"),
        63014: (Kind.PERMANENT, "blocked by the recipient or the channel"),
        # outside the 24-hour customer-service window
        63016: (Kind.PERMANENT, "outside the 24-hour window: a template is needed"),
        # account configuration
        20003: (Kind.PERMANENT, "authentication failed (account SID or auth token)"),
        21408: (Kind.PERMANENT, "sending to this region is not enabled on the account"),
        21608: (Kind.PERMANENT, "trial account: the 'To' number is not verified"),
        63007: (Kind.PERMANENT, "no WhatsApp sender is configured for the 'From' address"),
        # rate limits and Twilio-side errors
        20429: (Kind.TRANSIENT, "too many requests"),
        63018: (Kind.TRANSIENT, "rate limit exceeded for the WhatsApp sender"),
        20500: (Kind.TRANSIENT, "Twilio internal server error"),
        20503: (Kind.TRANSIENT, "Twilio service unavailable"),
        # templates (Content API) and media: CONTENT_CODES below, with their pages
        **{code: (kind, meaning) for code, (kind, meaning, _) in CONTENT_CODES.items()},
    }
)
"""Twilio error code -> (kind, what it means). Codes listed in SPEC §3 must all be here."""

SPEC_PERMANENT_CODES = frozenset(
    {21211, 21614, 63003, 21610, 63014, 63016, 20003, 21408, 21608, 63007}
)
SPEC_TRANSIENT_CODES = frozenset({20429})
RATE_LIMIT_CODES = frozenset({20429, 63018})
"""Codes that mean "over capacity, not processed": 20429 (REST API concurrency; "Requests that
receive 429 responses aren't processed and are safe to retry", twilio.com/docs/api/errors/20429)
and 63018 (the WhatsApp sender's rate limit; WhatsApp's own 429 maps to it,
twilio.com/docs/whatsapp/api/error-code-mapping). They reschedule without spending an attempt
(ADR 0015)."""
RATE_LIMIT_STATUS = 429


def is_rate_limit(code: int | None, status: int | None) -> bool:
    """True for an answer that refused the request for capacity: HTTP 429 or a rate-limit code."""
    return status == RATE_LIMIT_STATUS or (code is not None and code in RATE_LIMIT_CODES)


def classify_status(status: int | None) -> Kind:
    """The kind of a failure Twilio gave no known code for, from its HTTP status."""
    if status is None or status == 429 or status >= 500 or status == 408:
        return Kind.TRANSIENT
    if 400 <= status < 500:
        return Kind.PERMANENT
    return Kind.TRANSIENT


def classify(code: int | None, status: int | None) -> tuple[Kind, str | None]:
    """(kind, meaning): the code table first, then the HTTP status."""
    if code is not None and code in TWILIO_CODES:
        kind, meaning = TWILIO_CODES[code]
        return kind, meaning
    return classify_status(status), None
