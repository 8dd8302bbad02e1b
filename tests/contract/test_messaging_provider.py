"""MessagingProvider contract (issue 17 §4): every provider, real or simulated, takes a text
message and answers a receipt, or raises ``DeliveryFailed`` of the one class the outbox acts on
(transient, permanent, rate limited: ADR 0006, ADR 0015), never a vendor or transport error;
its ``sender_key`` names the request's sender. The same cases run on:

- Twilio, at its HTTP shape through ``responses`` (Twilio's Messages resource,
  https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource, and its
  error pages, https://www.twilio.com/docs/api/errors: 20429 too many requests, 21211 invalid
  'To', 20500 internal error);
- Meta, at the Graph API's HTTP shape through ``httpx.MockTransport`` ("Text messages",
  https://developers.facebook.com/documentation/business-messaging/whatsapp/messages/text-messages,
  and "Cloud API Error Codes",
  https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes:
  130429 rate limit hit, 131026 message undeliverable, 131000 something went wrong);
- the simulated provider, each outcome by its rate;
- the provider router over each of them (what the outbox sender really calls).

Templates and media (ADR 0023): each provider sends its own template reference (Twilio a Content
SID as ``ContentSid``/``ContentVariables`` without a Body,
https://www.twilio.com/docs/content-api/send-templates-created-with-content-api; Meta
``name:language`` as a ``template`` object with body parameters,
https://developers.facebook.com/docs/whatsapp/message-templates/creation) and refuses the other
one's permanently, as a configuration error, without sending; a media URL goes as Twilio's
``MediaUrl`` beside the Body (https://www.twilio.com/docs/whatsapp/guidance-whatsapp-media-messages)
or as Meta's media object by ``link`` with the body as caption
(https://developers.facebook.com/documentation/business-messaging/whatsapp/messages/image-messages).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs

import attrs
import httpx
import pytest
import responses

from adapters.meta.provider import MetaMessagingProvider
from adapters.simulated.provider import SimulatedMessagingProvider
from adapters.twilio.provider import TwilioMessagingProvider
from application.provider_router import ProviderRouter
from ports.messaging import DeliveryFailed, MessagingProvider, SendReceipt, SendRequest

OUTCOMES = ("accepted", "transient", "permanent", "rate_limited")
TWILIO_SID = "AC" + "0" * 32
TWILIO_URL = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
TWILIO_SENDER = "+14155238886"
META_SENDER = "106540352242922"
TWILIO_ANSWERS: dict[str, tuple[int, dict[str, Any]]] = {
    "accepted": (201, {"sid": "SM" + "a" * 32, "status": "queued"}),
    "transient": (500, {"code": 20500, "message": "Internal error", "status": 500}),
    "permanent": (400, {"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400}),
    "rate_limited": (429, {"code": 20429, "message": "Too Many Requests", "status": 429}),
}


def _meta_error(code: int) -> dict[str, Any]:
    return {"error": {"message": f"(#{code})", "type": "OAuthException", "code": code}}


META_ANSWERS: dict[str, tuple[int, dict[str, Any]]] = {
    "accepted": (200, {"messaging_product": "whatsapp", "messages": [{"id": "wamid.HBgLMTY1"}]}),
    "transient": (500, _meta_error(131000)),
    "permanent": (400, _meta_error(131026)),
    "rate_limited": (400, _meta_error(130429)),
}
SIMULATED_RATES = {
    "accepted": {},
    "transient": {"transient_failure_rate": 1.0},
    "permanent": {"permanent_failure_rate": 1.0},
    "rate_limited": {"rate_limited_failure_rate": 1.0},
}

Making = Callable[[str], Any]
"""Given an outcome, a context manager yielding a provider that answers it, and its sender."""


@contextmanager
def twilio(outcome: str) -> Iterator[tuple[MessagingProvider, str]]:
    status, body = TWILIO_ANSWERS[outcome]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        mocked.post(TWILIO_URL, json=body, status=status)
        yield (
            TwilioMessagingProvider(
                account_sid=TWILIO_SID,
                auth_token="secret-token",
                default_sender=TWILIO_SENDER,
                timeout_seconds=5,
            ),
            TWILIO_SENDER,
        )


@contextmanager
def meta(outcome: str) -> Iterator[tuple[MessagingProvider, str]]:
    status, body = META_ANSWERS[outcome]
    transport = httpx.MockTransport(lambda _request: httpx.Response(status, json=body))
    provider = MetaMessagingProvider(
        access_token="EAAJB-test", phone_number_id=META_SENDER, transport=transport
    )
    try:
        yield provider, META_SENDER
    finally:
        provider.close()


@contextmanager
def simulated(outcome: str) -> Iterator[tuple[MessagingProvider, str]]:
    yield SimulatedMessagingProvider(**SIMULATED_RATES[outcome]), TWILIO_SENDER


def routed(make: Making, name: str) -> Making:
    @contextmanager
    def making(outcome: str) -> Iterator[tuple[MessagingProvider, str]]:
        with make(outcome) as (provider, sender):
            others = {other: _refusing for other in ("twilio", "meta") if other != name}
            yield ProviderRouter({name: lambda: provider, **others}, default="twilio"), sender

    return making


def _refusing() -> MessagingProvider:
    raise AssertionError("the router chose another tenant's provider")


PROVIDERS: dict[str, tuple[Making, str | None]] = {
    "twilio": (twilio, None),
    "meta": (meta, "meta"),
    "simulated": (simulated, None),
    "simulated-for-meta": (simulated, "meta"),
    "router-twilio": (routed(twilio, "twilio"), "twilio"),
    "router-meta": (routed(meta, "meta"), "meta"),
}


@pytest.fixture(params=sorted(PROVIDERS))
def provider_case(request: pytest.FixtureRequest) -> tuple[Making, str | None]:
    return PROVIDERS[request.param]


def send_request(sender: str, provider: str | None) -> SendRequest:
    return SendRequest(
        outbox_id="01OUTBOX",
        tenant_id="shop-a",
        to_phone="+33612345678",
        body="Article réservé 10 minutes",
        correlation_id="corr-1",
        from_phone=sender,
        provider=provider,
    )


def outcome_of(make: Making, outcome: str, name: str | None) -> SendReceipt | DeliveryFailed:
    with make(outcome) as (provider, sender):
        try:
            return provider.send(send_request(sender, name))
        except DeliveryFailed as exc:
            return exc


class TestEveryProvider:
    def test_an_accepted_text_answers_the_providers_message_id(
        self, provider_case: tuple[Making, str | None]
    ) -> None:
        make, name = provider_case

        receipt = outcome_of(make, "accepted", name)

        assert isinstance(receipt, SendReceipt)
        assert receipt.provider_message_id

    @pytest.mark.parametrize(
        ("outcome", "transient", "rate_limited"),
        [("transient", True, False), ("permanent", False, False), ("rate_limited", True, True)],
    )
    def test_each_failure_class_is_a_delivery_failure_of_that_class_with_a_code(
        self,
        provider_case: tuple[Making, str | None],
        outcome: str,
        transient: bool,
        rate_limited: bool,
    ) -> None:
        make, name = provider_case

        failed = outcome_of(make, outcome, name)

        assert isinstance(failed, DeliveryFailed)
        assert (transient, rate_limited) == (failed.failure.transient, failed.failure.rate_limited)
        assert failed.failure.code

    def test_the_sender_key_names_the_requests_sender(
        self, provider_case: tuple[Making, str | None]
    ) -> None:
        make, name = provider_case
        with make("accepted") as (provider, sender):
            key = provider.sender_key(send_request(sender, name))

        assert key.endswith(sender)


class TestTheRouter:
    def test_keys_never_meet_across_providers(self) -> None:
        with twilio("accepted") as (twilio_provider, _), meta("accepted") as (meta_provider, _):
            router = ProviderRouter(
                {"twilio": lambda: twilio_provider, "meta": lambda: meta_provider},
                default="twilio",
            )
            keys = {
                router.sender_key(send_request(TWILIO_SENDER, None)),
                router.sender_key(send_request(TWILIO_SENDER, "twilio")),
                router.sender_key(send_request(META_SENDER, "meta")),
            }

        assert {f"twilio:{TWILIO_SENDER}", f"meta:{META_SENDER}"} == keys

    def test_a_provider_this_deployment_does_not_serve_is_a_permanent_configuration_error(
        self,
    ) -> None:
        router = ProviderRouter({"twilio": SimulatedMessagingProvider}, default="twilio")

        with pytest.raises(DeliveryFailed) as caught:
            router.send(send_request(META_SENDER, "meta"))

        failure = caught.value.failure
        assert (False, "provider-not-configured") == (failure.transient, failure.code)
        assert failure.message.startswith("configuration error:")

    def test_closing_closes_the_providers_it_sent_through(self) -> None:
        with meta("accepted") as (meta_provider, _):
            router = ProviderRouter(
                {"twilio": SimulatedMessagingProvider, "meta": lambda: meta_provider},
                default="twilio",
                owns=("meta",),
            )
            router.send(send_request(META_SENDER, "meta"))

            router.close()

            with pytest.raises(DeliveryFailed):  # its HTTP client is closed
                meta_provider.send(send_request(META_SENDER, "meta"))


TWILIO_TEMPLATE = "HX" + "b" * 32
META_TEMPLATE = "order_ready:fr"
PHOTO = "https://shop.example/robe.jpg"
Shape = Callable[[], list[dict[str, Any]]]
"""What a provider sent, in its own shape: Twilio's form fields, Meta's JSON bodies, the simulated
provider's records."""


