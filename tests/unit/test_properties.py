"""Rules that must hold for every sequence of events (STYLE rule 11), checked with Hypothesis."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from application.outbox import DEFAULT_LEASE, claim_due_messages
from domain.live_sessions import SessionStatus
from domain.outbox import LEASE_EXPIRED_CODE, DeliveryFailure, OutboxStatus
from domain.retry import RetryPolicy
from tests.unit.builders import (
    CLIENT_PHONE,
    OK,
    OTHER_CLIENT_PHONE,
    SELLER_PHONE,
    ScriptedProvider,
    World,
    permanent,
    transient,
)

TENANTS = ("shop-a", "shop-b", "shop-c")
WINDOW_S = 45 * 60

session_steps = st.one_of(
    st.tuples(st.just("seller"), st.integers(0, 2)),
    st.tuples(
        st.just("client"), st.integers(0, 2), st.sampled_from([CLIENT_PHONE, OTHER_CLIENT_PHONE])
    ),
    st.tuples(
        st.just("advance"),
        st.integers(0, 2 * 60 * 60) | st.sampled_from([WINDOW_S - 1, WINDOW_S, WINDOW_S + 1]),
    ),
    st.tuples(st.just("close")),
)


class TestLiveSessionsForEveryInterleaving:
    @settings(max_examples=200, deadline=None)
    @given(tenant_count=st.integers(1, 3), steps=st.lists(session_steps, max_size=40))
    def test_one_active_session_per_tenant_none_reopened_and_only_sellers_open_them(
        self, tenant_count: int, steps: list[tuple[Any, ...]]
    ) -> None:
        world = World()
        tenants = TENANTS[:tenant_count]
        for tenant_id in tenants:
            world.tenant(tenant_id)
            world.seller(tenant_id, SELLER_PHONE)
        seen_closed: set[str] = set()

        for step in steps:
            kind = step[0]
            if kind == "advance":
                world.advance(seconds=step[1])
            elif kind == "close":
                world.close_inactive(batch_limit=2)
                cutoff = world.window.cutoff(world.now)
                assert [] == [
                    s.id
                    for s in world.store.sessions.values()
                    if s.is_active and s.last_activity_at < cutoff
                ]
            else:
                tenant_id = tenants[step[1] % tenant_count]
                active = world.active_sessions(tenant_id)
                window_start = world.now - timedelta(seconds=WINDOW_S)
                current = [s.id for s in active if s.last_activity_at >= window_start]
                known = set(world.store.sessions)
                sender = SELLER_PHONE if kind == "seller" else step[2]

                session_id = world.message_from(sender, tenant_id).enriched["liveSessionId"]

                if kind == "seller":
                    assert session_id is not None
                    if current:
                        assert current == [session_id]
                    else:
                        assert session_id not in known, "a seller after the window opens anew"
                        assert [SessionStatus.CLOSED] * len(active) == [
                            world.session(s.id).status for s in active
                        ]
                else:
                    assert (current[0] if current else None) == session_id
                    assert known == set(world.store.sessions), "a client opened a session"

            for tenant_id in tenants:
                assert len(world.active_sessions(tenant_id)) <= 1
            active_ids = {s.id for s in world.store.sessions.values() if s.is_active}
            assert set() == active_ids & seen_closed, "a closed session was reopened"
            seen_closed |= {s.id for s in world.store.sessions.values() if not s.is_active}


CRASH = "crash"

delivery_steps = st.one_of(
    st.builds(
        transient,
        code=st.sampled_from(["20429", "30001", "20500"]),
        retry_after=st.none() | st.integers(0, 120).map(lambda s: timedelta(seconds=s)),
    ),
    st.builds(permanent, code=st.sampled_from(["21211", "21610", "63016", "20003"])),
    st.just(OK),
    st.just(CRASH),
)


def expected_end(script: list[Any], policy: RetryPolicy) -> tuple[OutboxStatus, int, str | None]:
    """What SPEC §3 says becomes of a message that meets ``script`` (then only successes)."""
    attempts = 0
    for step in [*script, OK]:
        attempts += 1
        if attempts > policy.max_attempts:
            return OutboxStatus.DEAD, policy.max_attempts, LEASE_EXPIRED_CODE
        if step == CRASH:
            continue
        if step == OK:
            return OutboxStatus.SENT, attempts, None
        assert isinstance(step, DeliveryFailure)
        if not step.transient or attempts == policy.max_attempts:
            return OutboxStatus.DEAD, attempts, step.code
    raise AssertionError("unreachable: the script ends with a success")


class TestDeliveryForEveryFailureSequence:
    @settings(max_examples=200, deadline=None)
    @given(
        max_attempts=st.integers(1, 8),
        script=st.lists(delivery_steps, max_size=12),
    )
    def test_attempts_stay_within_the_maximum_waits_honour_retry_after_and_an_end_is_reached(
        self, max_attempts: int, script: list[Any]
    ) -> None:
        world = World()
        world.tenant("shop-a")
        policy = RetryPolicy(max_attempts=max_attempts)
        message_id = world.queue()
        remaining = list(script)
        sends = 0

        while world.outbox(message_id).status not in (OutboxStatus.SENT, OutboxStatus.DEAD):
            message = world.outbox(message_id)
            if message.status is OutboxStatus.FAILED:
                world.clock.set(message.next_attempt_at)
            elif message.status is OutboxStatus.SENDING:
                assert message.locked_until is not None
                world.clock.set(message.locked_until + timedelta(milliseconds=1))
            step = remaining.pop(0) if remaining else OK
            if step == CRASH:
                claim_due_messages(
                    uow_factory=world.uow_factory, clock=world.clock, lease=DEFAULT_LEASE, limit=1
                )
            else:
                provider = ScriptedProvider(step)
                batch = world.send_due(provider, policy=policy)
                assert 1 == batch.claimed
                sends += len(provider.requests)
            # A claim past the last attempt (after a sender died) reads max + 1 while in flight;
            # it is never sent and is recorded dead with the maximum.
            if world.outbox(message_id).status is not OutboxStatus.SENDING:
                assert world.outbox(message_id).attempts <= max_attempts
            assert sends <= max_attempts

        message = world.outbox(message_id)
        assert expected_end(script, policy) == (
            message.status,
            message.attempts,
            message.last_error_code,
        )
        assert sends <= message.attempts
        for event in world.events("message.retry_scheduled"):
            delay = _instant(event.payload["nextAttemptAt"]) - event.created_at
            # 30 s at most, or the step's longer Retry-After (at most 120 s here), honoured whole
            # since ADR 0015.
            assert timedelta(seconds=1) <= delay <= timedelta(seconds=120)
        sent = world.events("message.sent")
        dead = world.events("message.dead_lettered")
        if message.status is OutboxStatus.SENT:
            assert (1, 0, 0) == (len(sent), len(dead), len(world.store.dead_letters))
        else:
            assert (0, 1, 1) == (len(sent), len(dead), len(world.store.dead_letters))
        world.advance(hours=1)
        assert 0 == world.send_due(ScriptedProvider(), policy=policy).claimed


def _instant(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text)
