"""Rate limits that do not kill messages (SPEC §3 "Outbox", ADR 0015).

Twilio: "Requests that receive 429 responses aren't processed and are safe to retry after backing
off" (https://www.twilio.com/docs/api/errors/20429; also "An API Request that receives an error 429
response is never processed and is always safe to retry",
https://support.twilio.com/hc/en-us/articles/360044308153). Its 20429 body says "Too many requests.
Please retry according to the Retry-After response header"
(https://www.twilio.com/docs/bulk-messaging/api/seek-message-resource). So a rate-limited answer
is not a failed attempt: the message is rescheduled after the Retry-After (however long), without
spending an attempt, until it has been rate limited for ``rate_limited_ceiling``; then it is dead
with its dead letter.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.dead_letters import DeadLetterSource
from domain.errors import InvalidSetting
from domain.outbox import DeliveryFailure, OutboxStatus
from domain.retry import GiveUp, RetryAt, RetryPolicy
from tests.unit.builders import OK, START, ScriptedProvider, World, transient

CEILING = timedelta(minutes=10)


def rate_limited(retry_after: float | None = None, code: str = "20429") -> DeliveryFailure:
    return DeliveryFailure(
        transient=True,
        code=code,
        message=f"Twilio HTTP 429: too many requests [{code}]",
        retry_after=None if retry_after is None else timedelta(seconds=retry_after),
        rate_limited=True,
    )


@pytest.fixture
def outbox(world: World) -> World:
    world.tenant("shop-a", whatsapp_number="+33180808080")
    world.policy = RetryPolicy(rate_limited_ceiling=CEILING)
    return world


class TestTheRateLimitedRule:
    def test_a_first_rate_limit_waits_its_retry_after_even_beyond_the_30_second_cap(self) -> None:
        policy = RetryPolicy()

        assert RetryAt(timedelta(seconds=120)) == policy.decide_rate_limited(
            timedelta(0), timedelta(seconds=120)
        )

    def test_without_a_retry_after_the_wait_grows_with_the_time_limited_up_to_the_cap(
        self,
    ) -> None:
        policy = RetryPolicy()

        waits = [
            policy.decide_rate_limited(timedelta(seconds=s)) for s in (0, 1, 2, 4, 8, 16, 40, 600)
        ]

        assert [RetryAt(timedelta(seconds=s)) for s in (1, 1, 2, 4, 8, 16, 30, 30)] == waits

    def test_a_wait_that_would_end_past_the_ceiling_gives_up(self) -> None:
        policy = RetryPolicy(rate_limited_ceiling=timedelta(seconds=100))

        assert GiveUp() == policy.decide_rate_limited(timedelta(seconds=50), timedelta(seconds=51))
        assert RetryAt(timedelta(seconds=50)) == policy.decide_rate_limited(
            timedelta(seconds=50), timedelta(seconds=50)
        )

    def test_a_non_positive_ceiling_is_refused(self) -> None:
        with pytest.raises(InvalidSetting, match="rate-limited ceiling"):
            RetryPolicy(rate_limited_ceiling=timedelta(0))

    def test_an_ordinary_transient_failure_honours_a_retry_after_beyond_the_cap(self) -> None:
        assert RetryAt(timedelta(minutes=5)) == RetryPolicy().decide(1, timedelta(minutes=5))

    def test_a_rate_limited_failure_must_be_transient(self) -> None:
        with pytest.raises(ValueError, match="transient"):
            DeliveryFailure(transient=False, message="429", rate_limited=True)


class TestARateLimitedMessage:
    def test_a_rate_limited_send_is_rescheduled_without_spending_an_attempt(
        self, outbox: World
    ) -> None:
        message_id = outbox.queue()

        report = outbox.send_due(ScriptedProvider(rate_limited(retry_after=90)))

        message = outbox.outbox(message_id)
        assert 1 == report.retried
        assert (OutboxStatus.FAILED, 0, START + timedelta(seconds=90), START, "20429") == (
            message.status,
            message.attempts,
            message.next_attempt_at,
            message.rate_limited_since,
            message.last_error_code,
        )
        [event] = outbox.events("message.retry_scheduled")
        assert (True, 0) == (event.payload["rateLimited"], event.payload["attempts"])

    def test_fifty_rate_limits_then_success_ends_sent_with_one_attempt(self, outbox: World) -> None:
        message_id = outbox.queue()
        provider = ScriptedProvider(*[rate_limited(retry_after=5)] * 50, OK)

        for _ in range(51):
            outbox.send_due(provider)
            outbox.advance(seconds=5)

        message = outbox.outbox(message_id)
        assert (OutboxStatus.SENT, 1) == (message.status, message.attempts)
        assert {} == outbox.store.dead_letters

    def test_rate_limits_leave_every_transient_attempt_to_real_failures(
        self, outbox: World
    ) -> None:
        message_id = outbox.queue()
        script = [rate_limited(retry_after=1), transient()] * 4 + [rate_limited(retry_after=1), OK]
        provider = ScriptedProvider(*script)

        for _ in range(len(script)):
            outbox.send_due(provider)
            outbox.advance(seconds=30)

        message = outbox.outbox(message_id)
        assert (OutboxStatus.SENT, 5) == (message.status, message.attempts)

    def test_past_the_ceiling_the_message_is_dead_with_its_dead_letter(self, outbox: World) -> None:
        message_id = outbox.queue()
        provider = ScriptedProvider(*[rate_limited(retry_after=60)] * 100)

        for _ in range(100):
            outbox.send_due(provider)
            outbox.advance(seconds=60)
            if outbox.outbox(message_id).status is OutboxStatus.DEAD:
                break

        message = outbox.outbox(message_id)
        [dead_letter] = outbox.store.dead_letters.values()
        assert OutboxStatus.DEAD == message.status
        assert 11 == len(provider.requests)  # at 0, 60 ... 600 s; the next would be at 660 s
        assert (DeadLetterSource.MESSAGES_OUT, message_id, "20429", 1) == (
            dead_letter.source,
            dead_letter.source_id,
            dead_letter.error_code,
            dead_letter.attempts,
        )
        assert "rate limited for over 600 s" in dead_letter.error
        [event] = outbox.events("message.dead_lettered")
        assert event.payload["permanent"] is False

    def test_a_retry_after_longer_than_the_ceiling_dead_letters_at_once(
        self, outbox: World
    ) -> None:
        message_id = outbox.queue()

        outbox.send_due(ScriptedProvider(rate_limited(retry_after=CEILING.total_seconds() + 1)))

        assert OutboxStatus.DEAD == outbox.outbox(message_id).status

    def test_a_replay_starts_the_rate_limited_time_again(self, outbox: World) -> None:
        message_id = outbox.queue()
        outbox.send_due(ScriptedProvider(rate_limited(retry_after=CEILING.total_seconds() + 1)))
        outbox.advance(minutes=30)
        with outbox.uow_factory() as uow:
            message = uow.outbox.get("shop-a", message_id)
            assert message is not None
            message.requeue(outbox.now)
            uow.outbox.requeue(message)
            uow.commit()

        outbox.send_due(ScriptedProvider(rate_limited(retry_after=30)))

        message = outbox.outbox(message_id)
        assert (OutboxStatus.FAILED, outbox.now, 0) == (
            message.status,
            message.rate_limited_since,
            message.attempts,
        )


outcomes = st.one_of(
    st.tuples(st.just("rate_limited"), st.none() | st.integers(1, 900)),
    st.tuples(st.just("transient"), st.none() | st.integers(1, 120)),
    st.tuples(st.just("ok"), st.none()),
)


class TestRateLimitsForEverySequence:
    @settings(max_examples=200, deadline=None)
    @given(steps=st.lists(outcomes, min_size=1, max_size=60))
    def test_rate_limits_spend_no_attempt_wait_their_retry_after_and_stop_at_the_ceiling(
        self, steps: list[tuple[str, Any]]
    ) -> None:
        world = World()
        world.tenant("shop-a")
        policy = RetryPolicy(rate_limited_ceiling=CEILING)
        message_id = world.queue()
        real_failures = 0
        for kind, wait in steps:
            before = world.outbox(message_id)
            if before.status in (OutboxStatus.SENT, OutboxStatus.DEAD):
                break
            world.clock.set(max(world.now, before.next_attempt_at))  # due now
            if kind == "rate_limited":
                failure: DeliveryFailure | str = rate_limited(retry_after=wait)
            elif kind == "transient":
                failure = transient(retry_after=None if wait is None else timedelta(seconds=wait))
            else:
                failure = OK
            world.send_due(ScriptedProvider(failure), policy=policy)
            after = world.outbox(message_id)
            if kind == "transient":
                real_failures += 1
            if after.status is OutboxStatus.FAILED:
                if kind == "rate_limited":
                    assert before.attempts == after.attempts
                    assert after.rate_limited_since is not None
                    assert after.next_attempt_at - after.rate_limited_since <= CEILING
                    if wait is not None:
                        assert world.now + timedelta(seconds=wait) == after.next_attempt_at
                else:
                    assert before.attempts + 1 == after.attempts
            counted_last = kind != "transient" and after.status is not OutboxStatus.FAILED
            assert real_failures + counted_last == after.attempts
            assert after.attempts <= policy.max_attempts
            if after.status is OutboxStatus.DEAD and kind == "rate_limited":
                assert after.rate_limited_since is not None
                limited_for = world.now - after.rate_limited_since
                assert limited_for + timedelta(seconds=wait or 30) > CEILING
