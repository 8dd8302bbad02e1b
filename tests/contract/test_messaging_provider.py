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

Templates and media are not on ``SendRequest`` yet (another branch adds them): their cases join
here with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

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
