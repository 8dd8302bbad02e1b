"""The durable inbox and delivery reports at the use-case level, on the in-memory adapters
(ADR 0008): receive, reconcile, record a status report; and the forward-only rule itself."""

from __future__ import annotations

from datetime import timedelta

import pytest

from adapters.memory.queue import MemoryInboundQueue
from application.inbound import process_inbound_message
from application.inbox import (
    DeliveryIgnored,
    DeliveryRecorded,
    Duplicate,
    Invalid,
    Recorded,
    RequeueSchedule,
    UnknownNumber,
    receive_inbound_message,
    reconcile_inbox,
    record_delivery_report,
)
from application.webhook_input import WebhookMessage
from domain.delivery import DeliveryReport, DeliveryStatus
from domain.inbound import InboundStatus
from tests.unit.builders import CLIENT_PHONE, START, World

SHOP_NUMBER = "+14155238886"
S = DeliveryStatus


def message(sid: str = "SM1", **fields: object) -> WebhookMessage:
    values: dict[str, object] = {
        "provider_message_id": sid,
        "from_address": f"whatsapp:{CLIENT_PHONE}",
        "to_address": f"whatsapp:{SHOP_NUMBER}",
        "body": "Je prends le 3 !",
    }
    values.update(fields)
    return WebhookMessage(**values)  # type: ignore[arg-type]


@pytest.fixture
def inbox(world: World) -> World:
    world.tenant("shop-a", whatsapp_number=SHOP_NUMBER)
    return world


@pytest.fixture
def queue() -> MemoryInboundQueue:
    return MemoryInboundQueue()


def receive(
    world: World, queue: MemoryInboundQueue, msg: WebhookMessage | None = None, **kw: object
) -> object:
    return receive_inbound_message(
        msg or message(),
        correlation_id=kw.get("correlation_id"),  # type: ignore[arg-type]
        uow_factory=world.uow_factory,
        queue=queue,
        clock=world.clock,
        ids=world.ids,
    )


def process(world: World, payload: dict[str, object]) -> None:
    """Run the processor's use case on a payload the inbox enqueued."""
    process_inbound_message(
        payload,
        uow_factory=world.uow_factory,
        clock=world.clock,
        ids=world.ids,
        window=world.window,
    )


def stored_status(world: World, sid: str = "SM1") -> InboundStatus | None:
    record = world.store.inbound.get(("shop-a", sid))
    return record.status if record else None


