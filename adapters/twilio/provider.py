"""The Twilio WhatsApp provider: the official SDK behind the ``MessagingProvider`` port.

Every failure leaves ``send`` as ``DeliveryFailed`` with a ``DeliveryFailure`` made in one place,
``translate``: Twilio's REST errors by code (``codes.TWILIO_CODES``) then HTTP status, other SDK
errors, and ``requests`` transport errors (connection errors and timeouts are transient). A 429 or
503's ``Retry-After`` header (seconds or an HTTP date) is kept as ``retry_after``; a 429 or a
rate-limit code (``codes.RATE_LIMIT_CODES``) is marked ``rate_limited``: it spends no attempt
(ADR 0015).

The SDK waits forever for an answer by default; the HTTP client here has a timeout. Its
connection pool is as large as the number of threads that send at once, and it never retries on
its own (a silent retry of a POST could send twice; the outbox retries instead).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

import requests
from requests.adapters import HTTPAdapter
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from adapters.twilio.codes import Kind, classify, is_rate_limit
from domain.outbox import DeliveryFailure
from domain.phones import WHATSAPP_PREFIX, strip_whatsapp_prefix
from domain.template_refs import is_twilio_content_sid
from ports.messaging import STATUS_CALLBACK_PATH, DeliveryFailed, SendReceipt, SendRequest

MAX_RETRY_AFTER = timedelta(hours=1)
MESSAGING_SERVICE_PREFIX = "MG"
"""A sender that is a Messaging Service SID (``MG...``) goes as ``MessagingServiceSid``, Twilio
picking the number from its sender pool (the SDK's ``messaging_service_sid``)."""
VALIDITY_PERIOD_RANGE = (1, 36_000)
"""``ValidityPeriod``: "Accepted values are integers from 1 to 36000" seconds (the Message
resource; https://www.twilio.com/docs/api/errors/21624)."""


class _TimedHttpClient(TwilioHttpClient):  # type: ignore[misc]  # the SDK is untyped
    """The SDK's client with a timeout, a pool sized for our threads, no retries of its own, and
    the last response kept per thread (the SDK's exceptions drop the headers: Retry-After)."""

    def __init__(self, *, timeout: float, pool_size: int) -> None:
        super().__init__(pool_connections=True, timeout=timeout)
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        assert self.session is not None
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self._local = threading.local()

    def request(self, *args: Any, **kwargs: Any) -> Response:
        self._local.response = None
        response = super().request(*args, **kwargs)
        self._local.response = response
        return response

    def last_response(self) -> Response | None:
        return getattr(self._local, "response", None)


class TwilioMessagingProvider:
    """Sends WhatsApp messages through Twilio's Messages API. Thread-safe."""

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        default_sender: str,
        timeout_seconds: float = 10.0,
        status_callback_base_url: str | None = None,
        pool_size: int = 16,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if timeout_seconds <= 0:
            raise ValueError(f"timeout must be positive, got {timeout_seconds}")
        self.default_sender = strip_whatsapp_prefix(default_sender)
        self._http = _TimedHttpClient(timeout=timeout_seconds, pool_size=max(pool_size, 1))
        self._client = Client(account_sid, auth_token, http_client=self._http)
        self._messages = self._client.api.v2010.account.messages
        self._callback_base = (
            status_callback_base_url.rstrip("/") if status_callback_base_url else None
        )
        self._wall_clock = wall_clock

    def sender_key(self, request: SendRequest) -> str:
        return (
            strip_whatsapp_prefix(request.from_phone) if request.from_phone else self.default_sender
        )

    def status_callback(self, request: SendRequest) -> str | None:
        """Where Twilio reports delivery status for this message, or None when not configured."""
        if self._callback_base is None:
            return None
        # Both ids are covered by Twilio's signature of the callback (ADR 0008).
        query = urlencode({"tenantId": request.tenant_id, "outboxId": request.outbox_id})
        return f"{self._callback_base}{STATUS_CALLBACK_PATH}?{query}"

    def send(self, request: SendRequest) -> SendReceipt:
        if request.content_sid is not None and not is_twilio_content_sid(request.content_sid):
            # A Meta template (name:language) cannot go through Twilio (ADR 0023).
            raise DeliveryFailed(
                DeliveryFailure(
                    transient=False,
                    code="twilio-template",
                    message=f"configuration error: the template {request.content_sid!r} is not "
                    "a Twilio Content SID (HX...); a Meta template cannot be sent through Twilio",
                )
            )
        fields = self.create_fields(request)
        callback = self.status_callback(request)
        if callback is not None:
            fields["status_callback"] = callback
        try:
            sid = self._messages.create(**fields).sid
        except Exception as exc:
            raise DeliveryFailed(self.translate(exc)) from exc
        if not sid:
            # Accepted without an id: retrying could send twice, but recording "sent" without a
            # sid would hide the anomaly. Transient, so the schedule decides (ADR 0006).
            raise DeliveryFailed(
                DeliveryFailure(
                    transient=True,
                    code="no-sid",
                    message="Twilio answered 2xx without a message sid",
                )
            )
        return SendReceipt(str(sid))

    def create_fields(self, request: SendRequest) -> dict[str, Any]:
        """The SDK's ``messages.create`` arguments for this request (without the callback).

        A template goes as ``content_sid`` and ``content_variables`` (a JSON string) and nothing
        else: "Body and MediaUrl should be excluded ... superseded by the ContentSid"
        (https://www.twilio.com/docs/content-api/send-templates-created-with-content-api). Media
        goes as ``media_url`` (a list, one ``MediaUrl`` each), beside the body if there is one.
        Through a Messaging Service, an expiring message carries ``validity_period``."""
        sender = self.sender_key(request)
        fields: dict[str, Any] = {"to": WHATSAPP_PREFIX + strip_whatsapp_prefix(request.to_phone)}
        if sender.startswith(MESSAGING_SERVICE_PREFIX):
            fields["messaging_service_sid"] = sender
            if request.validity_period is not None:
                low, high = VALIDITY_PERIOD_RANGE
                fields["validity_period"] = min(max(request.validity_period, low), high)
        else:
            fields["from_"] = WHATSAPP_PREFIX + sender
        if request.content_sid is not None:
            fields["content_sid"] = request.content_sid
            if request.content_variables is not None:
                fields["content_variables"] = json.dumps(
                    request.content_variables, ensure_ascii=False, separators=(",", ":")
                )
            return fields
        if request.body:
            fields["body"] = request.body
        if request.media_urls:
            fields["media_url"] = list(request.media_urls)
        return fields

    def translate(self, exc: BaseException) -> DeliveryFailure:
        """The one place where SDK and transport errors become the port's failure."""
        return translate(exc, self._retry_after(), self._wall_clock())

    def _retry_after(self) -> str | None:
        response = self._http.last_response()
        if response is None or response.headers is None:
            return None
        value = response.headers.get("Retry-After")
        return str(value) if value is not None else None


def translate(
    exc: BaseException, retry_after_header: str | None = None, now: datetime | None = None
) -> DeliveryFailure:
    """Map any exception raised while sending to a transient or permanent ``DeliveryFailure``.

    Unknown 4xx without a listed code: permanent (the same request gets the same refusal). Other
    SDK errors (no HTTP status): transient. ``requests`` connection errors and timeouts:
    transient; a read timeout may hide an accepted message, which the retry then sends again
    (at-least-once, ADR 0006). Any other ``requests`` error and anything unexpected: transient,
    so a bad deployment dead-letters only after the retry schedule.
    """
    if isinstance(exc, TwilioRestException | TwilioServiceException):
        status = _int_or_none(exc.status)
        raw_code = _int_or_none(exc.code)
        code = raw_code if raw_code is not None and raw_code >= 10000 else None
        kind, meaning = classify(code, status)
        detail = exc.msg if isinstance(exc, TwilioRestException) else exc.title
        text = f"Twilio HTTP {status}: {detail}" + (f" ({meaning})" if meaning else "")
        transient = kind is Kind.TRANSIENT
        return DeliveryFailure(
            transient=transient,
            code=str(code) if code is not None else f"http-{status}",
            message=text,
            retry_after=_parse_retry_after(retry_after_header, now) if transient else None,
            rate_limited=transient and is_rate_limit(code, status),
        )
    if isinstance(exc, TwilioException):
        return DeliveryFailure(transient=True, code="twilio-error", message=f"Twilio SDK: {exc}")
    if isinstance(exc, requests.Timeout):
        return DeliveryFailure(transient=True, code="timeout", message=f"timeout: {exc}")
    if isinstance(exc, requests.ConnectionError):
        return DeliveryFailure(
            transient=True, code="connection-error", message=f"connection error: {exc}"
        )
    if isinstance(exc, requests.RequestException):
        return DeliveryFailure(
            transient=True,
            code="http-error",
            message=f"HTTP transport error {type(exc).__name__}: {exc}",
        )
    return DeliveryFailure(
        transient=True, code="unexpected", message=f"unexpected {type(exc).__name__}: {exc}"
    )


TRANSLATED_TYPES: tuple[type[BaseException], ...] = (
    TwilioRestException,
    TwilioServiceException,
    TwilioException,
    requests.Timeout,
    requests.ConnectionError,
    requests.RequestException,
)
"""The exception types ``translate`` maps on purpose (every other one is "unexpected")."""


def _parse_retry_after(value: str | None, now: datetime | None) -> timedelta | None:
    """Retry-After in seconds or as an HTTP date (RFC 9110 §10.2.3: ``delay-seconds`` or
    ``HTTP-date``), at most ``MAX_RETRY_AFTER``; None when absent, past or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    delay: timedelta | None
    if value.isdigit():
        delay = timedelta(seconds=int(value))
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delay = when - (now or datetime.now(UTC))
    if delay <= timedelta(0):
        return None
    return min(delay, MAX_RETRY_AFTER)


def _int_or_none(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return None
