"""The production outbox sender's loop (``OutboxSender.run``) on the memory store, in virtual time:
its sends run inline and each of its waits moves the world's clock, so timings are exact.

What its single cycle does (claim, send, record, retry, dead-letter) is in test_outbox.py; here is
what the loop adds: when it claims again, how it waits, how it survives a store that fails."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest

from adapters.memory.store import MemoryUnitOfWork
from adapters.memory.waiting import VirtualWaiter
from application.outbox import Attempt, BatchReport
from application.outbox_sender import (
    MAX_STORE_BACKOFF_SECONDS,
    RECORD_GROUP_LIMIT,
    RECORD_LINGER_SECONDS,
    RETRY_MARGIN_SECONDS,
    STOP_RECORD_DEADLINE_SECONDS,
    OutboxSender,
)
from domain.outbox import OutboxMessage, OutboxStatus
from ports.messaging import SendReceipt, SendRequest
from ports.repositories import StoreUnavailable
from tests.unit.builders import OK, START, ScriptedProvider, World, client, permanent, transient


class ClockedProvider(ScriptedProvider):
    """A scripted provider that notes the world's time of every send."""

    def __init__(self, world: World, *script: Any) -> None:
        super().__init__(*script)
        self.world = world
        self.sent_at: list[float] = []

    def send(self, request: SendRequest) -> SendReceipt:
        self.sent_at.append(seconds_since_start(self.world))
        return super().send(request)


def seconds_since_start(world: World) -> float:
    return round((world.now - START).total_seconds(), 6)


class StopWhen:
    """A stop signal set once ``done()`` holds, or (the test then fails) after ten virtual
    minutes."""

    def __init__(self, world: World, done: Callable[[], bool]) -> None:
        self.world = world
        self.done = done
        self.deadline = START + timedelta(minutes=10)

    def is_set(self) -> bool:
        return self.done() or self.world.now >= self.deadline


