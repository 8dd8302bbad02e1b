"""Meta's error codes as data, and the one place a failed Graph API call becomes the port's failure.

Sources (cited per code in ``META_CODES``):

- the Cloud API error codes, "Cloud API Error Codes"
  (https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes;
  the ``href`` Meta itself puts in every error it reports, see the errors webhook reference
  https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/errors):
  authorization (0, 3, 10, 190, 200-299), throttling (4, 80007, 130429, 131048, 131056),
  integrity (368, 130497, 131031), and the general and sending errors (1, 2, 33, 100, 131000 ...
  135000); the same list, class by class, is in pywa's ``pywa/errors.py`` (4.4.0);
- the Graph API error object (``error.message``, ``type``, ``code``, ``error_subcode``,
  ``error_data.details``, ``fbtrace_id``): "Handling Errors",
  https://developers.facebook.com/docs/graph-api/guides/error-handling, and the sample response
  on the error codes page (``{"error": {"message": "(#130429) Rate limit hit", "type":
  "OAuthException", "code": 130429, "error_data": {"messaging_product": "whatsapp", "details":
  ...}, "error_subcode": 2494055, "fbtrace_id": ...}}``); ``is_transient``, the Graph API's own
  hint, as restfb reads it:
  https://javadoc.io/static/com.restfb/restfb/3.22.0/com/restfb/exception/FacebookGraphException.html;
- throughput, "Throughput" (https://developers.facebook.com/docs/whatsapp/throughput): 130429
  past the number's messages per second; 131057 while the number is upgraded ("can take up to 1
  minute"); "too many messages to the same WhatsApp user" is the pair rate limit 131056, about one
  message every 6 seconds to one user after a burst ("Wait and retry the operation, if you intend
  to send messages to the same phone number", on the error codes page).

Three kinds: ``TRANSIENT`` (try again later), ``PERMANENT`` (this message as written will never
be taken) and ``CONFIGURATION`` (the token, the app's permissions or the business account must be
fixed by an operator). The port knows transient and permanent only: a configuration error is not
transient, as Twilio's 20003 is not (the same request gets the same refusal until someone acts),
and its message starts with "configuration error" so an operator reading the dead letters sees
which it was. A code missing from the table is classified by the Graph API's ``is_transient``
when Meta sent it, else by its HTTP status (``classify_status``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import Any

import attrs
import httpx

from domain.outbox import DeliveryFailure


class Kind(enum.Enum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    CONFIGURATION = "configuration"


ERROR_CODES_PAGE = (
    "https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes"
)
THROUGHPUT_PAGE = "https://developers.facebook.com/docs/whatsapp/throughput"
PAIR_RATE_LIMIT_WAIT = timedelta(seconds=6)
"""Meta: a business number may send about one message every 6 seconds to one WhatsApp user
(error 131056 past that, after a burst); the wait suggested when no Retry-After came."""
THROUGHPUT_UPGRADE_WAIT = timedelta(minutes=1)
"""Meta: a number's throughput upgrade "can take up to 1 minute" (error 131057 meanwhile)."""
MAX_RETRY_AFTER = timedelta(hours=1)


@attrs.frozen
class MetaCode:
    """What one Meta error code means, how to treat it, and where Meta documents it.

    ``rate_limited``: Meta refused for capacity and did not process the request (a transient
    failure that spends no attempt, ADR 0015). ``retry_after``: the wait to suggest when the
    answer carried no ``Retry-After``."""

    kind: Kind
    meaning: str
    doc: str = ERROR_CODES_PAGE
    rate_limited: bool = False
    retry_after: timedelta | None = None

    def __attrs_post_init__(self) -> None:
        if self.rate_limited and self.kind is not Kind.TRANSIENT:
            raise ValueError("a rate-limited code is transient")


T, P, C = Kind.TRANSIENT, Kind.PERMANENT, Kind.CONFIGURATION

