"""Every inbound message ends in one terminal state, and never loops (issue 11 §1, ADR 0010):
rejection is idempotent per (tenantId, providerMessageId), the reconciler only re-enqueues
records that are not terminal, and no number of old records can starve a newer one."""

from __future__ import annotations

from datetime import timedelta

import pytest

from adapters.memory.queue import MemoryInboundQueue
from application.dead_letters import replay_dead_letter
from application.inbound import Processed, Rejected, RejectReason, reject_inbound
from application.inbox import RequeueSchedule, receive_inbound_message, reconcile_inbox
from application.webhook_input import WebhookMessage
from domain.inbound import InboundStatus
from tests.unit.builders import CLIENT_PHONE, World

SHOP_NUMBER = "+14155238886"
INVALID_SENDER = "whatsapp:12"
"""A sender no normalisation can read (the number WhatsApp delivers always can, ADR 0012)."""


@pytest.fixture
def inbox(world: World) -> World:
    world.tenant("shop-a", whatsapp_number=SHOP_NUMBER)
    return world


@pytest.fixture
def queue() -> MemoryInboundQueue:
    return MemoryInboundQueue()


def received(
    world: World, queue: MemoryInboundQueue, sid: str, sender: str = f"whatsapp:{CLIENT_PHONE}"
) -> dict[str, object]:
    """Receive a message through the webhook's use case; returns the payload it enqueued."""
    receive_inbound_message(
        WebhookMessage(
            provider_message_id=sid,
            from_address=sender,
            to_address=f"whatsapp:{SHOP_NUMBER}",
            body="Je prends le 3 !",
        ),
        correlation_id=None,
        uow_factory=world.uow_factory,
        queue=queue,
        clock=world.clock,
        ids=world.ids,
    )
    (_, payload) = queue.pop()  # type: ignore[misc]
    return payload  # type: ignore[no-any-return]


def reconcile(
    world: World, queue: MemoryInboundQueue, schedule: RequeueSchedule | None, limit: int = 100
) -> int:
    return reconcile_inbox(
        uow_factory=world.uow_factory,
        queue=queue,
        clock=world.clock,
        older_than=timedelta(seconds=60),
        limit=limit,
        schedule=schedule,
    ).enqueued


class TestARejectedMessageIsTerminal:
    def test_a_message_rejected_by_its_job_ends_rejected_with_its_reason_and_one_dead_letter(
        self, inbox: World, queue: MemoryInboundQueue
    ) -> None:
        payload = received(inbox, queue, "SM1", INVALID_SENDER)

        outcome = inbox.receive(payload)

        assert isinstance(outcome, Rejected)
        record = inbox.store.inbound[("shop-a", "SM1")]
        assert (InboundStatus.REJECTED, "invalid_phone", outcome.dead_letter_id) == (
            record.status,
            record.reject_reason,
            record.dead_letter_id,
        )
        assert [outcome.dead_letter_id] == list(inbox.store.dead_letters)
        assert ["inbound.rejected"] == [e.event_type for e in inbox.store.events]

    def test_the_job_run_six_times_writes_one_dead_letter_and_one_event(
        self, inbox: World, queue: MemoryInboundQueue
    ) -> None:
        payload = received(inbox, queue, "SM1", INVALID_SENDER)

        outcomes = [inbox.receive(payload) for _ in range(6)]

        assert 1 == len(inbox.store.dead_letters)
        assert 1 == len([e for e in inbox.store.events if e.event_type == "inbound.rejected"])
        (dead_letter_id,) = inbox.store.dead_letters
        assert {dead_letter_id} == {o.dead_letter_id for o in outcomes}  # type: ignore[union-attr]
        assert [False] + [True] * 5 == [o.duplicate for o in outcomes]

    def test_a_rejected_message_is_never_enqueued_again_by_the_reconciler(
        self, inbox: World, queue: MemoryInboundQueue
    ) -> None:
        inbox.receive(received(inbox, queue, "SM1", INVALID_SENDER))
        schedule = RequeueSchedule(timedelta(seconds=60), timedelta(minutes=15))

        passes = []
        for _ in range(6):
            inbox.advance(minutes=20)
            passes.append(reconcile(inbox, queue, schedule))

        assert [0] * 6 == passes
        assert 1 == len(inbox.store.dead_letters)

    def test_a_job_that_exhausted_its_retries_ends_its_record_rejected_once(
        self, inbox: World, queue: MemoryInboundQueue
    ) -> None:
        payload = received(inbox, queue, "SM1")

        for _ in range(3):  # RQ's failure callback, run again by a restart or a second worker
            reject_inbound(
                payload,
                RejectReason.RETRIES_EXHAUSTED,
                "OperationalError: database down",
                uow_factory=inbox.uow_factory,
                clock=inbox.clock,
                ids=inbox.ids,
                attempts=5,
            )
        inbox.advance(minutes=5)

        record = inbox.store.inbound[("shop-a", "SM1")]
        assert (InboundStatus.REJECTED, "retries_exhausted") == (
            record.status,
            record.reject_reason,
        )
        assert 1 == len(inbox.store.dead_letters)
        assert 0 == reconcile(inbox, queue, None)

    def test_a_record_left_received_with_an_open_dead_letter_is_ended_on_that_dead_letter(
        self, inbox: World, queue: MemoryInboundQueue
    ) -> None:
        payload = received(inbox, queue, "SM1", INVALID_SENDER)
        first = inbox.receive(payload)
        record = inbox.store.inbound[("shop-a", "SM1")]
        record.status, record.reject_reason, record.dead_letter_id = (
            InboundStatus.RECEIVED,
            None,
            None,
        )  # what a version before issue 11 left behind

        again = inbox.receive(payload)

        assert isinstance(first, Rejected)
        assert Rejected("invalid_phone", first.error, first.dead_letter_id, duplicate=True) == again
        stored = inbox.store.inbound[("shop-a", "SM1")]
        assert (InboundStatus.REJECTED, first.dead_letter_id) == (
            stored.status,
            stored.dead_letter_id,
        )
        assert 1 == len(inbox.store.dead_letters)

    def test_rejecting_a_processed_message_records_nothing_and_returns_its_result(
        self, inbox: World, queue: MemoryInboundQueue
    ) -> None:
        payload = received(inbox, queue, "SM1")
        inbox.receive(payload)

        outcome = reject_inbound(
            payload,
            RejectReason.RETRIES_EXHAUSTED,
            "late failure callback",
            uow_factory=inbox.uow_factory,
            clock=inbox.clock,
            ids=inbox.ids,
        )

        assert isinstance(outcome, Processed)
        assert outcome.duplicate
        assert {} == inbox.store.dead_letters