class Store:
    """The world's units of work with faults: while the clock is before ``down_until`` none can
    be entered; the commits numbered in ``failing_commits`` (counted from 1) fail. Notes the size
    of every group of outcomes handed to the store."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.down_until: datetime | None = None
        self.failing_commits: set[int] = set()
        self.commits = 0
        self.refused_at: list[float] = []
        self.outcome_groups: list[int] = []

    def __call__(self) -> MemoryUnitOfWork:
        if self.down_until is not None and self.world.now < self.down_until:
            self.refused_at.append(seconds_since_start(self.world))
            raise StoreUnavailable("connection refused")
        uow = self.world.uow_factory()
        commit, save_outcomes = uow.commit, uow.outbox.save_outcomes

        def failing_commit() -> None:
            self.commits += 1
            if self.commits in self.failing_commits:
                raise StoreUnavailable("connection reset during commit")
            commit()

        def noted_save_outcomes(messages: Sequence[OutboxMessage]) -> list[bool]:
            self.outcome_groups.append(len(messages))
            return save_outcomes(messages)

        uow.commit = failing_commit  # type: ignore[method-assign]
        uow.outbox.save_outcomes = noted_save_outcomes  # type: ignore[method-assign]
        return uow


def contexts(caplog: pytest.LogCaptureFixture, message: str) -> list[dict[str, Any]]:
    return [dict(getattr(r, "context", {})) for r in caplog.records if r.getMessage() == message]


@pytest.fixture
def outbox(world: World, caplog: pytest.LogCaptureFixture) -> World:
    caplog.set_level(logging.INFO, logger="livesell.outbox")
    world.tenant("shop-a", whatsapp_number="+33180808080")
    return world


def status(world: World, message_id: str) -> OutboxStatus:
    return world.outbox(message_id).status


class TestClaimingAgain:
    def test_a_failed_send_is_claimed_again_just_after_its_retry_falls_due_not_at_the_poll(
        self, outbox: World
    ) -> None:
        message_id = outbox.queue()
        provider = ClockedProvider(outbox, *[transient("20500")] * 5)
        sender = outbox.sender(provider, poll_interval=30.0)

        sender.run(StopWhen(outbox, lambda: status(outbox, message_id) is OutboxStatus.DEAD))

        margin = RETRY_MARGIN_SECONDS
        expected = [0.0, 1 + margin, 3 + 2 * margin, 7 + 3 * margin, 15 + 4 * margin]
        assert pytest.approx(expected, abs=0.01) == provider.sent_at
        assert (OutboxStatus.DEAD, 5) == (
            status(outbox, message_id),
            outbox.outbox(message_id).attempts,
        )

    def test_a_full_claim_is_followed_by_the_next_without_waiting(self, outbox: World) -> None:
        ids = [outbox.queue(to=client(n), body=f"m{n}") for n in range(25)]
        provider = ClockedProvider(outbox)
        sender = outbox.sender(provider, batch_size=10, poll_interval=30.0)

        sender.run(StopWhen(outbox, lambda: len(provider.accepted) == 25))

        assert [0.0] * 25 == provider.sent_at
        assert (25, [OutboxStatus.SENT] * 25) == (
            sender.counters.claimed,
            [status(outbox, i) for i in ids],
        )

    def test_a_recipients_next_message_is_claimed_once_the_last_is_recorded_not_at_the_poll(
        self, outbox: World
    ) -> None:
        ids = [outbox.queue(body=f"m{n}") for n in range(3)]  # one recipient: one at a time
        provider = ClockedProvider(outbox, OK, permanent(), OK)
        sender = outbox.sender(provider, batch_size=10, poll_interval=30.0)

        sender.run(StopWhen(outbox, lambda: len(provider.requests) == 3))

        assert [0.0, 0.0, 0.0] == provider.sent_at
        assert ids == [r.outbox_id for r in provider.requests]
        assert [OutboxStatus.SENT, OutboxStatus.DEAD, OutboxStatus.SENT] == [
            status(outbox, i) for i in ids
        ]

    def test_a_paced_recipients_next_message_is_claimed_when_the_gap_has_passed_not_at_the_poll(
        self, outbox: World
    ) -> None:
        """ADR 0025: with a 6 s gap one customer's messages go 6 s apart (and a little margin),
        another customer's at once; the poll interval (30 s) is not waited for."""
        ids = [outbox.queue(body=f"m{n}") for n in range(3)]
        other = outbox.queue(to=client(1), body="other")
        provider = ClockedProvider(outbox)
        sender = outbox.sender(
            provider, batch_size=10, poll_interval=30.0, recipient_gap=timedelta(seconds=6)
        )

        sender.run(StopWhen(outbox, lambda: len(provider.requests) == 4))

        margin = RETRY_MARGIN_SECONDS
        sent = dict(zip([r.outbox_id for r in provider.requests], provider.sent_at, strict=True))
        assert 0.0 == sent[other]
        assert pytest.approx([0.0, 6 + margin, 12 + 2 * margin], abs=0.01) == [sent[i] for i in ids]

    def test_a_message_written_while_idle_waits_for_the_next_poll(self, outbox: World) -> None:
        provider = ClockedProvider(outbox)
        written: list[str] = []

        def heartbeat() -> None:  # called every time round the loop
            if not written and seconds_since_start(outbox) >= 5:
                written.append(outbox.queue())

        sender = outbox.sender(provider, poll_interval=30.0)
        sender.heartbeat = heartbeat

        sender.run(StopWhen(outbox, lambda: bool(provider.accepted)))

        assert pytest.approx([30.0], abs=0.01) == provider.sent_at

    def test_a_notified_write_is_claimed_at_once(self, outbox: World) -> None:
        provider = ClockedProvider(outbox)
        sender = outbox.sender(provider, poll_interval=30.0)
        written: list[str] = []

        def heartbeat() -> None:
            if not written and seconds_since_start(outbox) >= 5:
                written.append(outbox.queue())
                sender.notify()  # what the Postgres listener does once the row is committed

        sender.heartbeat = heartbeat

        sender.run(StopWhen(outbox, lambda: bool(provider.accepted)))

        assert pytest.approx([5.0], abs=0.01) == provider.sent_at


class TimedSends:
    """An executor and a waiter together, in virtual time: each send finishes
    ``durations[n]`` seconds after it was submitted (the n-th submitted); a wait moves the clock
    to the next send due (or by the wait asked, if sooner) and runs the sends due then."""

    def __init__(self, world: World, durations: Sequence[float]) -> None:
        self.world = world
        self.durations = list(durations)
        self.queued: list[tuple[float, int, Callable[[], None]]] = []
        self.submitted = 0
        self.virtual = VirtualWaiter(world.clock)

    # Executor
    def submit(self, task: Callable[[], None]) -> None:
        due = round(self.monotonic() + self.durations[self.submitted], 6)  # the clock's µs
        self.queued.append((due, self.submitted, task))
        self.submitted += 1

    def shutdown(self) -> None:
        while self.queued:
            self.wait(3600.0)

    # Waiter
    def monotonic(self) -> float:
        return self.virtual.monotonic()

    def wait(self, seconds: float) -> None:
        now = self.monotonic()
        until = min([now + seconds, *(due for due, _, _ in self.queued)])
        self.world.clock.advance(timedelta(microseconds=max(round((until - now) * 1e6), 1)))
        for item in sorted(self.queued):
            if item[0] <= self.monotonic() + 1e-9:
                self.queued.remove(item)
                item[2]()

    def wake(self) -> None:
        self.virtual.wake()

    def clear(self) -> None:
        self.virtual.clear()


