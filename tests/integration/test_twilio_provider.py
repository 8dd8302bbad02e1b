"""The Twilio provider against Twilio's HTTP API shape (``responses``; no network)."""

from __future__ import annotations

import base64
import inspect
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import pytest
import requests
import responses
import twilio.base.exceptions
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException

from adapters.twilio.codes import (
    SPEC_PERMANENT_CODES,
    SPEC_TRANSIENT_CODES,
    TWILIO_CODES,
    Kind,
    classify,
    classify_status,
)
from adapters.twilio.provider import TRANSLATED_TYPES, TwilioMessagingProvider, translate
from domain.outbox import DeliveryFailure
from ports.messaging import DeliveryFailed, SendRequest

SID = "AC" + "0" * 32
TOKEN = "secret-token"
URL = f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages.json"
DEFAULT_NUMBER = "+14155238886"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def make_provider(**kwargs: object) -> TwilioMessagingProvider:
    options: dict[str, object] = {
        "account_sid": SID,
        "auth_token": TOKEN,
        "default_sender": DEFAULT_NUMBER,
        "timeout_seconds": 7.5,
        "wall_clock": lambda: NOW,
    }
    options.update(kwargs)
    return TwilioMessagingProvider(**options)  # type: ignore[arg-type]


def request(from_phone: str | None = "+33199000001", outbox_id: str = "01OUTBOX") -> SendRequest:
    return SendRequest(
        outbox_id=outbox_id,
        tenant_id="shop",
        to_phone="+33612345678",
        body="Your order is ready",
        correlation_id="corr-1",
        from_phone=from_phone,
    )


def twilio_error(code: int, status: int, message: str = "refused") -> dict[str, object]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def success_body(sid: str = "SM" + "a" * 32) -> dict[str, object]:
    return {
        "sid": sid,
        "account_sid": SID,
        "status": "queued",
        "from": "whatsapp:+33199000001",
        "to": "whatsapp:+33612345678",
        "body": "Your order is ready",
        "num_segments": "1",
        "direction": "outbound-api",
        "api_version": "2010-04-01",
        "uri": f"/2010-04-01/Accounts/{SID}/Messages/{sid}.json",
    }


def failure_of(provider: TwilioMessagingProvider, send: SendRequest) -> DeliveryFailure:
    with pytest.raises(DeliveryFailed) as caught:
        provider.send(send)
    return caught.value.failure


def form(call: responses.Call) -> dict[str, str]:
    body = call.request.body
    text = body.decode() if isinstance(body, bytes) else str(body)
    return {key: values[0] for key, values in parse_qs(text).items()}


class TestSendingAMessage:
    @responses.activate
    def test_posts_whatsapp_addresses_and_body_to_the_messages_resource(self) -> None:
        responses.post(URL, json=success_body(), status=201)

        receipt = make_provider().send(request())

        assert "SM" + "a" * 32 == receipt.provider_message_id
        call = responses.calls[0]
        assert URL == call.request.url
        assert {
            "From": "whatsapp:+33199000001",
            "To": "whatsapp:+33612345678",
            "Body": "Your order is ready",
        } == form(call)

    @responses.activate
    def test_authenticates_with_the_account_sid_and_auth_token(self) -> None:
        responses.post(URL, json=success_body(), status=201)

        make_provider().send(request())

        expected = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
        assert expected == responses.calls[0].request.headers["Authorization"]

    @responses.activate
    def test_sends_from_the_default_number_when_the_tenant_has_none(self) -> None:
        responses.post(URL, json=success_body(), status=201)

        make_provider().send(request(from_phone=None))

        assert "whatsapp:" + DEFAULT_NUMBER == form(responses.calls[0])["From"]

    @responses.activate
    def test_asks_for_status_callbacks_carrying_the_tenant_and_outbox_ids_when_a_base_url_is_set(
        self,
    ) -> None:
        responses.post(URL, json=success_body(), status=201)

        make_provider(status_callback_base_url="https://hooks.example.com/").send(
            request(outbox_id="01ABC")
        )

        assert (
            "https://hooks.example.com/webhooks/twilio/status?tenantId=shop&outboxId=01ABC"
            == form(responses.calls[0])["StatusCallback"]
        )

    @responses.activate
    def test_asks_for_no_status_callback_without_a_base_url(self) -> None:
        responses.post(URL, json=success_body(), status=201)

        make_provider().send(request())

        assert "StatusCallback" not in form(responses.calls[0])

    @responses.activate
    def test_every_request_carries_the_configured_timeout(self) -> None:
        responses.post(URL, json=success_body(), status=201)

        make_provider(timeout_seconds=3.25).send(request())

        assert 3.25 == responses.calls[0].request.req_kwargs["timeout"]

    def test_the_rate_limit_key_is_the_sending_number(self) -> None:
        provider = make_provider()

        assert "+33199000001" == provider.sender_key(request())
        assert DEFAULT_NUMBER == provider.sender_key(request(from_phone=None))
        assert "+33199000001" == provider.sender_key(request(from_phone="whatsapp:+33199000001"))