class TestReplay:
    def test_a_replayed_rejection_is_processed_again_and_a_new_rejection_is_a_new_dead_letter(
        self, inbox: World, queue: MemoryInboundQueue
    ) -> None:
        payload = received(inbox, queue, "SM1", INVALID_SENDER)
        first = inbox.receive(payload)
        assert isinstance(first, Rejected)

        replay_dead_letter(
            first.dead_letter_id, uow_factory=inbox.uow_factory, queue=queue, clock=inbox.clock
        )
        (_, replayed) = queue.pop()  # type: ignore[misc]
        second = inbox.receive(replayed)

        assert isinstance(second, Rejected)
        assert (False, 2) == (second.duplicate, len(inbox.store.dead_letters))
        record = inbox.store.inbound[("shop-a", "SM1")]
        assert (InboundStatus.REJECTED, second.dead_letter_id) == (
            record.status,
            record.dead_letter_id,
        )


class TestTheReconcilerCannotBeStarved:
    def test_a_new_message_is_enqueued_however_many_older_ones_wait(
        self, inbox: World, queue: MemoryInboundQueue
    ) -> None:
        queue.available = False
        for n in range(250):
            received_without_queue(inbox, queue, f"SM-old-{n:03d}")
        schedule = RequeueSchedule(timedelta(minutes=10), timedelta(minutes=15))
        queue.available = True
        inbox.advance(seconds=61)
        assert 100 == reconcile(inbox, queue, schedule)  # the pass's budget
        assert 100 == reconcile(inbox, queue, schedule)  # goes on where it stopped
        assert 50 == reconcile(inbox, queue, schedule)
        while queue.pop() is not None:
            pass
        queue.available = False
        received_without_queue(inbox, queue, "SM-new")
        queue.available = True
        inbox.advance(seconds=61)

        enqueued = reconcile(inbox, queue, schedule)

        assert 1 == enqueued  # the 250 older ones wait for their backoff; the new one is reached
        (_, payload) = queue.pop()  # type: ignore[misc]
        assert "SM-new" == payload["providerMessageId"]


def received_without_queue(world: World, queue: MemoryInboundQueue, sid: str) -> None:
    receive_inbound_message(
        WebhookMessage(
            provider_message_id=sid,
            from_address=f"whatsapp:{CLIENT_PHONE}",
            to_address=f"whatsapp:{SHOP_NUMBER}",
            body="Je prends le 3 !",
        ),
        correlation_id=None,
        uow_factory=world.uow_factory,
        queue=queue,
        clock=world.clock,
        ids=world.ids,
    )


class TestAMessageToANumberNoTenantHad:
    def test_once_the_tenant_is_added_its_dead_letter_replays_into_that_tenants_inbox(
        self, inbox: World, queue: MemoryInboundQueue
    ) -> None:
        message = WebhookMessage(
            provider_message_id="SM-lost",
            from_address=f"whatsapp:{CLIENT_PHONE}",
            to_address="whatsapp:+14155550123",
            body="Je prends le 7",
        )
        outcome = receive_inbound_message(
            message,
            correlation_id=None,
            uow_factory=inbox.uow_factory,
            queue=queue,
            clock=inbox.clock,
            ids=inbox.ids,
        )
        (dead_letter_id,) = inbox.store.dead_letters
        too_early = replay_dead_letter(
            dead_letter_id, uow_factory=inbox.uow_factory, queue=queue, clock=inbox.clock
        )
        inbox.tenant("shop-b", whatsapp_number="+14155550123")

        replayed = replay_dead_letter(
            dead_letter_id, uow_factory=inbox.uow_factory, queue=queue, clock=inbox.clock
        )
        (_, payload) = queue.pop()  # type: ignore[misc]
        result = inbox.receive(payload)

        assert "unknown_number" == inbox.store.dead_letters[dead_letter_id].error_code
        assert outcome.dead_letter_id == dead_letter_id  # type: ignore[union-attr]
        assert ("failed", "enqueued") == (too_early.status.value, replayed.status.value)
        assert isinstance(result, Processed)
        record = inbox.store.inbound[("shop-b", "SM-lost")]
        assert (InboundStatus.PROCESSED, "Je prends le 7") == (record.status, record.message.body)