@contextmanager
def twilio_capturing() -> Iterator[tuple[MessagingProvider, str, Shape]]:
    status, body = TWILIO_ANSWERS["accepted"]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        mocked.post(TWILIO_URL, json=body, status=status)
        provider = TwilioMessagingProvider(
            account_sid=TWILIO_SID,
            auth_token="secret-token",
            default_sender=TWILIO_SENDER,
            timeout_seconds=5,
        )

        def shape() -> list[dict[str, Any]]:
            forms = []
            for call in mocked.calls:
                raw = call.request.body
                text = raw.decode() if isinstance(raw, bytes) else str(raw)
                forms.append(dict(parse_qs(text)))
            return forms

        yield provider, TWILIO_SENDER, shape


@contextmanager
def meta_capturing() -> Iterator[tuple[MessagingProvider, str, Shape]]:
    bodies: list[dict[str, Any]] = []
    status, answer = META_ANSWERS["accepted"]

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(status, json=answer)

    provider = MetaMessagingProvider(
        access_token="EAAJB-test",
        phone_number_id=META_SENDER,
        transport=httpx.MockTransport(handler),
    )
    try:
        yield provider, META_SENDER, lambda: bodies
    finally:
        provider.close()


@contextmanager
def simulated_capturing() -> Iterator[tuple[MessagingProvider, str, Shape]]:
    provider = SimulatedMessagingProvider()

    def shape() -> list[dict[str, Any]]:
        return [
            {
                "content_sid": record.content_sid,
                "content_variables": record.content_variables,
                "media_urls": record.media_urls,
            }
            for record in provider.sent
        ]

    yield provider, TWILIO_SENDER, shape