class TestTwilioRefusals:
    @pytest.mark.parametrize("code", sorted(SPEC_PERMANENT_CODES))
    @responses.activate
    def test_a_permanent_code_of_the_spec_is_a_permanent_failure_keeping_the_code(
        self, code: int
    ) -> None:
        responses.post(URL, json=twilio_error(code, 400), status=400)

        failure = failure_of(make_provider(), request())

        assert (False, str(code)) == (failure.transient, failure.code)

    @responses.activate
    def test_too_many_requests_is_transient_and_honours_retry_after_seconds(self) -> None:
        responses.post(
            URL, json=twilio_error(20429, 429), status=429, headers={"Retry-After": "12"}
        )

        failure = failure_of(make_provider(), request())

        assert (True, "20429", timedelta(seconds=12)) == (
            failure.transient,
            failure.code,
            failure.retry_after,
        )

    @responses.activate
    def test_retry_after_as_an_http_date_is_read_against_the_clock(self) -> None:
        responses.post(
            URL,
            json=twilio_error(20429, 429),
            status=429,
            headers={"Retry-After": "Sun, 01 Mar 2026 12:00:20 GMT"},
        )

        failure = failure_of(make_provider(), request())

        assert timedelta(seconds=20) == failure.retry_after

    @responses.activate
    def test_service_unavailable_without_a_json_body_is_transient(self) -> None:
        responses.post(URL, body="<html>Service Unavailable</html>", status=503)

        failure = failure_of(make_provider(), request())

        assert (True, "http-503", None) == (failure.transient, failure.code, failure.retry_after)

    @responses.activate
    def test_service_unavailable_with_retry_after_keeps_the_wait(self) -> None:
        responses.post(URL, body="busy", status=503, headers={"Retry-After": "3"})

        failure = failure_of(make_provider(), request())

        assert (True, timedelta(seconds=3)) == (failure.transient, failure.retry_after)

    @responses.activate
    def test_an_unlisted_client_error_is_permanent_with_its_code(self) -> None:
        responses.post(URL, json=twilio_error(21602, 400, "Message body is required"), status=400)

        failure = failure_of(make_provider(), request())

        assert (False, "21602") == (failure.transient, failure.code)
        assert "Message body is required" in failure.message

    @responses.activate
    def test_a_permanent_failure_ignores_retry_after(self) -> None:
        responses.post(URL, json=twilio_error(21211, 400), status=400, headers={"Retry-After": "9"})

        failure = failure_of(make_provider(), request())

        assert failure.retry_after is None

    @responses.activate
    def test_a_server_error_with_a_code_is_transient(self) -> None:
        responses.post(URL, json=twilio_error(20500, 500), status=500)

        failure = failure_of(make_provider(), request())

        assert (True, "20500") == (failure.transient, failure.code)

    @responses.activate
    def test_an_rfc_9457_problem_body_is_classified_by_its_code(self) -> None:
        responses.post(
            URL,
            json={
                "type": "https://www.twilio.com/docs/errors/63016",
                "title": "Outside the allowed window",
                "status": 400,
                "code": 63016,
            },
            status=400,
        )

        failure = failure_of(make_provider(), request())

        assert (False, "63016") == (failure.transient, failure.code)


class TestTransportFailures:
    @responses.activate
    def test_a_connection_error_is_transient(self) -> None:
        responses.post(URL, body=requests.ConnectionError("connection refused"))

        failure = failure_of(make_provider(), request())

        assert (True, "connection-error") == (failure.transient, failure.code)

    @responses.activate
    def test_a_read_timeout_is_transient(self) -> None:
        responses.post(URL, body=requests.ReadTimeout("read timed out"))

        failure = failure_of(make_provider(), request())

        assert (True, "timeout") == (failure.transient, failure.code)

    @responses.activate
    def test_a_connect_timeout_is_transient(self) -> None:
        responses.post(URL, body=requests.ConnectTimeout("connect timed out"))

        failure = failure_of(make_provider(), request())

        assert (True, "timeout") == (failure.transient, failure.code)

    @responses.activate
    def test_a_success_without_a_sid_is_not_taken_for_a_send(self) -> None:
        responses.post(URL, json={"status": "queued"}, status=201)

        failure = failure_of(make_provider(), request())

        assert (True, "no-sid") == (failure.transient, failure.code)

    @responses.activate
    def test_the_failure_chains_the_original_exception(self) -> None:
        responses.post(URL, json=twilio_error(21610, 400), status=400)

        with pytest.raises(DeliveryFailed) as caught:
            make_provider().send(request())

        assert isinstance(caught.value.__cause__, TwilioRestException)


