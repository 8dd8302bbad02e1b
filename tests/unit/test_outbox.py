"""The outbox (SPEC §3 "Outbox"): queue_outbound_message writes a pending row; one cycle of the
production sender (``OutboxSender.run_once``) claims, sends and records, retrying 1, 2, 4, 8 s and
dead-lettering on the 5th failure."""

from __future__ import annotations

from datetime import timedelta

import pytest

from adapters.simulated.provider import SimulatedMessagingProvider
from application.outbox import (
    DEFAULT_LEASE,
    Attempt,
    BatchReport,
    claim_due_messages,
    record_outcomes,
)
from domain.dead_letters import DeadLetterSource
from domain.errors import InvalidPhoneNumber, UnknownTenant
from domain.outbox import LEASE_EXPIRED_CODE, OutboxStatus
from domain.retry import RetryPolicy
from ports.messaging import SendReceipt
from tests.unit.builders import (
    CLIENT_PHONE,
    OK,
    START,
    ScriptedProvider,
    World,
    client,
    permanent,
    transient,
)

ONE_MS = timedelta(milliseconds=1)


def report(**counts: int) -> BatchReport:
    return BatchReport(**{"claimed": 0, "sent": 0, "retried": 0, "dead": 0, "lost": 0, **counts})


@pytest.fixture
def outbox(world: World) -> World:
    world.tenant("shop-a", whatsapp_number="+33180808080")
    world.tenant("shop-us", region="US")
    return world


class TestQueueingAMessage:
    def test_a_queued_message_is_pending_and_due_at_once(self, outbox: World) -> None:
        message_id = outbox.queue(to="06 98 76 54 32", body="Thanks for your order")

        message = outbox.outbox(message_id)
        assert (
            "shop-a",
            "+33698765432",
            "Thanks for your order",
            OutboxStatus.PENDING,
            0,
            START,
            "+33180808080",
        ) == (
            message.tenant_id,
            message.to_phone,
            message.body,
            message.status,
            message.attempts,
            message.next_attempt_at,
            message.from_phone,
        )

    def test_the_recipient_is_read_with_the_tenants_region(self, outbox: World) -> None:
        message_id = outbox.queue(to="(415) 555-2671", tenant_id="shop-us")

        assert "+14155552671" == outbox.outbox(message_id).to_phone

    def test_an_unknown_tenant_is_refused_and_nothing_is_written(self, outbox: World) -> None:
        with pytest.raises(UnknownTenant):
            outbox.queue(tenant_id="shop-zz")

        assert {} == outbox.store.outbox

    def test_an_invalid_phone_is_refused_and_nothing_is_written(self, outbox: World) -> None:
        with pytest.raises(InvalidPhoneNumber):
            outbox.queue(to="0612345678", tenant_id="shop-us")

        assert {} == outbox.store.outbox

    def test_an_oversize_body_is_refused(self, outbox: World) -> None:
        with pytest.raises(ValueError, match="4096"):
            outbox.queue(body="x" * 4097)

        assert {} == outbox.store.outbox


class TestSendingDueMessages:
    def test_a_sent_message_records_the_provider_id_and_an_event(self, outbox: World) -> None:
        message_id = outbox.queue()
        provider = ScriptedProvider(OK)

        batch = outbox.send_due(provider)

        message = outbox.outbox(message_id)
        assert report(claimed=1, sent=1) == batch
        assert (OutboxStatus.SENT, "SM0001", START, 1, None) == (
            message.status,
            message.provider_message_id,
            message.sent_at,
            message.attempts,
            message.locked_until,
        )
        [event] = outbox.events("message.sent")
        assert (message_id, {"providerMessageId": "SM0001", "attempts": 1}) == (
            event.subject_id,
            event.payload,
        )

    def test_the_provider_gets_the_message_from_the_tenants_number(self, outbox: World) -> None:
        message_id = outbox.queue(body="Paid!")
        provider = ScriptedProvider(OK)

        outbox.send_due(provider)

        [request] = provider.requests
        assert (message_id, "shop-a", CLIENT_PHONE, "Paid!", "+33180808080") == (
            request.outbox_id,
            request.tenant_id,
            request.to_phone,
            request.body,
            request.from_phone,
        )

    def test_a_sent_message_is_never_sent_again(self, outbox: World) -> None:
        outbox.queue()
        provider = ScriptedProvider(OK)
        outbox.send_due(provider)
        outbox.advance(hours=1)

        assert report() == outbox.send_due(provider)
        assert 1 == len(provider.requests)

    def test_nothing_due_means_nothing_claimed(self, outbox: World) -> None:
        assert report() == outbox.send_due(ScriptedProvider())

    def test_the_simulated_provider_without_failures_sends_everything(self, outbox: World) -> None:
        ids = [outbox.queue(to=client(n), body=f"message {n}") for n in range(5)]
        provider = SimulatedMessagingProvider(seed=7)

        outbox.send_due(provider)

        assert [OutboxStatus.SENT] * 5 == [outbox.outbox(i).status for i in ids]
        assert sorted(ids) == sorted(r.outbox_id for r in provider.sent)


