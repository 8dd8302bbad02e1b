"""Templates, media and expiry through the Twilio provider, against Twilio's HTTP API shape
(``responses``; no network).

Sources:
- a template is sent with ``ContentSid`` and ``ContentVariables`` (a JSON string), without Body
  or MediaUrl: https://www.twilio.com/docs/content-api/send-templates-created-with-content-api;
- media goes as one ``MediaUrl`` form field per URL (the SDK's ``media_url`` list; WhatsApp takes
  one): https://www.twilio.com/docs/whatsapp/guidance-whatsapp-media-messages;
- ``MessagingServiceSid`` and ``ValidityPeriod`` (1 to 36,000 seconds):
  https://www.twilio.com/docs/api/errors/21624 and the Message resource;
- every code of ``CONTENT_CODES`` is on the page it cites in Twilio's Error and Warning
  Dictionary (https://www.twilio.com/docs/api/errors).
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest
import responses

from adapters.twilio.codes import CONTENT_CODES, TWILIO_CODES, Kind, classify
from ports.messaging import SendRequest
from tests.integration.test_twilio_provider import (
    URL,
    failure_of,
    make_provider,
    success_body,
    twilio_error,
)

TEMPLATE = "HX" + "b" * 32
SERVICE = "MG" + "c" * 32
PHOTO = "https://shop.example/robe.jpg"


def request(**kwargs: object) -> SendRequest:
    fields: dict[str, object] = {
        "outbox_id": "01OUTBOX",
        "tenant_id": "shop",
        "to_phone": "+33612345678",
        "body": "",
        "correlation_id": "corr-1",
        "from_phone": "+33199000001",
    }
    fields.update(kwargs)
    return SendRequest(**fields)  # type: ignore[arg-type]


def form(call: responses.Call) -> dict[str, list[str]]:
    body = call.request.body
    text = body.decode() if isinstance(body, bytes) else str(body)
    return parse_qs(text)


class TestSendingATemplate:
    @responses.activate
    def test_a_template_posts_its_content_sid_and_variables_as_json_and_no_body(self) -> None:
        responses.post(URL, json=success_body(), status=201)

        make_provider().send(
            request(content_sid=TEMPLATE, content_variables={"1": "Robe", "2": "10 min"})
        )

        sent = form(responses.calls[0])
        assert {"From", "To", "ContentSid", "ContentVariables"} == set(sent)
        assert [TEMPLATE] == sent["ContentSid"]
        assert {"1": "Robe", "2": "10 min"} == json.loads(sent["ContentVariables"][0])

    @responses.activate
    def test_a_template_without_variables_sends_no_content_variables(self) -> None:
        responses.post(URL, json=success_body(), status=201)

        make_provider().send(request(content_sid=TEMPLATE))

        assert "ContentVariables" not in form(responses.calls[0])

    @responses.activate
    def test_accented_variables_arrive_as_written(self) -> None:
        responses.post(URL, json=success_body(), status=201)

        make_provider().send(request(content_sid=TEMPLATE, content_variables={"1": "Réservé"}))

        assert {"1": "Réservé"} == json.loads(form(responses.calls[0])["ContentVariables"][0])

    @responses.activate
    def test_a_meta_template_is_a_permanent_configuration_error_without_a_request(self) -> None:
        responses.post(URL, json=success_body(), status=201)

        failure = failure_of(
            make_provider(), request(content_sid="order_ready:fr", content_variables={"1": "x"})
        )

        assert (False, "twilio-template", 0) == (
            failure.transient,
            failure.code,
            len(responses.calls),
        )
        assert failure.message.startswith("configuration error:")


class TestSendingMedia:
    @responses.activate
    def test_media_goes_as_media_url_beside_the_body(self) -> None:
        responses.post(URL, json=success_body(), status=201)

        make_provider().send(request(body="La robe", media_urls=(PHOTO,)))

        sent = form(responses.calls[0])
        assert ([PHOTO], ["La robe"]) == (sent["MediaUrl"], sent["Body"])

    @responses.activate
    def test_media_alone_sends_no_body(self) -> None:
        responses.post(URL, json=success_body(), status=201)

        make_provider().send(request(media_urls=(PHOTO,)))

        sent = form(responses.calls[0])
        assert ([PHOTO], False) == (sent["MediaUrl"], "Body" in sent)

    @responses.activate
    def test_a_plain_message_sends_no_media_and_no_template(self) -> None:
        responses.post(URL, json=success_body(), status=201)

        make_provider().send(request(body="Bonjour"))

        assert {"From", "To", "Body"} == set(form(responses.calls[0]))


class TestMessagingServiceAndValidity:
    @responses.activate
    def test_a_messaging_service_sender_goes_as_messaging_service_sid_with_validity(
        self,
    ) -> None:
        responses.post(URL, json=success_body(), status=201)

        make_provider().send(
            request(body="Réservé 10 min", from_phone=SERVICE, validity_period=600)
        )

        sent = form(responses.calls[0])
        assert "From" not in sent
        assert ([SERVICE], ["600"]) == (sent["MessagingServiceSid"], sent["ValidityPeriod"])

    @pytest.mark.parametrize(("asked", "sent"), [(0, "1"), (90_000, "36000")])
    @responses.activate
    def test_the_validity_period_is_kept_within_twilio_s_range(self, asked: int, sent: str) -> None:
        responses.post(URL, json=success_body(), status=201)

        make_provider().send(request(body="x", from_phone=SERVICE, validity_period=asked))

        assert [sent] == form(responses.calls[0])["ValidityPeriod"]

    @responses.activate
    def test_a_phone_number_sender_sends_no_validity_period(self) -> None:
        responses.post(URL, json=success_body(), status=201)

        make_provider().send(request(body="x", validity_period=600))

        assert "ValidityPeriod" not in form(responses.calls[0])


class TestTemplateAndMediaCodes:
    @pytest.mark.parametrize(
        ("code", "kind"),
        [
            (63016, Kind.PERMANENT),  # outside the window: a template is needed
            (63027, Kind.PERMANENT),
            (63028, Kind.PERMANENT),
            (63005, Kind.PERMANENT),
            (63021, Kind.PERMANENT),
            (21602, Kind.PERMANENT),
            (21619, Kind.PERMANENT),
            (21620, Kind.PERMANENT),
            (21624, Kind.PERMANENT),
            (21654, Kind.PERMANENT),
            (50526, Kind.PERMANENT),
            (12300, Kind.PERMANENT),
            (11751, Kind.PERMANENT),
            (63034, Kind.PERMANENT),
            (11200, Kind.TRANSIENT),
            (63019, Kind.TRANSIENT),
            (63018, Kind.TRANSIENT),  # the sender's rate limit
        ],
    )
    def test_each_code_is_classified(self, code: int, kind: Kind) -> None:
        assert kind == classify(code, 400)[0]

    @pytest.mark.parametrize("code", sorted(CONTENT_CODES))
    @responses.activate
    def test_an_answer_with_the_code_keeps_it_and_its_kind(self, code: int) -> None:
        responses.post(URL, json=twilio_error(code, 400), status=400)

        failure = failure_of(make_provider(), request(content_sid=TEMPLATE))

        expected_transient = CONTENT_CODES[code][0] is Kind.TRANSIENT
        assert (expected_transient, str(code)) == (failure.transient, failure.code)

    def test_every_content_code_cites_its_page_in_twilio_s_error_dictionary(self) -> None:
        for code, (_, meaning, page) in CONTENT_CODES.items():
            assert page == f"https://www.twilio.com/docs/api/errors/{code}"
            assert meaning
            assert TWILIO_CODES[code][1] == meaning
