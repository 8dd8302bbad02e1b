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
