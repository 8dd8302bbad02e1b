"""Twilio's rate-limit answers through the real provider (``responses``; no network), ADR 0015.

What Twilio documents:
- 20429 "Too many requests": "Requests that receive 429 responses aren't processed and are safe to
  retry after backing off" (https://www.twilio.com/docs/api/errors/20429); "An API Request that
  receives an error 429 response is never processed and is always safe to retry"
  (https://support.twilio.com/hc/en-us/articles/360044308153);
- the 20429 body reads "Too many requests. Please retry according to the Retry-After response
  header." (https://www.twilio.com/docs/bulk-messaging/api/seek-message-resource);
- 63018 "Rate limit exceeded for Channel": the WhatsApp sender's limit; WhatsApp's own 429 maps to
  it (https://www.twilio.com/docs/api/errors/63018,
  https://www.twilio.com/docs/whatsapp/api/error-code-mapping);
- Retry-After is ``<delay-seconds>`` or an ``<http-date>``
  (https://developer.mozilla.org/docs/Web/HTTP/Headers/Retry-After, RFC 9110 §10.2.3).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import responses
from twilio.base.exceptions import TwilioRestException

from adapters.twilio.codes import RATE_LIMIT_CODES, is_rate_limit
from adapters.twilio.provider import MAX_RETRY_AFTER, TwilioMessagingProvider, translate
from domain.outbox import DeliveryFailure
from ports.messaging import DeliveryFailed, SendRequest

SID = "AC" + "0" * 32
URL = f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages.json"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TOO_MANY = {
    "code": 20429,
    "message": "Too many requests. Please retry according to the Retry-After response header.",
    "more_info": "https://www.twilio.com/docs/errors/20429",
    "status": 429,
}


def provider() -> TwilioMessagingProvider:
    return TwilioMessagingProvider(
        account_sid=SID,
        auth_token="secret-token",
        default_sender="+14155238886",
        wall_clock=lambda: NOW,
    )


def failure_of(headers: dict[str, str] | None = None, **answer: object) -> DeliveryFailure:
    responses.post(URL, headers=headers or {}, **answer)  # type: ignore[arg-type]
    request = SendRequest(
        outbox_id="out-1",
        tenant_id="shop-a",
        to_phone="+33698765432",
        body="Your order is confirmed",
        correlation_id="corr-1",
    )
    try:
        provider().send(request)
    except DeliveryFailed as exc:
        return exc.failure
    raise AssertionError("the send was accepted")


class TestRateLimitedAnswers:
    @responses.activate
    def test_a_20429_is_rate_limited_and_keeps_a_retry_after_of_two_minutes(self) -> None:
        failure = failure_of({"Retry-After": "120"}, json=TOO_MANY, status=429)

        assert (True, True, "20429", timedelta(seconds=120)) == (
            failure.transient,
            failure.rate_limited,
            failure.code,
            failure.retry_after,
        )

    @responses.activate
    def test_a_retry_after_as_an_http_date_is_read_against_the_clock(self) -> None:
        failure = failure_of(
            {"Retry-After": "Sun, 01 Mar 2026 12:05:00 GMT"}, json=TOO_MANY, status=429
        )

        assert (True, timedelta(minutes=5)) == (failure.rate_limited, failure.retry_after)

    @responses.activate
    def test_a_429_without_a_twilio_body_is_still_rate_limited(self) -> None:
        failure = failure_of(body="<html>Too Many Requests</html>", status=429)

        assert (True, True, "http-429", None) == (
            failure.transient,
            failure.rate_limited,
            failure.code,
            failure.retry_after,
        )

    @responses.activate
    def test_a_503_with_retry_after_is_transient_but_spends_an_attempt(self) -> None:
        failure = failure_of({"Retry-After": "90"}, body="busy", status=503)

        assert (True, False, timedelta(seconds=90)) == (
            failure.transient,
            failure.rate_limited,
            failure.retry_after,
        )

    @responses.activate
    def test_a_retry_after_past_an_hour_is_bounded_to_an_hour(self) -> None:
        failure = failure_of({"Retry-After": "86400"}, json=TOO_MANY, status=429)

        assert MAX_RETRY_AFTER == failure.retry_after

    @responses.activate
    def test_an_unreadable_or_past_retry_after_is_left_out(self) -> None:
        for value in ("soon", "-5", "Sun, 01 Mar 2026 11:00:00 GMT"):
            responses.reset()
            failure = failure_of({"Retry-After": value}, json=TOO_MANY, status=429)
            assert (True, None) == (failure.rate_limited, failure.retry_after), value


class TestTheRateLimitCodes:
    def test_the_whatsapp_sender_limit_63018_is_a_rate_limit_whatever_the_status(self) -> None:
        failure = translate(
            TwilioRestException(400, URL, "Rate limit exceeded for Channel", code=63018), None, NOW
        )

        assert (True, True, "63018") == (failure.transient, failure.rate_limited, failure.code)

    def test_only_429_and_the_rate_limit_codes_are_rate_limits(self) -> None:
        assert {20429, 63018} == RATE_LIMIT_CODES
        assert [True, True, True, False, False, False] == [
            is_rate_limit(None, 429),
            is_rate_limit(20429, 429),
            is_rate_limit(63018, 400),
            is_rate_limit(20500, 500),
            is_rate_limit(None, 503),
            is_rate_limit(21211, 400),
        ]

    def test_a_permanent_refusal_is_never_rate_limited(self) -> None:
        failure = translate(TwilioRestException(400, URL, "invalid To", code=21211), "30", NOW)

        assert (False, False, None) == (
            failure.transient,
            failure.rate_limited,
            failure.retry_after,
        )
