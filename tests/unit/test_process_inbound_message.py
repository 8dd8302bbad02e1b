"""process_inbound_message (SPEC §3 "Sender classification", "Inbound processing"): classify the
sender, attach to the live session, record once; reject bad input for good, never raise."""

from __future__ import annotations

from typing import Any

import pytest

from application.inbound import Processed, Rejected, RejectReason
from domain.dead_letters import DeadLetterSource
from domain.inbound import InboundStatus
from domain.senders import SenderType
from tests.unit.builders import CLIENT_PHONE, SELLER_PHONE, START, World


class TestClassifyingTheSender:
    def test_a_message_from_a_seller_phone_is_a_seller_message(self, shop: World) -> None:
        outcome = shop.message_from(SELLER_PHONE)

        assert "seller" == outcome.enriched["messageType"]

    def test_a_message_from_any_other_phone_is_a_client_message(self, shop: World) -> None:
        outcome = shop.message_from(CLIENT_PHONE)

        assert "client" == outcome.enriched["messageType"]

    def test_the_sellers_nationally_written_phone_matches(self, shop: World) -> None:
        outcome = shop.message_from("06 12 34 56 78")

        assert "seller" == outcome.enriched["messageType"]

    def test_a_seller_registered_nationally_is_recognised_in_e164(self, world: World) -> None:
        world.tenant("shop-us", region="US")
        world.seller("shop-us", "(415) 555-2671")

        outcome = world.message_from("+14155552671", tenant_id="shop-us")

        assert "seller" == outcome.enriched["messageType"]

    def test_a_national_number_is_read_with_the_tenants_region(self, world: World) -> None:
        world.tenant("shop-us", region="US")

        world.message_from("(415) 555-2671", tenant_id="shop-us", provider_message_id="SM1")

        record = world.store.inbound[("shop-us", "SM1")]
        assert ("+14155552671", "whatsapp:(415) 555-2671") == (
            record.from_e164,
            record.message.from_address,
        )

    def test_a_seller_of_another_tenant_is_a_client_here(self, shop: World) -> None:
        shop.tenant("shop-b")

        outcome = shop.message_from(SELLER_PHONE, tenant_id="shop-b")

        assert "client" == outcome.enriched["messageType"]

    def test_a_seller_is_never_a_client_even_when_writing_like_a_client(self, shop: World) -> None:
        shop.message_from(CLIENT_PHONE)
        outcomes = [shop.message_from(SELLER_PHONE, body=b) for b in ("", "I want one", "price?")]

        assert ["seller"] * 3 == [o.enriched["messageType"] for o in outcomes]

    def test_a_failing_seller_lookup_raises_rather_than_falling_back_to_client(
        self, shop: World, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from adapters.memory.store import MemorySellerDirectory
        from ports.repositories import StoreUnavailable

        def down(*_: Any) -> None:
            raise StoreUnavailable("database down")

        monkeypatch.setattr(MemorySellerDirectory, "find_by_key", down)

        with pytest.raises(StoreUnavailable):
            shop.receive(shop.payload(sender=SELLER_PHONE))
        assert ({}, []) == (shop.store.inbound, shop.store.events)


class TestPhonesAsWhatsAppSendsThem:
    """Issue 11 §2; the formats and their sources are in tests/unit/test_phones.py."""

    @pytest.mark.parametrize(
        "sender", ["whatsapp:+491511234567", "whatsapp:+5215512345678", "whatsapp:+559281723241"]
    )
    def test_a_sender_the_library_calls_invalid_is_recorded_as_a_client(
        self, shop: World, sender: str
    ) -> None:
        outcome = shop.receive(shop.payload(provider_message_id="SM1", **{"from": sender}))

        assert isinstance(outcome, Processed)
        record = shop.store.inbound[("shop-a", "SM1")]
        assert ("client", sender.removeprefix("whatsapp:"), sender) == (
            outcome.enriched["messageType"],
            record.from_e164,
            record.message.from_address,
        )
        assert [] == shop.events("inbound.rejected")

    def test_a_sender_address_that_cannot_be_read_is_taken_from_the_whatsapp_id(
        self, shop: World
    ) -> None:
        outcome = shop.receive(
            shop.payload(
                provider_message_id="SM1", **{"from": "whatsapp:unknown"}, waId="5215512345678"
            )
        )

        assert isinstance(outcome, Processed)
        assert "+5215512345678" == shop.store.inbound[("shop-a", "SM1")].from_e164

    @pytest.mark.parametrize(
        ("region", "registered", "sent"),
        [
            ("AR", "+54 11 2345 6789", "whatsapp:+5491123456789"),
            ("AR", "011 15 2345-6789", "whatsapp:+5491123456789"),
            ("MX", "55 1234 5678", "whatsapp:+5215512345678"),
            ("MX", "+52 1 55 1234 5678", "whatsapp:+525512345678"),
            ("BR", "(92) 98172-3241", "whatsapp:+559281723241"),
            ("BR", "+55 92 8172 3241", "whatsapp:+5592981723241"),
        ],
    )
    def test_a_seller_registered_in_one_form_is_a_seller_in_every_form_whatsapp_sends(
        self, world: World, region: str, registered: str, sent: str
    ) -> None:
        world.tenant("shop-x", region=region)
        world.seller("shop-x", registered)

        outcome = world.receive(world.payload("shop-x", **{"from": sent}))

        assert isinstance(outcome, Processed)
        assert "seller" == outcome.enriched["messageType"]

    def test_two_forms_of_one_number_cannot_be_two_sellers(self, world: World) -> None:
        from ports.repositories import AlreadyExists

        world.tenant("shop-ar", region="AR")
        world.seller("shop-ar", "011 2345-6789")

        with pytest.raises(AlreadyExists):
            world.seller("shop-ar", "+54 9 11 2345 6789")
        assert 1 == len(world.store.sellers)


class TestRecordingTheMessage:
    def test_the_enriched_message_is_the_payload_plus_type_and_session(self, shop: World) -> None:
        payload = shop.payload(sender=SELLER_PHONE, receivedAt="2026-03-02T17:59:00+00:00")

        outcome = shop.receive(payload)

        assert isinstance(outcome, Processed)
        session_id = shop.active_sessions()[0].id
        assert {**payload, "messageType": "seller", "liveSessionId": session_id} == (
            outcome.enriched
        )

    def test_the_record_is_processed_with_its_classification(self, shop: World) -> None:
        outcome = shop.message_from(SELLER_PHONE, provider_message_id="SM1")

        record = shop.store.inbound[("shop-a", "SM1")]
        assert (
            InboundStatus.PROCESSED,
            SenderType.SELLER,
            outcome.enriched["liveSessionId"],
            shop.now,
        ) == (record.status, record.message_type, record.live_session_id, record.processed_at)

    def test_one_message_classified_event_carries_the_correlation_id(self, shop: World) -> None:
        shop.receive(shop.payload(sender=CLIENT_PHONE, provider_message_id="SM1"))

        [event] = shop.events("message.classified")
        assert ("shop-a", "corr-1") == (event.tenant_id, event.correlation_id)
        assert {"providerMessageId": "SM1", "messageType": "client", "liveSessionId": None} == (
            event.payload
        )

    def test_a_webhook_received_row_is_completed_not_duplicated(self, shop: World) -> None:
        from domain.inbound import InboundMessage, InboundRecord

        payload = shop.payload(sender=CLIENT_PHONE, provider_message_id="SM1")
        with shop.uow_factory() as uow:
            message = InboundMessage.from_payload(payload, shop.now)
            uow.inbound.add(InboundRecord(id="inbox-1", message=message))
            uow.commit()

        outcome = shop.receive(payload)

        assert isinstance(outcome, Processed)
        assert [("inbox-1", InboundStatus.PROCESSED)] == [
            (r.id, r.status) for r in shop.store.inbound.values()
        ]
        assert 1 == len(shop.events("message.classified"))


class TestInboundIdempotency:
    def test_the_same_provider_message_id_twice_is_recorded_once(self, shop: World) -> None:
        payload = shop.payload(sender=SELLER_PHONE, provider_message_id="SM1")

        first = shop.receive(payload)
        shop.advance(seconds=5)
        second = shop.receive(payload)

        assert 1 == len(shop.store.inbound)
        assert 1 == len(shop.events("message.classified"))
        assert Processed(first.enriched, duplicate=True) == second

    def test_a_repeated_seller_message_touches_the_session_once(self, shop: World) -> None:
        payload = shop.payload(sender=SELLER_PHONE, provider_message_id="SM1")
        shop.receive(payload)
        shop.advance(minutes=10)

        shop.receive(payload)

        session = shop.active_sessions()[0]
        assert (1, START) == (
            session.seller_message_count,
            session.last_activity_at,
        )

    def test_a_repeat_returns_the_first_result_even_after_the_session_closed(
        self, shop: World
    ) -> None:
        payload = shop.payload(sender=SELLER_PHONE, provider_message_id="SM1")
        first = shop.receive(payload)
        shop.advance(hours=2)
        shop.close_inactive()

        again = shop.receive(payload)

        assert Processed(first.enriched, duplicate=True) == again
        assert [] == shop.active_sessions()

    def test_a_repeat_with_a_different_body_still_returns_the_first_result(
        self, shop: World
    ) -> None:
        first = shop.receive(shop.payload(provider_message_id="SM1", body="first"))

        again = shop.receive(shop.payload(provider_message_id="SM1", body="second"))

        assert isinstance(again, Processed)
        assert (first.enriched, True) == (again.enriched, again.duplicate)

    def test_the_same_provider_message_id_under_another_tenant_is_another_message(
        self, shop: World
    ) -> None:
        shop.tenant("shop-b")

        a = shop.receive(shop.payload("shop-a", CLIENT_PHONE, provider_message_id="SM1"))
        b = shop.receive(shop.payload("shop-b", CLIENT_PHONE, provider_message_id="SM1"))

        assert (False, False) == (a.duplicate, b.duplicate)
        assert {("shop-a", "SM1"), ("shop-b", "SM1")} == set(shop.store.inbound)
        assert ["shop-a", "shop-b"] == [e.tenant_id for e in shop.events("message.classified")]


class TestRejectingAJob:
    def test_an_invalid_payload_is_rejected_with_a_dead_letter_and_an_event(
        self, shop: World
    ) -> None:
        payload = shop.payload(providerMessageId="S" * 129)

        outcome = shop.receive(payload)

        assert isinstance(outcome, Rejected)
        assert RejectReason.INVALID_PAYLOAD == outcome.reason
        dead = shop.store.dead_letters[outcome.dead_letter_id]
        assert (
            DeadLetterSource.WEBHOOK_PROCESSING,
            payload,
            RejectReason.INVALID_PAYLOAD,
            shop.now,
        ) == (dead.source, dead.payload, dead.error_code, dead.created_at)
        assert "providerMessageId" in dead.error
        assert ["inbound.rejected"] == shop.event_types()

    def test_an_invalid_payload_of_a_known_tenant_keeps_the_tenant(self, shop: World) -> None:
        outcome = shop.receive(shop.payload(body=None))

        assert "shop-a" == shop.store.dead_letters[outcome.dead_letter_id].tenant_id
        assert ["shop-a"] == [e.tenant_id for e in shop.events("inbound.rejected")]

    def test_an_unknown_tenant_is_rejected_with_no_tenant_on_the_dead_letter(
        self, shop: World
    ) -> None:
        payload = shop.payload("shop-zz", CLIENT_PHONE, provider_message_id="SM1")

        outcome = shop.receive(payload)

        assert isinstance(outcome, Rejected)
        assert RejectReason.UNKNOWN_TENANT == outcome.reason
        dead = shop.store.dead_letters[outcome.dead_letter_id]
        assert (None, "SM1", payload) == (dead.tenant_id, dead.source_id, dead.payload)
        [event] = shop.events("inbound.rejected")
        assert (None, "SM1", payload["correlationId"]) == (
            event.tenant_id,
            event.subject_id,
            event.correlation_id,
        )
        assert {
            "reason": "unknown_tenant",
            "error": "unknown tenant 'shop-zz'",
            "deadLetterId": outcome.dead_letter_id,
        } == event.payload

    def test_an_invalid_phone_is_rejected_under_its_tenant(self, shop: World) -> None:
        payload = shop.payload(sender="not-a-phone")

        outcome = shop.receive(payload)

        assert isinstance(outcome, Rejected)
        assert RejectReason.INVALID_PHONE == outcome.reason
        dead = shop.store.dead_letters[outcome.dead_letter_id]
        assert ("shop-a", payload) == (dead.tenant_id, dead.payload)
        assert ["shop-a"] == [e.tenant_id for e in shop.events("inbound.rejected")]

    @pytest.mark.parametrize(
        ("raw", "kept"),
        [
            (["tenantId", "shop-a"], {"raw": ["tenantId", "shop-a"]}),
            ("tenantId=shop-a", {"raw": "tenantId=shop-a"}),
            (None, {"raw": None}),
            (b"\x00bytes", {"raw": "b'\\x00bytes'"}),
        ],
    )
    def test_a_payload_that_is_not_an_object_is_kept_whole(
        self, shop: World, raw: object, kept: dict[str, Any]
    ) -> None:
        outcome = shop.receive(raw)

        assert isinstance(outcome, Rejected)
        dead = shop.store.dead_letters[outcome.dead_letter_id]
        assert (None, kept, "(none)") == (dead.tenant_id, dead.payload, dead.source_id)
        assert ["inbound.rejected"] == shop.event_types()

    @pytest.mark.parametrize(
        "make",
        [
            lambda w: w.payload(body=None),
            lambda w: w.payload("shop-zz"),
            lambda w: w.payload(sender="12"),
            lambda w: ["not", "an", "object"],
        ],
        ids=["invalid-payload", "unknown-tenant", "invalid-phone", "not-an-object"],
    )
    def test_a_rejection_records_nothing_else(self, shop: World, make: Any) -> None:
        outcome = shop.receive(make(shop))

        assert isinstance(outcome, Rejected)
        assert ({}, {}, {}) == (shop.store.inbound, shop.store.sessions, shop.store.outbox)
        assert 1 == len(shop.store.dead_letters)
        assert ["inbound.rejected"] == shop.event_types()