class TestReceiveInboundMessage:
    def test_a_message_is_recorded_received_then_enqueued_as_the_spec_payload(
        self, inbox: World, queue: MemoryInboundQueue
    ) -> None:
        outcome = receive(inbox, queue, correlation_id="req-1")

        assert isinstance(outcome, Recorded)
        assert (True, InboundStatus.RECEIVED) == (outcome.enqueued, stored_status(inbox))
        (_, payload) = queue.pop()  # type: ignore[misc]
        assert {
            "tenantId": "shop-a",
            "providerMessageId": "SM1",
            "from": f"whatsapp:{CLIENT_PHONE}",
            "to": f"whatsapp:{SHOP_NUMBER}",
            "body": "Je prends le 3 !",
            "correlationId": "req-1",
            "receivedAt": START.isoformat(),
        } == payload

    def test_the_enqueued_payload_is_processed_into_the_same_record(
        self, inbox: World, queue: MemoryInboundQueue
    ) -> None:
        receive(inbox, queue)
        (_, payload) = queue.pop()  # type: ignore[misc]

        process(inbox, payload)

        assert InboundStatus.PROCESSED == stored_status(inbox)
        assert 1 == len(inbox.store.inbound)

    def test_a_repeated_message_is_a_duplicate_neither_recorded_nor_enqueued_again(
        self, inbox: World, queue: MemoryInboundQueue
    ) -> None:
        first = receive(inbox, queue, correlation_id="first")
        again = receive(inbox, queue, correlation_id="second")

        assert isinstance(first, Recorded)
        assert (
            Duplicate(
                tenant_id="shop-a",
                record_id=first.record_id,
                correlation_id="first",
                processed=False,
            )
            == again
        )
        assert 1 == len(queue)

    def test_a_number_no_tenant_has_records_no_message_but_one_dead_letter_without_tenant(
        self, inbox: World, queue: MemoryInboundQueue
    ) -> None:
        outcomes = [
            receive(inbox, queue, message(to_address="whatsapp:+14155550000")) for _ in range(3)
        ]

        (dead_letter,) = inbox.store.dead_letters.values()
        assert [
            UnknownNumber(to_address="whatsapp:+14155550000", dead_letter_id=dead_letter.id)
        ] * 3 == outcomes
        assert (None, "unknown_number", "SM1") == (
            dead_letter.tenant_id,
            dead_letter.error_code,
            dead_letter.source_id,
        )
        assert "whatsapp:+14155550000" == dead_letter.payload["to"]
        assert (0, 0) == (len(inbox.store.inbound), len(queue))

    def test_a_to_address_that_is_no_phone_is_an_unknown_number(
        self, inbox: World, queue: MemoryInboundQueue
    ) -> None:
        assert isinstance(receive(inbox, queue, message(to_address="nope")), UnknownNumber)

    def test_when_the_queue_is_down_the_message_is_recorded_and_not_enqueued(
        self, inbox: World, queue: MemoryInboundQueue
    ) -> None:
        queue.available = False

        outcome = receive(inbox, queue)

        assert isinstance(outcome, Recorded)
        assert (False, InboundStatus.RECEIVED) == (outcome.enqueued, stored_status(inbox))

    def test_a_body_over_4096_characters_is_recorded_cut_with_a_flag_and_the_exact_form(
        self, inbox: World, queue: MemoryInboundQueue
    ) -> None:
        params = (("MessageSid", "SM1"), ("Body", "x" * 4097))
        outcome = receive(inbox, queue, message(body="x" * 4097, params=params))

        assert isinstance(outcome, Recorded)
        assert ("body_truncated",) == outcome.flags
        record = inbox.store.inbound[("shop-a", "SM1")]
        assert ("x" * 4096, ("body_truncated",)) == (
            record.message.body,
            record.message.content.flags,
        )
        assert "MessageSid=SM1&Body=" + "x" * 4097 == record.message.content.raw_form

    def test_control_characters_are_removed_from_the_body_with_a_flag(
        self, inbox: World, queue: MemoryInboundQueue
    ) -> None:
        params = (("MessageSid", "SM1"), ("Body", "Je\x00 prends\x07 le 3\n"))
        receive(inbox, queue, message(body="Je\x00 prends\x07 le 3\n", params=params))

        record = inbox.store.inbound[("shop-a", "SM1")]
        assert "Je prends le 3\n" == record.message.body
        assert ("control_characters_removed",) == record.message.content.flags
        assert {"MessageSid": "SM1", "Body": "Je\ufffd prends\x07 le 3\n"} == dict(
            record.message.content.provider_params
        )
        assert "Body=Je%00+prends%07+le+3%0A" in (record.message.content.raw_form or "")

    def test_a_message_id_over_its_limit_is_a_dead_letter_not_a_record(
        self, inbox: World, queue: MemoryInboundQueue
    ) -> None:
        outcome = receive(inbox, queue, message("SM" + "9" * 127))

        assert isinstance(outcome, Invalid)
        assert ["providerMessageId"] == [e.field for e in outcome.errors]
        (dead_letter,) = inbox.store.dead_letters.values()
        assert ("shop-a", "invalid_payload") == (dead_letter.tenant_id, dead_letter.error_code)
        assert (0, 0) == (len(inbox.store.inbound), len(queue))