class TestRecordingTogether:
    """ADR 0029: a recording transaction costs about the same for five outcomes as for fifty, so
    finished sends wait a little (``RECORD_LINGER_SECONDS``) for others while sends are in
    flight, and no longer."""

    def recorded_at(self, world: World, ids: Sequence[str]) -> list[float]:
        return [
            round((world.outbox(i).sent_at - START).total_seconds(), 3)  # type: ignore[operator]
            for i in ids
        ]

    def test_sends_finishing_a_millisecond_apart_are_recorded_half_a_claim_at_a_time(
        self, outbox: World
    ) -> None:
        ids = [outbox.queue(to=client(n)) for n in range(10)]
        timed = TimedSends(outbox, [0.001 * (n + 1) for n in range(10)])
        sender = outbox.sender(ScriptedProvider(), batch_size=10, executor=timed, waiter=timed)

        sender.run(
            StopWhen(outbox, lambda: all(status(outbox, i) is OutboxStatus.SENT for i in ids))
        )

        assert [0.005] * 5 + [0.01] * 5 == self.recorded_at(outbox, ids)

    def test_a_finished_send_waits_for_a_slow_one_no_longer_than_the_linger(
        self, outbox: World
    ) -> None:
        fast, slow = outbox.queue(to=client(1)), outbox.queue(to=client(2))
        timed = TimedSends(outbox, [0.001, 2.0])
        sender = outbox.sender(ScriptedProvider(), batch_size=10, executor=timed, waiter=timed)

        sender.run(StopWhen(outbox, lambda: status(outbox, slow) is OutboxStatus.SENT))

        assert [0.001 + RECORD_LINGER_SECONDS, 2.0] == pytest.approx(
            self.recorded_at(outbox, [fast, slow]), abs=0.002
        )


class TestAStoreThatFails:
    def test_claims_back_off_from_a_quarter_second_doubling_to_five_then_resume(
        self, outbox: World, caplog: pytest.LogCaptureFixture
    ) -> None:
        message_id = outbox.queue()
        store = Store(outbox)
        store.down_until = START + timedelta(seconds=10)
        provider = ClockedProvider(outbox)
        sender = outbox.sender(provider, uow_factory=store)

        sender.run(StopWhen(outbox, lambda: status(outbox, message_id) is OutboxStatus.SENT))

        backoffs = [0.25, 0.5, 1.0, 2.0, 4.0, MAX_STORE_BACKOFF_SECONDS]
        assert pytest.approx([0.0, 0.25, 0.75, 1.75, 3.75, 7.75], abs=0.01) == store.refused_at
        assert pytest.approx([12.75], abs=0.01) == provider.sent_at
        logged = contexts(caplog, "Outbox store unavailable, backing off")
        assert [
            {
                "step": "claim",
                "consecutiveFailures": n,
                "retryInSeconds": wait,
                "unrecordedOutcomes": 0,
                "error": "connection refused",
            }
            for n, wait in enumerate(backoffs, start=1)
        ] == logged

    def test_an_outcome_whose_recording_failed_is_stored_once_when_the_store_is_back(
        self, outbox: World, caplog: pytest.LogCaptureFixture
    ) -> None:
        message_id = outbox.queue()
        store = Store(outbox)
        store.failing_commits = {2}  # the claim commits, the first recording does not
        provider = ClockedProvider(outbox)
        sender = outbox.sender(provider, uow_factory=store)

        sender.run(StopWhen(outbox, lambda: status(outbox, message_id) is OutboxStatus.SENT))

        message = outbox.outbox(message_id)
        assert (1, 1, "SM0001") == (
            len(provider.requests),
            message.attempts,
            message.provider_message_id,
        )
        assert ["message.sent"] == outbox.event_types()
        [logged] = contexts(caplog, "Outbox store unavailable, backing off")
        assert ("record", 1) == (logged["step"], logged["unrecordedOutcomes"])

    def test_outcomes_are_stored_in_groups_and_a_failed_group_is_stored_again_with_the_rest(
        self, outbox: World
    ) -> None:
        count = 2 * RECORD_GROUP_LIMIT + 50
        ids = [outbox.queue(to=client(n), body=f"m{n}") for n in range(count)]
        store = Store(outbox)
        store.failing_commits = {3}  # claim, first group, then the second group fails
        provider = ClockedProvider(outbox)
        sender = outbox.sender(provider, batch_size=count, uow_factory=store)

        sender.run(StopWhen(outbox, lambda: len(outbox.events("message.sent")) >= count))

        limit = RECORD_GROUP_LIMIT
        assert [limit, limit, limit, 50] == store.outcome_groups
        assert [OutboxStatus.SENT] * count == [status(outbox, i) for i in ids]
        assert sorted(ids) == sorted(e.subject_id for e in outbox.events("message.sent"))