class TestTheRetrySchedule:
    def test_transient_failures_are_retried_after_1_2_4_8_seconds_then_dead(
        self, outbox: World
    ) -> None:
        message_id = outbox.queue()
        provider = ScriptedProvider(*[transient("20500")] * 5)
        waits = []

        for attempt in range(1, 5):
            assert report(claimed=1, retried=1) == outbox.send_due(provider)
            message = outbox.outbox(message_id)
            assert (OutboxStatus.FAILED, attempt) == (message.status, message.attempts)
            wait = message.next_attempt_at - outbox.now
            waits.append(wait)
            outbox.advance(seconds=wait.total_seconds() - 0.001)
            assert report() == outbox.send_due(provider), "due again too early"
            outbox.advance(milliseconds=1)

        assert report(claimed=1, dead=1) == outbox.send_due(provider)
        assert [timedelta(seconds=s) for s in (1, 2, 4, 8)] == waits
        message = outbox.outbox(message_id)
        assert (OutboxStatus.DEAD, 5, "20500") == (
            message.status,
            message.attempts,
            message.last_error_code,
        )
        assert 5 == len(provider.requests)

    def test_each_retry_is_recorded_with_an_event(self, outbox: World) -> None:
        message_id = outbox.queue()
        outbox.send_due(ScriptedProvider(transient("20429")))

        [event] = outbox.events("message.retry_scheduled")
        assert (message_id, "shop-a") == (event.subject_id, event.tenant_id)
        assert {
            "attempts": 1,
            "nextAttemptAt": (START + timedelta(seconds=1)).isoformat(),
            "error": "transient 20429",
            "errorCode": "20429",
            "rateLimited": False,
        } == event.payload

    def test_the_fifth_transient_failure_dead_letters_the_message(self, outbox: World) -> None:
        message_id = outbox.queue()
        provider = ScriptedProvider(*[transient()] * 5)
        for _ in range(5):
            outbox.send_due(provider)
            outbox.advance(seconds=30)

        [dead] = outbox.store.dead_letters.values()
        assert (
            "shop-a",
            DeadLetterSource.MESSAGES_OUT,
            message_id,
            5,
            "30001",
            "transient 30001",
        ) == (
            dead.tenant_id,
            dead.source,
            dead.source_id,
            dead.attempts,
            dead.error_code,
            dead.error,
        )
        assert {
            "outboxId": message_id,
            "tenantId": "shop-a",
            "to": CLIENT_PHONE,
            "body": "Paid!",
            "correlationId": outbox.outbox(message_id).correlation_id,
        } == dead.payload
        [event] = outbox.events("message.dead_lettered")
        assert {
            "attempts": 5,
            "error": "transient 30001",
            "errorCode": "30001",
            "permanent": False,
        } == event.payload
        assert ["message.retry_scheduled"] * 4 + ["message.dead_lettered"] == outbox.event_types()

    def test_a_dead_message_is_never_claimed_again(self, outbox: World) -> None:
        outbox.queue()
        outbox.send_due(ScriptedProvider(permanent()))
        outbox.advance(hours=1)

        assert report() == outbox.send_due(ScriptedProvider())

    def test_a_success_after_failures_ends_sent(self, outbox: World) -> None:
        message_id = outbox.queue()
        provider = ScriptedProvider(transient(), transient(), OK)
        for _ in range(3):
            outbox.send_due(provider)
            outbox.advance(seconds=2)

        message = outbox.outbox(message_id)
        assert (OutboxStatus.SENT, 3, None, None) == (
            message.status,
            message.attempts,
            message.last_error,
            message.last_error_code,
        )
        assert {} == outbox.store.dead_letters

    def test_a_longer_retry_after_is_honoured(self, outbox: World) -> None:
        message_id = outbox.queue()

        outbox.send_due(ScriptedProvider(transient("20429", retry_after=timedelta(seconds=12))))

        assert START + timedelta(seconds=12) == outbox.outbox(message_id).next_attempt_at

    def test_a_retry_after_beyond_30_seconds_is_honoured(self, outbox: World) -> None:
        message_id = outbox.queue()

        outbox.send_due(ScriptedProvider(transient("20429", retry_after=timedelta(hours=1))))

        assert START + timedelta(hours=1) == outbox.outbox(message_id).next_attempt_at

    def test_a_raised_maximum_reaches_the_16_second_step_then_the_cap(self, outbox: World) -> None:
        message_id = outbox.queue()
        provider = ScriptedProvider(*[transient()] * 7)
        policy = RetryPolicy(max_attempts=7)
        waits = []
        for _ in range(6):
            outbox.send_due(provider, policy=policy)
            waits.append(outbox.outbox(message_id).next_attempt_at - outbox.now)
            outbox.advance(seconds=30)
        outbox.send_due(provider, policy=policy)

        assert [timedelta(seconds=s) for s in (1, 2, 4, 8, 16, 30)] == waits
        assert (OutboxStatus.DEAD, 7) == (
            outbox.outbox(message_id).status,
            outbox.outbox(message_id).attempts,
        )


