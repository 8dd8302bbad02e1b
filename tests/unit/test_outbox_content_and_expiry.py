"""Outbound templates, media and expiry (issue 15 §2, §4) on the memory store, under the fixed
clock.

Twilio's rules the domain applies (``domain.outbox.check_content``), a template being a Twilio
Content SID or a Meta template ``name:language`` (ADR 0023):
- a message needs "a Body, Media URL or Content SID" (https://www.twilio.com/docs/api/errors/21619);
- with a ContentSid, "Body and MediaUrl should be excluded ... superseded by the ContentSid"
  (https://www.twilio.com/docs/content-api/send-templates-created-with-content-api);
- ContentVariables need a ContentSid (https://www.twilio.com/docs/api/errors/21654);
- "a WhatsApp media message can only contain one media attachment"
  (https://support.twilio.com/hc/en-us/articles/360017961894).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.simulated.provider import SimulatedMessagingProvider
from application.outbox import queue_outbound_message
from domain.errors import InvalidOutboundContent
from domain.outbox import EXPIRED_CODE, OutboxMessage, OutboxStatus
from tests.unit.builders import CLIENT_PHONE, START, ScriptedProvider, World, transient

TEMPLATE = "HX" + "b" * 32
PHOTO = "https://shop.example/robe.jpg"


@pytest.fixture
def outbox(world: World) -> World:
    world.tenant("shop-a", whatsapp_number="+33180808080")
    return world


def queue(world: World, body: str = "", **content: Any) -> str:
    return queue_outbound_message(
        uow_factory=world.uow_factory,
        tenant_id="shop-a",
        to=CLIENT_PHONE,
        body=body,
        correlation_id="corr-1",
        clock=world.clock,
        ids=world.ids,
        **content,
    )


def new(body: str = "", **content: Any) -> OutboxMessage:
    return OutboxMessage.new(
        id="m1",
        tenant_id="shop-a",
        to_phone=CLIENT_PHONE,
        body=body,
        correlation_id="c",
        now=START,
        **content,
    )


class ClockAdvancingLimiter:
    """A rate limiter whose wait moves the clock on by ``wait``."""

    def __init__(self, world: World, wait: timedelta) -> None:
        self.world = world
        self.wait = wait

    def acquire(self, key: str) -> None:
        self.world.clock.advance(self.wait)


class TestWhatAMessageHolds:
    def test_a_template_holds_its_content_sid_and_variables_and_no_body(self) -> None:
        message = new(content_sid=TEMPLATE, content_variables={"1": "Robe"})

        assert (TEMPLATE, {"1": "Robe"}, "", ()) == (
            message.content_sid,
            message.content_variables,
            message.body,
            message.media_urls,
        )

    @pytest.mark.parametrize("reference", ["order_ready:fr", "hello_world:en_US", "promo2:pt_BR"])
    def test_a_meta_template_reference_is_a_template(self, reference: str) -> None:
        message = new(content_sid=reference, content_variables={"1": "Robe"})

        assert (reference, {"1": "Robe"}) == (message.content_sid, message.content_variables)

    @pytest.mark.parametrize(
        "reference",
        [
            "HX123",
            "HX" + "g" * 32,
            "Order_Ready:fr",
            "order-ready:fr",
            "order_ready",
            "order_ready:",
            ":fr",
            "order_ready:FR",
            "order_ready:pt-BR",
            "order_ready:fr:extra",
        ],
    )
    def test_a_reference_neither_twilio_nor_meta_is_refused(self, reference: str) -> None:
        with pytest.raises(InvalidOutboundContent, match="nor a Meta template"):
            new(content_sid=reference)

    def test_a_body_with_one_photo_is_a_message(self) -> None:
        assert (PHOTO,) == new("La robe", media_urls=[PHOTO]).media_urls

    def test_a_photo_alone_is_a_message(self) -> None:
        assert (PHOTO,) == new(media_urls=[PHOTO]).media_urls

    @pytest.mark.parametrize(
        ("body", "content", "says"),
        [
            ("", {}, "needs a body, a media URL or a template"),
            ("Bonjour", {"content_sid": TEMPLATE}, "no body and no media"),
            ("", {"content_sid": TEMPLATE, "media_urls": [PHOTO]}, "no body and no media"),
            ("Bonjour", {"content_variables": {"1": "x"}}, "need a content_sid"),
            ("", {"content_sid": "MG123"}, "not a Twilio Content SID"),
            ("x", {"media_urls": [PHOTO, PHOTO]}, "at most 1 per message"),
            ("x", {"media_urls": ["ftp://shop.example/a.jpg"]}, "not an http(s) URL"),
            ("x", {"media_urls": ["robe.jpg"]}, "not an http(s) URL"),
            ("", {"content_sid": TEMPLATE, "content_variables": {"1": 2}}, "non-empty text"),
            ("x", {"expires_at": START}, "is not after now"),
        ],
    )
    def test_content_twilio_would_refuse_is_refused_with_a_clear_error(
        self, body: str, content: dict[str, Any], says: str
    ) -> None:
        with pytest.raises(
            InvalidOutboundContent, match=says.replace("(", r"\(").replace(")", r"\)")
        ):
            new(body, **content)

    def test_a_refused_message_is_not_written(self, outbox: World) -> None:
        with pytest.raises(ValueError, match="needs a body"):
            queue(outbox)

        assert {} == outbox.store.outbox


class TestSendingTemplatesAndMedia:
    def test_the_provider_gets_the_template_and_its_variables(self, outbox: World) -> None:
        queue(outbox, content_sid=TEMPLATE, content_variables={"1": "Robe", "2": "39 EUR"})
        provider = ScriptedProvider()

        outbox.send_due(provider)

        [request] = provider.accepted
        assert (TEMPLATE, {"1": "Robe", "2": "39 EUR"}, "", ()) == (
            request.content_sid,
            request.content_variables,
            request.body,
            request.media_urls,
        )

    def test_the_provider_gets_the_media_beside_the_body(self, outbox: World) -> None:
        queue(outbox, "La robe", media_urls=[PHOTO])
        provider = ScriptedProvider()

        outbox.send_due(provider)

        [request] = provider.accepted
        assert ("La robe", (PHOTO,), None) == (
            request.body,
            request.media_urls,
            request.content_sid,
        )


class TestExpiry:
    def test_a_message_sent_before_it_expires_is_sent_with_its_remaining_validity(
        self, outbox: World
    ) -> None:
        message_id = queue(outbox, "Article réservé 10 minutes", expires_in=timedelta(minutes=10))
        outbox.advance(minutes=4)
        provider = ScriptedProvider()

        report = outbox.send_due(provider)

        [request] = provider.accepted
        assert (1, 0, OutboxStatus.SENT, 360) == (
            report.sent,
            report.expired,
            outbox.outbox(message_id).status,
            request.validity_period,
        )

    def test_a_message_without_expiry_asks_for_no_validity_period(self, outbox: World) -> None:
        queue(outbox, "Bonjour")
        provider = ScriptedProvider()

        outbox.send_due(provider)

        assert provider.accepted[0].validity_period is None

    def test_a_message_that_expired_before_its_claim_ends_expired_unsent(
        self, outbox: World
    ) -> None:
        message_id = queue(outbox, "Article réservé 10 minutes", expires_in=timedelta(minutes=10))
        outbox.advance(minutes=10)
        provider = ScriptedProvider()

        report = outbox.send_due(provider)

        message = outbox.outbox(message_id)
        assert ([], OutboxStatus.EXPIRED, EXPIRED_CODE, None) == (
            provider.requests,
            message.status,
            message.last_error_code,
            message.locked_until,
        )
        assert (1, 1, 0) == (report.claimed, report.expired, report.dead)
        assert {} == outbox.store.dead_letters

    def test_an_expiry_records_its_event(self, outbox: World) -> None:
        message_id = queue(outbox, "x", expires_in=timedelta(seconds=30))
        outbox.advance(seconds=31)

        outbox.send_due(ScriptedProvider())

        [event] = outbox.events("message.expired")
        assert (message_id, (START + timedelta(seconds=30)).isoformat(), 1) == (
            event.subject_id,
            event.payload["expiresAt"],
            event.payload["attempts"],
        )

    def test_a_message_that_expires_while_waiting_for_a_retry_ends_expired(
        self, outbox: World
    ) -> None:
        message_id = queue(outbox, "x", expires_in=timedelta(seconds=1.5))
        provider = ScriptedProvider(transient(), transient())

        outbox.send_due(provider)  # fails at 0 s: retry at 1 s
        outbox.advance(seconds=1)
        outbox.send_due(provider)  # fails at 1 s: the 2 s retry is brought to the expiry
        retry_at = outbox.outbox(message_id).next_attempt_at
        outbox.advance(seconds=0.5)
        report = outbox.send_due(provider)

        assert (START + timedelta(seconds=1.5), 2, 1) == (
            retry_at,
            len(provider.requests),
            report.expired,
        )
        assert OutboxStatus.EXPIRED == outbox.outbox(message_id).status
        assert {} == outbox.store.dead_letters

    def test_a_message_that_expires_during_the_rate_limit_wait_is_not_sent(
        self, outbox: World
    ) -> None:
        message_id = queue(outbox, "x", expires_in=timedelta(seconds=1))
        provider = ScriptedProvider()
        limiter = ClockAdvancingLimiter(outbox, timedelta(seconds=2))

        report = outbox.send_due(provider, rate_limiter=limiter)

        assert ([], 1, OutboxStatus.EXPIRED) == (
            provider.requests,
            report.expired,
            outbox.outbox(message_id).status,
        )

    def test_an_expired_message_is_never_claimed_again(self, outbox: World) -> None:
        queue(outbox, "x", expires_in=timedelta(seconds=1))
        outbox.advance(seconds=2)
        outbox.send_due(ScriptedProvider())
        outbox.advance(minutes=5)

        assert 0 == outbox.send_due(ScriptedProvider()).claimed

    def test_expired_messages_are_counted_by_status(self, outbox: World) -> None:
        queue(outbox, "x", expires_in=timedelta(seconds=1))
        queue(outbox, "y")
        outbox.advance(seconds=2)
        outbox.send_due(ScriptedProvider())  # "x" ends expired: it releases "y" (ADR 0020)
        outbox.send_due(ScriptedProvider())

        with outbox.uow_factory() as uow:
            counts = uow.outbox.count_by_status()
        assert (1, 1) == (counts[OutboxStatus.EXPIRED], counts[OutboxStatus.SENT])

    def test_the_sender_loop_records_expiries_and_stops(self, outbox: World) -> None:
        message_id = queue(outbox, "x", expires_in=timedelta(seconds=1))
        outbox.advance(seconds=5)
        sender = outbox.sender(ScriptedProvider())

        class Stop:
            def is_set(self) -> bool:
                return outbox.outbox(message_id).status is OutboxStatus.EXPIRED

        sender.run(Stop())

        assert (1, OutboxStatus.EXPIRED) == (
            sender.counters.expired,
            outbox.outbox(message_id).status,
        )


class TestTheSimulatedProviderLog:
    def test_its_sent_log_names_the_template_the_media_and_the_validity(
        self, outbox: World, tmp_path: Path
    ) -> None:
        log = tmp_path / "sent.jsonl"
        provider = SimulatedMessagingProvider(sent_log=str(log))
        queue(outbox, content_sid=TEMPLATE, content_variables={"1": "Robe"})
        queue(outbox, "La robe", media_urls=[PHOTO], expires_in=timedelta(minutes=10))
        queue(outbox, "Bonjour")

        for _ in range(3):  # one recipient: one message at a time, in written order (ADR 0020)
            outbox.send_due(provider)
        provider.close()

        lines = [json.loads(line) for line in log.read_text().splitlines()]
        every_line = ("outboxId", "to", "correlationId", "at", "calledAt")
        assert all(set(every_line) <= set(line) for line in lines), lines
        extras = [{k: v for k, v in line.items() if k not in every_line} for line in lines]
        assert [
            {"contentSid": TEMPLATE, "contentVariables": {"1": "Robe"}},
            {"mediaUrls": [PHOTO], "validityPeriod": 600},
            {},
        ] == extras