class TestStopping:
    def test_outcomes_the_store_cannot_take_are_given_up_after_the_stop_deadline(
        self, outbox: World, caplog: pytest.LogCaptureFixture
    ) -> None:
        message_id = outbox.queue()
        store = Store(outbox)
        provider = ClockedProvider(outbox)
        sender = outbox.sender(provider, uow_factory=store)

        def heartbeat() -> None:  # once the message is sent, the store goes away
            if provider.requests and store.down_until is None:
                store.down_until = START + timedelta(hours=1)

        sender.heartbeat = heartbeat
        sender.run(StopWhen(outbox, lambda: bool(provider.requests)))

        [logged] = contexts(
            caplog,
            "Outbox sender stopped with outcomes it could not record; those messages are sent "
            "again when their lease passes",
        )
        assert {"unrecorded": 1} == logged
        assert STOP_RECORD_DEADLINE_SECONDS <= seconds_since_start(outbox) <= 21
        assert (OutboxStatus.SENDING, 1) == (status(outbox, message_id), len(provider.requests))

    def test_a_stop_before_anything_is_due_returns_at_once_claiming_nothing(
        self, outbox: World, caplog: pytest.LogCaptureFixture
    ) -> None:
        outbox.queue()
        sender = outbox.sender(ScriptedProvider())

        sender.run(StopWhen(outbox, lambda: True))

        assert (0, 0.0) == (sender.counters.claimed, seconds_since_start(outbox))
        assert 1 == len(contexts(caplog, "Outbox sender stopped"))


class TestWhatTheSenderTells:
    def test_observers_hear_every_send_and_every_recording(self, outbox: World) -> None:
        for n in range(3):
            outbox.queue(to=client(n), body=f"m{n}")
        heard: list[object] = []

        class Observer:
            def message_sent(self, attempt: Attempt, seconds: float) -> None:
                heard.append(attempt.message.body)

            def outcomes_recorded(self, report: BatchReport) -> None:
                heard.append(report)

        sender = outbox.sender(ScriptedProvider(transient()))
        sender.observers = (Observer(),)

        sender.run_once()

        assert [
            "m0",
            "m1",
            "m2",
            BatchReport(claimed=3, sent=2, retried=1, dead=0, lost=0),
        ] == heard

    def test_each_send_runs_in_a_job_scope_tagged_with_its_message(self, outbox: World) -> None:
        message_id = outbox.queue()
        scopes: list[dict[str, str | None]] = []

        @contextlib.contextmanager
        def job_scope(tags: Mapping[str, str | None]) -> Iterator[None]:
            scopes.append(dict(tags))
            yield

        sender = outbox.sender(ScriptedProvider())
        sender.job_scope = job_scope

        sender.run_once()

        correlation_id = outbox.outbox(message_id).correlation_id
        assert [
            {
                "queue": "messages_out",
                "job_id": message_id,
                "correlationId": correlation_id,
                "tenant": "shop-a",
            }
        ] == scopes

    def test_the_metrics_line_comes_every_hundred_outcomes(
        self, outbox: World, caplog: pytest.LogCaptureFixture
    ) -> None:
        for n in range(150):
            outbox.queue(to=client(n), body=f"m{n}")
        sender = outbox.sender(ScriptedProvider(), batch_size=50)

        for _ in range(3):
            sender.run_once()

        [line] = contexts(caplog, "Worker metrics")
        assert (100, 100, 0, 1.0) == (
            line["claimed"],
            line["completed"],
            line["failed"],
            line["successRate"],
        )


class TestTheVirtualWaiter:
    def test_a_wait_moves_the_clock_unless_woken_since_the_last_clear(self, world: World) -> None:
        waiter = VirtualWaiter(world.clock)

        waiter.wait(0.2)
        waiter.wake()
        waiter.wait(5.0)
        waiter.clear()
        waiter.wait(0.05)

        assert ([0.2, 0.05], 0.25) == (waiter.waited, waiter.monotonic())


def test_a_sender_made_on_the_world_claims_at_most_its_concurrency(world: World) -> None:
    sender: OutboxSender = world.sender(ScriptedProvider(), batch_size=50, concurrency=8)

    assert 8 == sender.claim_size