class TestPermanentFailures:
    @pytest.mark.parametrize("code", ["21211", "21610", "63016", "20003"])
    def test_a_permanent_failure_is_dead_at_once_with_the_providers_code(
        self, outbox: World, code: str
    ) -> None:
        message_id = outbox.queue()

        batch = outbox.send_due(ScriptedProvider(permanent(code)))

        message = outbox.outbox(message_id)
        assert report(claimed=1, dead=1) == batch
        assert (OutboxStatus.DEAD, 1, code) == (
            message.status,
            message.attempts,
            message.last_error_code,
        )
        [dead] = outbox.store.dead_letters.values()
        assert (code, 1) == (dead.error_code, dead.attempts)
        [event] = outbox.events("message.dead_lettered")
        assert (True, code) == (event.payload["permanent"], event.payload["errorCode"])
        assert [] == outbox.events("message.retry_scheduled")

    def test_a_permanent_failure_after_transient_ones_is_dead_at_once(self, outbox: World) -> None:
        message_id = outbox.queue()
        provider = ScriptedProvider(transient(), permanent("21610"))
        outbox.send_due(provider)
        outbox.advance(seconds=1)

        outbox.send_due(provider)

        assert (OutboxStatus.DEAD, 2, "21610") == (
            outbox.outbox(message_id).status,
            outbox.outbox(message_id).attempts,
            outbox.outbox(message_id).last_error_code,
        )

    def test_an_untranslated_provider_error_is_retried_as_transient(self, outbox: World) -> None:
        class Broken(ScriptedProvider):
            def send(self, request):  # type: ignore[no-untyped-def]
                raise RuntimeError("socket closed")

        message_id = outbox.queue()

        outbox.send_due(Broken())

        message = outbox.outbox(message_id)
        assert (OutboxStatus.FAILED, "RuntimeError: socket closed") == (
            message.status,
            message.last_error,
        )