META_CODES: Mapping[int, MetaCode] = MappingProxyType(
    {
        # Authorization: the token or the app's permissions (an operator must act).
        0: MetaCode(C, "authentication failed: the access token expired or was invalidated"),
        3: MetaCode(C, "capability or permissions issue of the app"),
        10: MetaCode(C, "permission denied: not granted or removed"),
        190: MetaCode(C, "the access token has expired"),
        # Throttling: over capacity, not processed.
        4: MetaCode(T, "the app reached its API call rate limit", rate_limited=True),
        80007: MetaCode(
            T, "the WhatsApp Business Account reached its rate limit", rate_limited=True
        ),
        130429: MetaCode(
            T,
            "rate limit hit: the Cloud API's throughput for this number was reached",
            doc=THROUGHPUT_PAGE,
            rate_limited=True,
        ),
        131056: MetaCode(
            T,
            "pair rate limit hit: too many messages to this recipient in a short time",
            doc=THROUGHPUT_PAGE,
            rate_limited=True,
            retry_after=PAIR_RATE_LIMIT_WAIT,
        ),
        131048: MetaCode(
            T, "spam rate limit hit: sending is restricted by the number's quality rating"
        ),
        # Integrity: the business account is restricted.
        368: MetaCode(C, "temporarily blocked for policy violations"),
        131031: MetaCode(C, "the business account is locked (policy violation or PIN mismatch)"),
        130497: MetaCode(P, "the business account may not message users in this country"),
        # Meta's side: worth a retry.
        1: MetaCode(T, "API unknown: invalid request or possible server error"),
        2: MetaCode(T, "API service: temporary downtime or overload"),
        131000: MetaCode(T, "something went wrong: an unknown error on Meta's side"),
        131016: MetaCode(T, "service unavailable: a service is temporarily unavailable"),
        131057: MetaCode(
            T,
            "the business account is in maintenance mode (a throughput upgrade)",
            doc=THROUGHPUT_PAGE,
            retry_after=THROUGHPUT_UPGRADE_WAIT,
        ),
        # This message to this recipient will never be taken.
        100: MetaCode(P, "invalid parameter: the request has an unsupported or invalid parameter"),
        131008: MetaCode(P, "a required parameter is missing"),
        131009: MetaCode(P, "a parameter value is invalid"),
        131021: MetaCode(P, "the recipient cannot be the sender"),
        131026: MetaCode(
            P, "message undeliverable: not a WhatsApp user, or too old a client, or blocked"
        ),
        131047: MetaCode(
            P, "re-engagement message: outside the 24-hour window, a template is needed"
        ),
        131049: MetaCode(
            P, "not delivered to keep ecosystem engagement healthy (do not retry at once)"
        ),
        131050: MetaCode(P, "the user stopped marketing messages from this business"),
        131051: MetaCode(P, "unsupported message type"),
        131053: MetaCode(P, "media upload error: the media could not be fetched or is unsupported"),
        130472: MetaCode(P, "the user's number is part of an experiment"),
        135000: MetaCode(P, "generic user error"),
        # Templates (issue 15): a message's variables, or the tenant's template itself.
        132000: MetaCode(
            P, "template parameter count mismatch: the variables do not match the template"
        ),
        132001: MetaCode(C, "template does not exist in this language, or is not approved"),
        132005: MetaCode(P, "the translated template text is too long"),
        132007: MetaCode(P, "template format character policy violated"),
        132012: MetaCode(P, "template parameter format mismatch"),
        132015: MetaCode(C, "the template is paused for low quality"),
        132016: MetaCode(C, "the template is disabled for low quality"),
        # The business number or account setup.
        33: MetaCode(C, "the business phone number has been deleted"),
        131005: MetaCode(C, "access denied: the app lacks the permission"),
        131030: MetaCode(C, "the recipient is not in the allowed list of this test number"),
        131037: MetaCode(C, "the number's display name is not approved"),
        131042: MetaCode(C, "business eligibility: a payment method issue"),
        131045: MetaCode(C, "incorrect certificate: the number is not registered correctly"),
        133010: MetaCode(C, "the business phone number is not registered on the Cloud API"),
    }
)
"""Meta error code -> what it means and how to treat it. Every code here is tested."""

PERMISSION_CODES = range(200, 300)
PERMISSION = MetaCode(C, "API permission: permission not granted or removed (200-299)")
"""Meta lists "200-299 API Permission" as one entry."""

REQUIRED_CODES = frozenset(
    {130429, 131056, 131047, 131026, 190, 10, 200, 100, 131000, 1, 2, 131016, 368, 131031}
    | {132000, 132001}
)
"""The codes issue 17 names: each must be in the table, as the tests check."""

RATE_LIMIT_STATUS = 429


def lookup(code: int | None) -> MetaCode | None:
    """The table's entry for ``code``, or None."""
    if code is None:
        return None
    if code in META_CODES:
        return META_CODES[code]
    if code in PERMISSION_CODES:
        return PERMISSION
    return None


def classify_status(status: int | None, is_transient: bool | None = None) -> Kind:
    """The kind of a failure whose code the table does not list: Meta's own ``is_transient`` when
    it sent one, else the HTTP status (401 and 403 are configuration errors, 408, 429 and 5xx
    transient, any other 4xx permanent, anything else transient)."""
    if is_transient is not None:
        return Kind.TRANSIENT if is_transient else Kind.PERMANENT
    if status is None or status in (408, RATE_LIMIT_STATUS) or status >= 500:
        return Kind.TRANSIENT
    if status in (401, 403):
        return Kind.CONFIGURATION
    if 400 <= status < 500:
        return Kind.PERMANENT
    return Kind.TRANSIENT


def classify(
    code: int | None, status: int | None, is_transient: bool | None = None
) -> tuple[Kind, MetaCode | None]:
    """(kind, the table's entry): a listed code wins over the status and over ``is_transient``."""
    entry = lookup(code)
    if entry is not None:
        return entry.kind, entry
    return classify_status(status, is_transient), None