CAPTURING: dict[str, tuple[Callable[[], Any], str | None]] = {
    "twilio": (twilio_capturing, None),
    "meta": (meta_capturing, "meta"),
    "simulated": (simulated_capturing, None),
    "simulated-for-meta": (simulated_capturing, "meta"),
}
OWN_TEMPLATE = {None: TWILIO_TEMPLATE, "meta": META_TEMPLATE}
OTHER_TEMPLATE = {None: META_TEMPLATE, "meta": TWILIO_TEMPLATE}
TEMPLATE_SENT: dict[str, list[dict[str, Any]]] = {
    "twilio": [
        {
            "To": ["whatsapp:+33612345678"],
            "From": [f"whatsapp:{TWILIO_SENDER}"],
            "ContentSid": [TWILIO_TEMPLATE],
            "ContentVariables": ['{"1":"Robe","2":"M"}'],
        }
    ],
    "meta": [
        {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "+33612345678",
            "type": "template",
            "template": {
                "name": "order_ready",
                "language": {"code": "fr"},
                "components": [
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "text": "Robe"},
                            {"type": "text", "text": "M"},
                        ],
                    }
                ],
            },
            "biz_opaque_callback_data": "tenantId=shop-a&outboxId=01OUTBOX",
        }
    ],
    "simulated": [
        {
            "content_sid": TWILIO_TEMPLATE,
            "content_variables": {"1": "Robe", "2": "M"},
            "media_urls": (),
        }
    ],
    "simulated-for-meta": [
        {
            "content_sid": META_TEMPLATE,
            "content_variables": {"1": "Robe", "2": "M"},
            "media_urls": (),
        }
    ],
}
MEDIA_SENT: dict[str, list[dict[str, Any]]] = {
    "twilio": [
        {
            "To": ["whatsapp:+33612345678"],
            "From": [f"whatsapp:{TWILIO_SENDER}"],
            "Body": ["La robe"],
            "MediaUrl": [PHOTO],
        }
    ],
    "meta": [
        {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "+33612345678",
            "type": "image",
            "image": {"link": PHOTO, "caption": "La robe"},
            "biz_opaque_callback_data": "tenantId=shop-a&outboxId=01OUTBOX",
        }
    ],
    "simulated": [{"content_sid": None, "content_variables": None, "media_urls": (PHOTO,)}],
    "simulated-for-meta": [
        {"content_sid": None, "content_variables": None, "media_urls": (PHOTO,)}
    ],
}