class TestReconcileInbox:
    def reconcile(
        self,
        world: World,
        queue: MemoryInboundQueue,
        schedule: RequeueSchedule | None = None,
    ) -> tuple[int, int, int]:
        report = reconcile_inbox(
            uow_factory=world.uow_factory,
            queue=queue,
            clock=world.clock,
            older_than=timedelta(seconds=60),
            limit=100,
            schedule=schedule,
        )
        return (report.found, report.enqueued, report.deferred)

    def test_a_message_left_received_is_enqueued_once_past_the_threshold(
        self, inbox: World, queue: MemoryInboundQueue
    ) -> None:
        queue.available = False
        receive(inbox, queue)
        queue.available = True

        before = self.reconcile(inbox, queue)
        inbox.advance(seconds=61)
        after = self.reconcile(inbox, queue)

        assert ((0, 0, 0), (1, 1, 0)) == (before, after)
        assert 1 == len(queue)

    def test_a_processed_message_is_never_enqueued_again(
        self, inbox: World, queue: MemoryInboundQueue
    ) -> None:
        receive(inbox, queue)
        (_, payload) = queue.pop()  # type: ignore[misc]
        process(inbox, payload)
        inbox.advance(minutes=10)

        assert (0, 0, 0) == self.reconcile(inbox, queue)

    def test_a_pass_stops_at_the_first_queue_failure_and_says_why(
        self, inbox: World, queue: MemoryInboundQueue
    ) -> None:
        queue.available = False
        receive(inbox, queue, message("SM1"))
        receive(inbox, queue, message("SM2"))
        inbox.advance(seconds=61)

        report = reconcile_inbox(
            uow_factory=inbox.uow_factory,
            queue=queue,
            clock=inbox.clock,
            older_than=timedelta(seconds=60),
            limit=100,
        )

        assert (2, 0) == (report.found, report.enqueued)
        assert report.queue_error is not None

    def test_a_record_enqueued_again_waits_twice_as_long_each_time(
        self, inbox: World, queue: MemoryInboundQueue
    ) -> None:
        queue.available = False
        receive(inbox, queue)
        queue.available = True
        schedule = RequeueSchedule(timedelta(seconds=60), timedelta(minutes=15))
        enqueued_at = []

        for second in range(61, 61 + 400, 10):
            inbox.clock.set(START + timedelta(seconds=second))
            if self.reconcile(inbox, queue, schedule)[1]:
                enqueued_at.append(second)

        assert [61, 121, 241] == enqueued_at


class TestRecordDeliveryReport:
    def report(self, world: World, outbox_id: str, status: str, code: str | None = None) -> object:
        return record_delivery_report(
            tenant_id="shop-a",
            outbox_id=outbox_id,
            status=status,
            error_code=code,
            uow_factory=world.uow_factory,
            clock=world.clock,
        )

    def test_reports_move_forward_and_stale_ones_are_ignored(self, inbox: World) -> None:
        outbox_id = inbox.queue()
        ids = {"tenant_id": "shop-a", "outbox_id": outbox_id}

        outcomes = [self.report(inbox, outbox_id, s) for s in ("sent", "read", "delivered")]

        assert [
            DeliveryRecorded(status=S.SENT, **ids),
            DeliveryRecorded(status=S.READ, **ids),
            DeliveryIgnored(reason="stale", **ids),
        ] == outcomes

    def test_an_unknown_status_or_message_is_ignored_and_says_which(self, inbox: World) -> None:
        outbox_id = inbox.queue()

        assert "unknown_status" == self.report(inbox, outbox_id, "bogus").reason  # type: ignore[attr-defined]
        assert "unknown_message" == self.report(inbox, "nope", "sent").reason  # type: ignore[attr-defined]

    def test_a_failure_keeps_the_providers_code_and_a_later_read_keeps_it_too(
        self, inbox: World
    ) -> None:
        outbox_id = inbox.queue()

        self.report(inbox, outbox_id, "failed", "30008")
        failed = inbox.store.deliveries[outbox_id]
        outcome = self.report(inbox, outbox_id, "read")

        assert DeliveryReport(status=S.FAILED, updated_at=START, error_code="30008") == failed
        assert (
            DeliveryRecorded(
                tenant_id="shop-a", outbox_id=outbox_id, status=S.READ, error_code="30008"
            )
            == outcome
        )