class TestLeases:
    def claim_and_die(self, world: World) -> None:
        """A sender claims the due messages and dies before recording anything."""
        claim_due_messages(
            uow_factory=world.uow_factory, clock=world.clock, lease=DEFAULT_LEASE, limit=10
        )

    def test_a_claimed_message_is_sending_and_locked_for_the_lease(self, outbox: World) -> None:
        message_id = outbox.queue()

        self.claim_and_die(outbox)

        message = outbox.outbox(message_id)
        assert (OutboxStatus.SENDING, 1, START + DEFAULT_LEASE) == (
            message.status,
            message.attempts,
            message.locked_until,
        )

    def test_a_sending_message_is_not_due_before_its_lease_passes(self, outbox: World) -> None:
        outbox.queue()
        self.claim_and_die(outbox)
        outbox.advance(seconds=DEFAULT_LEASE.total_seconds())

        assert report() == outbox.send_due(ScriptedProvider())

    def test_a_sending_message_whose_lease_passed_is_claimed_again(self, outbox: World) -> None:
        message_id = outbox.queue()
        self.claim_and_die(outbox)
        outbox.advance(seconds=DEFAULT_LEASE.total_seconds() + 1)
        provider = ScriptedProvider(OK)

        batch = outbox.send_due(provider)

        assert report(claimed=1, sent=1) == batch
        assert (OutboxStatus.SENT, 2) == (
            outbox.outbox(message_id).status,
            outbox.outbox(message_id).attempts,
        )
        assert [message_id] == [r.outbox_id for r in provider.requests]

    def test_a_claim_past_the_last_attempt_dead_letters_without_sending(
        self, outbox: World
    ) -> None:
        message_id = outbox.queue()
        failing = ScriptedProvider(*[transient()] * 4)
        for _ in range(4):
            outbox.send_due(failing)
            outbox.advance(seconds=8)
        self.claim_and_die(outbox)  # the sender of attempt 5 dies mid-send
        assert 5 == outbox.outbox(message_id).attempts
        outbox.advance(seconds=DEFAULT_LEASE.total_seconds() + 1)
        provider = ScriptedProvider(OK)

        batch = outbox.send_due(provider)

        assert report(claimed=1, dead=1) == batch
        assert [] == provider.requests
        message = outbox.outbox(message_id)
        assert (OutboxStatus.DEAD, 5, LEASE_EXPIRED_CODE) == (
            message.status,
            message.attempts,
            message.last_error_code,
        )
        [dead] = outbox.store.dead_letters.values()
        assert (message_id, 5, LEASE_EXPIRED_CODE) == (
            dead.source_id,
            dead.attempts,
            dead.error_code,
        )
        assert 1 == len(outbox.events("message.dead_lettered"))

    def test_a_late_outcome_of_a_superseded_claim_is_not_stored(self, outbox: World) -> None:
        message_id = outbox.queue()
        [slow] = claim_due_messages(
            uow_factory=outbox.uow_factory, clock=outbox.clock, lease=DEFAULT_LEASE, limit=10
        )
        outbox.advance(seconds=DEFAULT_LEASE.total_seconds() + 1)
        outbox.send_due(ScriptedProvider(OK))

        late = record_outcomes(
            [Attempt(slow, transient())],
            uow_factory=outbox.uow_factory,
            clock=outbox.clock,
            ids=outbox.ids,
            policy=outbox.policy,
        )

        assert report(claimed=1, lost=1) == late
        message = outbox.outbox(message_id)
        assert (OutboxStatus.SENT, 2, "SM0001") == (
            message.status,
            message.attempts,
            message.provider_message_id,
        )
        assert ["message.sent"] == outbox.event_types()

    def test_a_late_outcome_while_the_new_claim_is_in_flight_is_not_stored(
        self, outbox: World
    ) -> None:
        message_id = outbox.queue()
        [slow] = claim_due_messages(
            uow_factory=outbox.uow_factory, clock=outbox.clock, lease=DEFAULT_LEASE, limit=10
        )
        outbox.advance(seconds=DEFAULT_LEASE.total_seconds() + 1)
        claim_due_messages(
            uow_factory=outbox.uow_factory, clock=outbox.clock, lease=DEFAULT_LEASE, limit=10
        )

        late = record_outcomes(
            [Attempt(slow, SendReceipt("SM-late"))],
            uow_factory=outbox.uow_factory,
            clock=outbox.clock,
            ids=outbox.ids,
            policy=outbox.policy,
        )

        assert 1 == late.lost
        message = outbox.outbox(message_id)
        assert (OutboxStatus.SENDING, 2, None) == (
            message.status,
            message.attempts,
            message.provider_message_id,
        )


class TestClaimFairness:
    def test_a_tenant_with_one_due_message_is_served_in_the_first_batch(
        self, outbox: World
    ) -> None:
        outbox.tenant("shop-b")
        for n in range(1000):
            outbox.queue(to=client(n), body=f"backlog {n}")
        outbox.advance(seconds=1)
        lonely = outbox.queue(tenant_id="shop-b")
        provider = ScriptedProvider()

        outbox.send_due(provider, batch_size=10)

        assert lonely in [r.outbox_id for r in provider.requests]
        assert 10 == len(provider.requests)

    def test_a_batch_is_never_larger_than_the_batch_size(self, outbox: World) -> None:
        for n in range(25):
            outbox.queue(to=client(n), body=f"m{n}")

        batches = [outbox.send_due(ScriptedProvider(), batch_size=10).claimed for _ in range(4)]

        assert [10, 10, 5, 0] == batches

    def test_the_oldest_due_messages_of_a_tenant_go_first(self, outbox: World) -> None:
        first = [outbox.queue(to=client(n), body="early") for n in range(3)]
        outbox.advance(seconds=1)
        outbox.queue(to=client(3), body="late")
        provider = ScriptedProvider()

        outbox.send_due(provider, batch_size=3)

        assert first == [r.outbox_id for r in provider.requests]