@pytest.fixture(params=sorted(CAPTURING))
def capturing(request: pytest.FixtureRequest) -> tuple[str, Callable[[], Any], str | None]:
    make, name = CAPTURING[request.param]
    return request.param, make, name


def content_request(sender: str, provider: str | None, **content: Any) -> SendRequest:
    return attrs.evolve(send_request(sender, provider), **content)


class TestTemplatesAndMedia:
    def test_a_template_goes_as_the_providers_own_template_shape(
        self, capturing: tuple[str, Callable[[], Any], str | None]
    ) -> None:
        case, make, name = capturing
        with make() as (provider, sender, shape):
            receipt = provider.send(
                content_request(
                    sender,
                    name,
                    body="",
                    content_sid=OWN_TEMPLATE[name],
                    content_variables={"1": "Robe", "2": "M"},
                )
            )
            sent = shape()

        assert receipt.provider_message_id
        assert TEMPLATE_SENT[case] == sent

    def test_a_photo_goes_with_the_body_beside_it(
        self, capturing: tuple[str, Callable[[], Any], str | None]
    ) -> None:
        case, make, name = capturing
        with make() as (provider, sender, shape):
            provider.send(content_request(sender, name, body="La robe", media_urls=(PHOTO,)))
            sent = shape()

        assert MEDIA_SENT[case] == sent

    def test_the_other_providers_template_is_a_permanent_configuration_error_unsent(
        self, capturing: tuple[str, Callable[[], Any], str | None]
    ) -> None:
        _, make, name = capturing
        with make() as (provider, sender, shape):
            with pytest.raises(DeliveryFailed) as caught:
                provider.send(
                    content_request(sender, name, body="", content_sid=OTHER_TEMPLATE[name])
                )
            sent = shape()

        failure = caught.value.failure
        assert (False, []) == (failure.transient, sent)
        assert failure.message.startswith("configuration error:")
