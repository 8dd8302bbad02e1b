"""OutboxRepository contract: due claims (fair across tenants), fenced outcomes, requeue."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.outbox import DeadLettered, DeliveryFailure, OutboxMessage, OutboxStatus
from domain.retry import RetryPolicy
from ports.repositories import AlreadyExists
from ports.unit_of_work import UnitOfWorkFactory
from tests.contract.builders import T0, at, outbox, seed

LEASE = timedelta(seconds=60)
POLICY = RetryPolicy()


@pytest.fixture
def shops(uow_factory: UnitOfWorkFactory) -> UnitOfWorkFactory:
    seed(uow_factory, "shop-a", "shop-b", "shop-c")
    return uow_factory


def phone(n: int) -> str:
    """A recipient of its own: messages to different recipients are never ordered (ADR 0020)."""
    return f"+3361000{n:04d}"


def write(uow_factory: UnitOfWorkFactory, *messages: OutboxMessage) -> None:
    with uow_factory() as uow:
        for message in messages:
            uow.outbox.add(message)
        uow.commit()


def claim(uow_factory: UnitOfWorkFactory, now: object = T0, limit: int = 10) -> list[OutboxMessage]:
    with uow_factory() as uow:
        claimed = list(uow.outbox.claim_due(now, LEASE, limit))  # type: ignore[arg-type]
        uow.commit()
    return claimed


def get(uow_factory: UnitOfWorkFactory, tenant_id: str, message_id: str) -> OutboxMessage:
    with uow_factory() as uow:
        message = uow.outbox.get(tenant_id, message_id)
    assert message is not None
    return message


class TestWriting:
    def test_a_written_message_reads_back_pending_and_due_at_once(
        self, shops: UnitOfWorkFactory
    ) -> None:
        write(shops, outbox("shop-a", "m1"))

        stored = get(shops, "shop-a", "m1")

        assert outbox("shop-a", "m1") == stored
        assert (OutboxStatus.PENDING, 0, T0) == (
            stored.status,
            stored.attempts,
            stored.next_attempt_at,
        )

    def test_the_same_id_twice_already_exists(self, shops: UnitOfWorkFactory) -> None:
        write(shops, outbox("shop-a", "m1"))

        with shops() as uow, pytest.raises(AlreadyExists):
            uow.outbox.add(outbox("shop-a", "m1"))


class TestClaimDue:
    def test_a_claim_moves_due_messages_to_sending_under_a_lease(
        self, shops: UnitOfWorkFactory
    ) -> None:
        write(shops, outbox("shop-a", "m1"))

        (claimed,) = claim(shops, at(5))

        stored = get(shops, "shop-a", "m1")
        assert (OutboxStatus.SENDING, 1, 1, at(5) + LEASE) == (
            claimed.status,
            claimed.attempts,
            claimed.claimed_attempt,
            claimed.locked_until,
        )
        assert claimed == stored

    def test_messages_not_yet_due_are_left_alone(self, shops: UnitOfWorkFactory) -> None:
        write(shops, outbox("shop-a", "later", now=at(30)))

        assert [] == claim(shops, at(10))
        assert OutboxStatus.PENDING == get(shops, "shop-a", "later").status

    def test_a_claimed_message_is_not_claimed_again_while_its_lease_runs(
        self, shops: UnitOfWorkFactory
    ) -> None:
        write(shops, outbox("shop-a", "m1"))
        claim(shops, T0)

        assert [] == claim(shops, T0 + LEASE)

    def test_a_message_whose_lease_passed_is_claimed_again_with_the_next_attempt(
        self, shops: UnitOfWorkFactory
    ) -> None:
        write(shops, outbox("shop-a", "m1"))
        claim(shops, T0)

        (again,) = claim(shops, T0 + LEASE + timedelta(seconds=1))

        assert (2, 2) == (again.attempts, again.claimed_attempt)

    def test_a_failed_message_is_due_at_its_next_attempt(self, shops: UnitOfWorkFactory) -> None:
        write(shops, outbox("shop-a", "m1"))
        (claimed,) = claim(shops, T0)
        claimed.record_failure(DeliveryFailure(transient=True, message="503"), at(1), POLICY, "dl")
        with shops() as uow:
            assert uow.outbox.save_outcome(claimed)
            uow.commit()

        assert [] == claim(shops, at(1.5))
        assert ["m1"] == [m.id for m in claim(shops, at(2))]

    def test_the_oldest_due_messages_are_claimed_first_up_to_the_limit(
        self, shops: UnitOfWorkFactory
    ) -> None:
        write(shops, *(outbox("shop-a", f"m{i}", now=at(10 - i), to=phone(i)) for i in range(5)))

        claimed = claim(shops, at(20), limit=3)

        assert ["m4", "m3", "m2"] == [m.id for m in claimed]

    def test_claims_made_one_after_the_other_are_disjoint(self, shops: UnitOfWorkFactory) -> None:
        write(shops, *(outbox("shop-a", f"m{i:02d}", now=at(i), to=phone(i)) for i in range(25)))

        batches = [claim(shops, at(60), limit=10) for _ in range(4)]

        ids = [m.id for batch in batches for m in batch]
        assert [10, 10, 5, 0] == [len(b) for b in batches]
        assert sorted(ids) == sorted(set(ids))

    def test_a_tenants_backlog_does_not_take_the_whole_batch(
        self, shops: UnitOfWorkFactory
    ) -> None:
        write(shops, *(outbox("shop-a", f"a{i:03d}", now=at(i), to=phone(i)) for i in range(100)))
        write(
            shops,
            outbox("shop-b", "b1", now=at(50), to=phone(1)),
            outbox("shop-b", "b2", now=at(51), to=phone(2)),
        )
        write(shops, outbox("shop-c", "c1", now=at(99)))

        claimed = claim(shops, at(200), limit=6)

        # Round-robin by depth, tenants in the order their oldest message became due.
        assert ["a000", "b1", "c1", "a001", "b2", "a002"] == [m.id for m in claimed]

    def test_an_empty_outbox_claims_nothing(self, shops: UnitOfWorkFactory) -> None:
        assert [] == claim(shops, at(100))


def sent(uow_factory: UnitOfWorkFactory, message: OutboxMessage, when: object = T0) -> None:
    message.mark_sent(f"SM-{message.id}", when)  # type: ignore[arg-type]
    with uow_factory() as uow:
        assert uow.outbox.save_outcome(message)
        uow.commit()


def failed(
    uow_factory: UnitOfWorkFactory, message: OutboxMessage, failure: DeliveryFailure, when: object
) -> None:
    message.record_failure(failure, when, POLICY, f"dl-{message.id}")  # type: ignore[arg-type]
    with uow_factory() as uow:
        assert uow.outbox.save_outcome(message)
        uow.commit()


TRANSIENT = DeliveryFailure(transient=True, message="Twilio HTTP 503", code="20500")
PERMANENT = DeliveryFailure(transient=False, message="blocked", code="21610")


class TestOrderPerRecipient:
    """ADR 0020: one recipient's messages are claimed one at a time, in written order
    (``created_at``, then id); a terminal message (sent, dead) releases the next."""

    def test_a_later_message_to_the_same_recipient_waits_while_the_first_is_pending(
        self, shops: UnitOfWorkFactory
    ) -> None:
        write(shops, *(outbox("shop-a", f"m{i}", now=at(i)) for i in range(3)))

        assert ["m0"] == [m.id for m in claim(shops, at(10))]
        assert [] == claim(shops, at(10))
        assert {OutboxStatus.SENDING: 1, OutboxStatus.PENDING: 2} == count(shops)

    def test_a_sent_message_releases_the_next_one_in_written_order(
        self, shops: UnitOfWorkFactory
    ) -> None:
        write(shops, outbox("shop-a", "m2", now=at(1)), outbox("shop-a", "m1", now=at(2)))
        order = []
        for step in range(3):
            claimed = claim(shops, at(10 + step))
            order.extend(m.id for m in claimed)
            for message in claimed:
                sent(shops, message, at(10 + step))

        assert ["m2", "m1"] == order

    def test_messages_written_at_the_same_instant_go_in_id_order(
        self, shops: UnitOfWorkFactory
    ) -> None:
        write(shops, outbox("shop-a", "m-b"), outbox("shop-a", "m-a"))

        assert ["m-a"] == [m.id for m in claim(shops, at(1))]

    def test_a_dead_message_releases_the_next_one(self, shops: UnitOfWorkFactory) -> None:
        write(shops, outbox("shop-a", "m1", now=at(0)), outbox("shop-a", "m2", now=at(1)))
        (first,) = claim(shops, at(5))

        failed(shops, first, PERMANENT, at(6))

        assert OutboxStatus.DEAD == get(shops, "shop-a", "m1").status
        assert ["m2"] == [m.id for m in claim(shops, at(6))]

    def test_a_head_awaiting_its_retry_holds_back_the_messages_after_it(
        self, shops: UnitOfWorkFactory
    ) -> None:
        write(shops, outbox("shop-a", "m1", now=at(0)), outbox("shop-a", "m2", now=at(1)))
        (first,) = claim(shops, at(5))
        failed(shops, first, TRANSIENT, at(6))  # retry at 7 s; m2 has been due since 1 s

        assert [] == claim(shops, at(6.5))
        assert ["m1"] == [m.id for m in claim(shops, at(7))]

    def test_a_head_whose_lease_passed_is_claimed_again_before_its_successor(
        self, shops: UnitOfWorkFactory
    ) -> None:
        write(shops, outbox("shop-a", "m1", now=at(0)), outbox("shop-a", "m2", now=at(1)))
        claim(shops, at(5))

        again = claim(shops, at(5) + LEASE + timedelta(seconds=1))

        assert [("m1", 2)] == [(m.id, m.attempts) for m in again]

    def test_other_recipients_are_never_held_back(self, shops: UnitOfWorkFactory) -> None:
        # A deep backlog to one customer, written first, then one message each to two others.
        write(shops, *(outbox("shop-a", f"a{i:03d}", now=at(i)) for i in range(60)))
        write(shops, outbox("shop-a", "b1", now=at(100), to=phone(1)))
        write(shops, outbox("shop-a", "c1", now=at(101), to=phone(2)))
        (head,) = claim(shops, at(200), limit=1)

        assert ["b1"] == [m.id for m in claim(shops, at(200), limit=1)]
        assert ["c1"] == [m.id for m in claim(shops, at(200), limit=1)]
        assert [] == claim(shops, at(200))
        assert "a000" == head.id

    def test_the_same_number_in_another_tenant_is_another_recipient(
        self, shops: UnitOfWorkFactory
    ) -> None:
        write(shops, outbox("shop-a", "a1", now=at(0)), outbox("shop-a", "a2", now=at(1)))
        write(shops, outbox("shop-b", "b1", now=at(2)))

        assert ["a1", "b1"] == sorted(m.id for m in claim(shops, at(5)))


def count(uow_factory: UnitOfWorkFactory) -> dict[OutboxStatus, int]:
    with uow_factory() as uow:
        return uow.outbox.count_by_status()


class TestSaveOutcome:
    def test_a_sent_outcome_is_stored_with_its_event(self, shops: UnitOfWorkFactory) -> None:
        write(shops, outbox("shop-a", "m1"))
        (claimed,) = claim(shops, T0)
        claimed.mark_sent("SMxyz", at(1))

        with shops() as uow:
            assert uow.outbox.save_outcome(claimed)
            uow.commit()

        stored = get(shops, "shop-a", "m1")
        with shops() as uow:
            events = uow.events.list(tenant_id="shop-a")
        assert (OutboxStatus.SENT, "SMxyz", at(1), None) == (
            stored.status,
            stored.provider_message_id,
            stored.sent_at,
            stored.locked_until,
        )
        assert [
            (
                "message.sent",
                "shop-a",
                "m1",
                {"providerMessageId": "SMxyz", "attempts": 1},
                "corr-m1",
            )
        ] == list(events)

    def test_an_outcome_is_fenced_by_the_attempt_it_was_claimed_with(
        self, shops: UnitOfWorkFactory
    ) -> None:
        write(shops, outbox("shop-a", "m1"))
        (slow,) = claim(shops, T0)
        (takeover,) = claim(shops, T0 + LEASE + timedelta(seconds=1))
        slow.mark_sent("SMslow", at(90))

        with shops() as uow:
            assert not uow.outbox.save_outcome(slow)
            uow.commit()

        stored = get(shops, "shop-a", "m1")
        with shops() as uow:
            assert [] == list(uow.events.list(tenant_id="shop-a"))
        assert (OutboxStatus.SENDING, 2, None) == (
            stored.status,
            stored.attempts,
            stored.provider_message_id,
        )
        assert 2 == takeover.claimed_attempt

    def test_a_sender_of_an_older_claim_cannot_store_after_a_replay_restarted_the_attempts(
        self, shops: UnitOfWorkFactory
    ) -> None:
        write(shops, outbox("shop-a", "m1"))
        (stale,) = claim(shops, T0)
        later = T0 + LEASE + timedelta(seconds=1)
        (takeover,) = claim(shops, later)
        takeover.record_failure(
            DeliveryFailure(transient=False, message="blocked", code="21610"), later, POLICY, "dl"
        )
        with shops() as uow:
            assert uow.outbox.save_outcome(takeover)
            uow.commit()
        dead = get(shops, "shop-a", "m1")
        dead.requeue(at(200))
        with shops() as uow:
            assert uow.outbox.requeue(dead)
            uow.commit()
        (replayed,) = claim(shops, at(200))
        stale.mark_sent("SMstale", at(201))

        with shops() as uow:
            assert not uow.outbox.save_outcome(stale)
            uow.commit()

        stored = get(shops, "shop-a", "m1")
        assert (1, 1) == (stale.claimed_attempt, replayed.claimed_attempt)
        assert (OutboxStatus.SENDING, None) == (stored.status, stored.provider_message_id)

    def test_an_unclaimed_copy_cannot_store_an_outcome(self, shops: UnitOfWorkFactory) -> None:
        write(shops, outbox("shop-a", "m1"))
        claim(shops, T0)
        copy = get(shops, "shop-a", "m1")
        copy.mark_sent("SMx", at(1))

        with shops() as uow:
            assert not uow.outbox.save_outcome(copy)

    def test_a_dead_outcome_stores_the_message_and_its_dead_letter_together(
        self, shops: UnitOfWorkFactory
    ) -> None:
        write(shops, outbox("shop-a", "m1"))
        (claimed,) = claim(shops, T0)
        outcome = claimed.record_failure(
            DeliveryFailure(transient=False, message="invalid number", code="21211"),
            at(1),
            POLICY,
            "dl-1",
        )
        assert isinstance(outcome, DeadLettered)

        with shops() as uow:
            assert uow.outbox.save_outcome(claimed)
            uow.dead_letters.add(outcome.dead_letter)
            uow.commit()

        with shops() as uow:
            dead_letter = uow.dead_letters.get("dl-1")
            events = [e[0] for e in uow.events.list(tenant_id="shop-a")]
        assert OutboxStatus.DEAD == get(shops, "shop-a", "m1").status
        assert outcome.dead_letter == dead_letter
        assert ["message.dead_lettered"] == events


class TestSaveOutcomes:
    def test_a_group_of_outcomes_is_stored_in_order_and_a_superseded_one_is_refused(
        self, shops: UnitOfWorkFactory
    ) -> None:
        write(shops, outbox("shop-a", "m3"))
        (slow,) = claim(shops, T0)
        later = T0 + LEASE + timedelta(seconds=1)
        (takeover,) = claim(shops, later)
        write(shops, outbox("shop-a", "m1", to=phone(1)), outbox("shop-b", "m2"))
        sent, retried = sorted(claim(shops, later), key=lambda m: m.id)
        assert ("m1", "m2", "m3", "m3") == (sent.id, retried.id, slow.id, takeover.id)
        sent.mark_sent("SM1", at(1))
        retried.record_failure(
            DeliveryFailure(transient=True, message="busy", code="20429"), at(1), POLICY, "dl-x"
        )
        slow.mark_sent("SM3", at(90))

        with shops() as uow:
            saved = uow.outbox.save_outcomes([sent, retried, slow])
            uow.commit()

        assert [True, True, False] == saved
        assert (OutboxStatus.SENT, "SM1", at(1)) == (
            get(shops, "shop-a", "m1").status,
            get(shops, "shop-a", "m1").provider_message_id,
            get(shops, "shop-a", "m1").sent_at,
        )
        stored_retry = get(shops, "shop-b", "m2")
        assert (OutboxStatus.FAILED, at(2), "20429", None) == (
            stored_retry.status,
            stored_retry.next_attempt_at,
            stored_retry.last_error_code,
            stored_retry.locked_until,
        )
        assert (OutboxStatus.SENDING, None) == (
            get(shops, "shop-a", "m3").status,
            get(shops, "shop-a", "m3").provider_message_id,
        )
        with shops() as uow:
            events_a = [(e[0], e[2]) for e in uow.events.list(tenant_id="shop-a")]
            events_b = [(e[0], e[2]) for e in uow.events.list(tenant_id="shop-b")]
        assert [("message.sent", "m1")] == events_a
        assert [("message.retry_scheduled", "m2")] == events_b

    def test_nothing_is_stored_when_the_unit_of_work_is_not_committed(
        self, shops: UnitOfWorkFactory
    ) -> None:
        write(shops, outbox("shop-a", "m1"), outbox("shop-a", "m2", to=phone(2)))
        first, second = claim(shops, T0)
        first.mark_sent("SM1", at(1))
        second.mark_sent("SM2", at(1))

        with shops() as uow:
            assert [True, True] == uow.outbox.save_outcomes([first, second])

        assert {OutboxStatus.SENDING} == {
            get(shops, "shop-a", "m1").status,
            get(shops, "shop-a", "m2").status,
        }


RATE_LIMITED = DeliveryFailure(
    transient=True,
    message="Twilio HTTP 429: too many requests",
    code="20429",
    retry_after=timedelta(seconds=45),
    rate_limited=True,
)


class TestRateLimitedOutcomes:
    """ADR 0015: a rate-limited reschedule gives the claim's attempt back and keeps when the rate
    limiting began, alone (``save_outcome``) or in a group (``save_outcomes``, one statement on
    Postgres)."""

    @pytest.mark.parametrize("grouped", [False, True], ids=["alone", "in a group"])
    def test_a_rate_limited_reschedule_stores_no_new_attempt_and_its_start(
        self, shops: UnitOfWorkFactory, grouped: bool
    ) -> None:
        write(shops, outbox("shop-a", "m1"), outbox("shop-b", "m2"))
        limited, other = sorted(claim(shops, T0), key=lambda m: m.id)
        limited.record_failure(RATE_LIMITED, at(1), POLICY, "dl-x")
        other.mark_sent("SM2", at(1))

        with shops() as uow:
            if grouped:
                saved = uow.outbox.save_outcomes([limited, other])
            else:
                saved = [uow.outbox.save_outcome(limited), uow.outbox.save_outcome(other)]
            uow.commit()

        stored = get(shops, "shop-a", "m1")
        assert [True, True] == saved
        assert (OutboxStatus.FAILED, 0, at(46), at(1)) == (
            stored.status,
            stored.attempts,
            stored.next_attempt_at,
            stored.rate_limited_since,
        )

    def test_the_next_claim_of_a_rescheduled_message_is_fenced_apart_from_the_last(
        self, shops: UnitOfWorkFactory
    ) -> None:
        write(shops, outbox("shop-a", "m1"))
        (first,) = claim(shops, T0)
        first.record_failure(RATE_LIMITED, at(1), POLICY, "dl-x")
        with shops() as uow:
            assert uow.outbox.save_outcome(first)
            uow.commit()

        (second,) = claim(shops, at(46))
        second.record_failure(RATE_LIMITED, at(47), POLICY, "dl-y")
        first.status = OutboxStatus.SENDING  # a stale copy of the first claim, replayed
        first.mark_sent("SM-stale", at(48))
        with shops() as uow:
            assert [False, True] == [
                uow.outbox.save_outcome(first),
                uow.outbox.save_outcome(second),
            ]
            uow.commit()

        stored = get(shops, "shop-a", "m1")
        assert (OutboxStatus.FAILED, 0, at(1), None) == (
            stored.status,
            stored.attempts,
            stored.rate_limited_since,
            stored.provider_message_id,
        )


class TestRequeue:
    def _dead(self, uow_factory: UnitOfWorkFactory) -> OutboxMessage:
        write(uow_factory, outbox("shop-a", "m1"))
        (claimed,) = claim(uow_factory, T0)
        claimed.record_failure(
            DeliveryFailure(transient=False, message="blocked", code="21610"), at(1), POLICY, "dl"
        )
        with uow_factory() as uow:
            uow.outbox.save_outcome(claimed)
            uow.commit()
        return get(uow_factory, "shop-a", "m1")

    def test_a_dead_message_is_requeued_pending_with_fresh_attempts(
        self, shops: UnitOfWorkFactory
    ) -> None:
        dead = self._dead(shops)
        dead.requeue(at(100))

        with shops() as uow:
            assert uow.outbox.requeue(dead)
            uow.commit()

        stored = get(shops, "shop-a", "m1")
        assert (OutboxStatus.PENDING, 0, at(100)) == (
            stored.status,
            stored.attempts,
            stored.next_attempt_at,
        )
        assert ["m1"] == [m.id for m in claim(shops, at(100))]

    def test_a_message_that_is_not_dead_is_not_requeued(self, shops: UnitOfWorkFactory) -> None:
        dead = self._dead(shops)
        dead.requeue(at(100))
        with shops() as uow:
            uow.outbox.requeue(dead)
            uow.commit()

        with shops() as uow:
            assert not uow.outbox.requeue(dead)


class TestOperatorViews:
    def test_messages_are_counted_by_status(self, shops: UnitOfWorkFactory) -> None:
        write(shops, outbox("shop-a", "m1"), outbox("shop-b", "m2"), outbox("shop-b", "m3"))
        claim(shops, T0, limit=1)

        with shops() as uow:
            counts = uow.outbox.count_by_status()

        assert {OutboxStatus.PENDING: 2, OutboxStatus.SENDING: 1} == counts

    def test_the_outbox_lag_is_when_the_longest_waiting_message_became_due(
        self, shops: UnitOfWorkFactory
    ) -> None:
        write(shops, outbox("shop-a", "m1", now=at(10)), outbox("shop-b", "m2", now=at(5)))
        write(shops, outbox("shop-b", "m3", now=at(500)))

        with shops() as uow:
            assert at(5) == uow.outbox.oldest_due_at(at(100))
            assert uow.outbox.oldest_due_at(at(1)) is None

    def test_an_expired_lease_counts_from_its_expiry(self, shops: UnitOfWorkFactory) -> None:
        write(shops, outbox("shop-a", "m1"))
        claim(shops, T0)

        with shops() as uow:
            assert uow.outbox.oldest_due_at(at(30)) is None
            assert T0 + LEASE == uow.outbox.oldest_due_at(at(120))


class TestTenantIsolation:
    def test_another_tenants_message_is_invisible(self, shops: UnitOfWorkFactory) -> None:
        write(shops, outbox("shop-b", "m1"))

        with shops() as uow:
            assert uow.outbox.get("shop-a", "m1") is None

    def test_an_outcome_under_another_tenant_changes_nothing(
        self, shops: UnitOfWorkFactory
    ) -> None:
        write(shops, outbox("shop-b", "m1"))
        (claimed,) = claim(shops, T0)
        before = get(shops, "shop-b", "m1")
        claimed.tenant_id = "shop-a"
        claimed.mark_sent("SMforged", at(1))

        with shops() as uow:
            assert not uow.outbox.save_outcome(claimed)
            uow.commit()

        assert before == get(shops, "shop-b", "m1")

    def test_a_requeue_under_another_tenant_changes_nothing(self, shops: UnitOfWorkFactory) -> None:
        write(shops, outbox("shop-b", "m1"))
        (claimed,) = claim(shops, T0)
        claimed.record_failure(
            DeliveryFailure(transient=False, message="blocked", code="21610"), at(1), POLICY, "dl"
        )
        with shops() as uow:
            uow.outbox.save_outcome(claimed)
            uow.commit()
        forged = get(shops, "shop-b", "m1")
        forged.requeue(at(2))
        forged.tenant_id = "shop-a"

        with shops() as uow:
            assert not uow.outbox.requeue(forged)
            uow.commit()

        assert OutboxStatus.DEAD == get(shops, "shop-b", "m1").status