class TestTheCodeTable:
    def test_every_code_the_spec_lists_is_classified_as_the_spec_says(self) -> None:
        unclassified = sorted(SPEC_PERMANENT_CODES - set(TWILIO_CODES))
        misclassified = sorted(
            code
            for code in SPEC_PERMANENT_CODES & set(TWILIO_CODES)
            if TWILIO_CODES[code][0] is not Kind.PERMANENT
        ) + sorted(
            code
            for code in SPEC_TRANSIENT_CODES
            if TWILIO_CODES.get(code, (None,))[0] is not Kind.TRANSIENT
        )

        assert ([], []) == (unclassified, misclassified)

    def test_every_listed_code_has_a_kind_and_a_meaning(self) -> None:
        bad = [
            code
            for code, (kind, meaning) in TWILIO_CODES.items()
            if not isinstance(kind, Kind) or not meaning.strip() or code < 10000
        ]

        assert [] == bad

    @pytest.mark.parametrize(
        ("status", "expected"),
        [
            (400, Kind.PERMANENT),
            (401, Kind.PERMANENT),
            (404, Kind.PERMANENT),
            (408, Kind.TRANSIENT),
            (429, Kind.TRANSIENT),
            (500, Kind.TRANSIENT),
            (502, Kind.TRANSIENT),
            (503, Kind.TRANSIENT),
            (None, Kind.TRANSIENT),
            (302, Kind.TRANSIENT),
        ],
    )
    def test_a_code_missing_from_the_table_is_classified_by_its_status(
        self, status: int | None, expected: Kind
    ) -> None:
        assert expected == classify_status(status)

    def test_a_listed_code_wins_over_its_status(self) -> None:
        assert Kind.TRANSIENT == classify(20429, 400)[0]


def _subclasses(base: type[BaseException]) -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    pending = [base]
    while pending:
        for sub in pending.pop().__subclasses__():
            if sub not in found:
                found.add(sub)
                pending.append(sub)
    return found


class TestEveryExceptionIsTranslated:
    def test_every_exception_class_of_the_sdk_and_of_requests_is_mapped_on_purpose(
        self,
    ) -> None:
        sdk = {
            cls
            for _, cls in inspect.getmembers(twilio.base.exceptions, inspect.isclass)
            if issubclass(cls, TwilioException)
        }
        vendor = sdk | _subclasses(TwilioException) | _subclasses(requests.RequestException)

        unmapped = sorted(cls.__name__ for cls in vendor if not issubclass(cls, TRANSLATED_TYPES))

        assert [] == unmapped

    @pytest.mark.parametrize(
        ("exc", "transient", "code"),
        [
            (TwilioRestException(400, URL, "bad", 21211, "POST"), False, "21211"),
            (TwilioRestException(429, URL, "slow down", 20429, "POST"), True, "20429"),
            (TwilioRestException(503, URL, "busy", 503, "POST"), True, "http-503"),
            (TwilioRestException(418, URL, "teapot", None, "POST"), False, "http-418"),
            (
                TwilioServiceException(
                    type_uri="t", title="x", status=400, code=63014, method="POST", uri=URL
                ),
                False,
                "63014",
            ),
            (TwilioException("credentials are required"), True, "twilio-error"),
            (requests.ReadTimeout("slow"), True, "timeout"),
            (requests.ConnectTimeout("slow"), True, "timeout"),
            (requests.ConnectionError("refused"), True, "connection-error"),
            (requests.exceptions.SSLError("bad cert"), True, "connection-error"),
            (requests.exceptions.ChunkedEncodingError("cut"), True, "http-error"),
            (requests.exceptions.InvalidURL("bad"), True, "http-error"),
            (RuntimeError("surprise"), True, "unexpected"),
        ],
    )
    def test_each_branch_maps_to_a_delivery_failure(
        self, exc: BaseException, transient: bool, code: str
    ) -> None:
        failure = translate(exc, None, NOW)

        assert (transient, code) == (failure.transient, failure.code)

    def test_the_delivery_failure_message_names_no_secret(self) -> None:
        failure = translate(TwilioRestException(401, URL, "Authenticate", 20003, "POST"))

        assert TOKEN not in json.dumps(failure.message)