@attrs.frozen(kw_only=True)
class GraphError:
    """The Graph API's error object of a refused request, as far as it could be read."""

    status: int
    code: int | None = None
    message: str = ""
    details: str | None = None
    subcode: int | None = None
    is_transient: bool | None = None
    fbtrace_id: str | None = None

    @classmethod
    def from_response(cls, response: httpx.Response) -> GraphError:
        """Read ``{"error": {...}}``; a body that is not one (a proxy's HTML page) gives the
        status and its reason only."""
        status = response.status_code
        try:
            payload: Any = response.json()
        except ValueError:
            payload = None
        error = payload.get("error") if isinstance(payload, dict) else None
        if not isinstance(error, dict):
            return cls(status=status, message=response.reason_phrase or "")
        data = error.get("error_data")
        details = data.get("details") if isinstance(data, dict) else data
        transient = error.get("is_transient")
        return cls(
            status=status,
            code=_int_or_none(error.get("code")),
            message=str(error.get("message") or ""),
            details=str(details) if details else None,
            subcode=_int_or_none(error.get("error_subcode")),
            is_transient=transient if isinstance(transient, bool) else None,
            fbtrace_id=str(error["fbtrace_id"]) if error.get("fbtrace_id") else None,
        )


def failure_of(error: GraphError, retry_after_header: str | None = None) -> DeliveryFailure:
    """The port's failure for a Graph API error: its kind by the table, its code kept, a
    ``Retry-After`` (seconds) honoured up to an hour for transient failures, or the code's
    suggested wait."""
    kind, entry = classify(error.code, error.status, error.is_transient)
    transient = kind is Kind.TRANSIENT
    rate_limited = transient and (
        error.status == RATE_LIMIT_STATUS or (entry is not None and entry.rate_limited)
    )
    text = f"Meta Graph HTTP {error.status}"
    if error.code is not None:
        text += f" (#{error.code})"
    message = error.message
    if error.code is not None:
        message = message.removeprefix(f"(#{error.code})").strip()  # Meta's "(#130429) Rate ..."
    if message:
        text += f": {message}"
    if error.details and error.details != message:
        text += f"; {error.details}"
    if entry is not None:
        text += f" ({entry.meaning})"
    if error.fbtrace_id:
        text += f" [fbtrace_id {error.fbtrace_id}]"
    if kind is Kind.CONFIGURATION:
        text = "configuration error: " + text
    retry_after = None
    if transient:
        retry_after = _seconds(retry_after_header) or (entry.retry_after if entry else None)
    return DeliveryFailure(
        transient=transient,
        code=str(error.code) if error.code is not None else f"http-{error.status}",
        message=text,
        retry_after=retry_after,
        rate_limited=rate_limited,
    )


def translate(failure: BaseException | httpx.Response) -> DeliveryFailure:
    """The one place where a refused Graph API answer or an ``httpx`` error becomes the port's
    ``DeliveryFailure`` (the provider raises it as ``DeliveryFailed``).

    A response: by its error code (``failure_of``). ``httpx.HTTPStatusError``: by its response.
    Timeouts, connection and other transport errors: transient (a read timeout may hide an
    accepted message, which the retry then sends again: at-least-once, ADR 0006). Anything else,
    unexpected: transient, so a bad deployment dead-letters only after the retry schedule."""
    if isinstance(failure, httpx.Response):
        return failure_of(GraphError.from_response(failure), failure.headers.get("Retry-After"))
    if isinstance(failure, httpx.HTTPStatusError):
        return translate(failure.response)
    if isinstance(failure, httpx.TimeoutException):
        return DeliveryFailure(transient=True, code="timeout", message=f"timeout: {failure}")
    if isinstance(failure, httpx.NetworkError):
        return DeliveryFailure(
            transient=True, code="connection-error", message=f"connection error: {failure}"
        )
    if isinstance(
        failure, httpx.HTTPError | httpx.InvalidURL | httpx.StreamError | httpx.CookieConflict
    ):
        return DeliveryFailure(
            transient=True,
            code="http-error",
            message=f"HTTP error {type(failure).__name__}: {failure}",
        )
    return DeliveryFailure(
        transient=True,
        code="unexpected",
        message=f"unexpected {type(failure).__name__}: {failure}",
    )


TRANSLATED_TYPES: tuple[type[BaseException], ...] = (
    httpx.HTTPStatusError,
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.HTTPError,
    httpx.InvalidURL,
    httpx.StreamError,
    httpx.CookieConflict,
)
"""The ``httpx`` exception types ``translate`` maps on purpose (every other one is
"unexpected")."""


def _seconds(value: str | None) -> timedelta | None:
    """A ``Retry-After`` of delay-seconds (RFC 9110 §10.2.3), at most ``MAX_RETRY_AFTER``; None
    when absent, zero or not a number of seconds. The Graph API documents no Retry-After; a proxy
    or a local fake may send one."""
    if value is None or not value.strip().isdigit():
        return None
    delay = timedelta(seconds=int(value.strip()))
    return min(delay, MAX_RETRY_AFTER) if delay > timedelta(0) else None


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None
