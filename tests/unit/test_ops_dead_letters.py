"""Operating dead letters and reading stats (ADR 0009), on the in-memory adapters.

The same commands run against Postgres, SQLite and Redis in tests/integration/test_ops_*.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from adapters.memory.queue import MemoryInboundQueue
from application.dead_letters import (
    ReplayResult,
    ReplayStatus,
    find_dead_letters,
    list_dead_letters,
    replay_dead_letter,
)
from application.inbound import Rejected
from application.stats import read_store_stats
from domain.dead_letters import DeadLetter, DeadLetterSource
from domain.outbox import OutboxStatus
from ports.repositories import StoreUnavailable
from ports.unit_of_work import UnitOfWork, UnitOfWorkFactory
from tests.unit.builders import CLIENT_PHONE, SELLER_PHONE, ScriptedProvider, World, permanent


def failing_commits(world: World) -> UnitOfWorkFactory:
    """Units of work on the world's store whose commit fails as an unreachable store's would."""

    def commit() -> None:
        raise StoreUnavailable("the store went away")

    def make() -> UnitOfWork:
        uow = world.uow_factory()
        uow.commit = commit  # type: ignore[method-assign]
        return uow

    return make


@pytest.fixture
def ops(shop: World) -> World:
    shop.tenant("shop-b")
    return shop


def dead_outbox_message(world: World, tenant_id: str = "shop-a") -> tuple[str, DeadLetter]:
    message_id = world.queue(tenant_id=tenant_id)
    world.send_due(ScriptedProvider(permanent("21211")))
    (letter,) = [
        d
        for d in world.store.dead_letters.values()
        if d.source is DeadLetterSource.MESSAGES_OUT and d.source_id == message_id
    ]
    return message_id, letter


def rejected(world: World, payload: object) -> DeadLetter:
    outcome = world.receive(payload)
    assert isinstance(outcome, Rejected), outcome
    return world.store.dead_letters[outcome.dead_letter_id]


def replay(
    world: World, letter: DeadLetter, queue: MemoryInboundQueue, *, dry_run: bool = False
) -> ReplayResult:
    return replay_dead_letter(
        letter.id, uow_factory=world.uow_factory, queue=queue, clock=world.clock, dry_run=dry_run
    )


def process_queue(world: World, queue: MemoryInboundQueue) -> list[object]:
    outcomes = []
    while (job := queue.pop()) is not None:
        outcomes.append(world.receive(job[1]))
    return outcomes


class TestReplayingAnOutboxDeadLetter:
    def test_puts_the_message_back_to_pending_with_fresh_attempts_and_marks_the_letter(
        self, ops: World
    ) -> None:
        message_id, letter = dead_outbox_message(ops)
        ops.advance(minutes=5)

        result = replay(ops, letter, MemoryInboundQueue())

        message = ops.outbox(message_id)
        assert (ReplayStatus.REQUEUED, False) == (result.status, result.dry_run)
        assert (OutboxStatus.PENDING, 0, ops.now, None) == (
            message.status,
            message.attempts,
            message.next_attempt_at,
            message.locked_until,
        )
        assert ops.now == ops.store.dead_letters[letter.id].replayed_at

    def test_the_requeued_message_is_sent_by_the_next_cycle(self, ops: World) -> None:
        message_id, letter = dead_outbox_message(ops)
        replay(ops, letter, MemoryInboundQueue())

        report = ops.send_due(ScriptedProvider())

        assert (1, OutboxStatus.SENT) == (report.sent, ops.outbox(message_id).status)

    def test_replaying_twice_does_nothing_the_second_time(self, ops: World) -> None:
        message_id, letter = dead_outbox_message(ops)
        first = replay(ops, letter, MemoryInboundQueue())
        ops.send_due(ScriptedProvider(permanent("21211")))  # dead again: a new dead letter
        ops.advance(minutes=1)

        second = replay(ops, letter, MemoryInboundQueue())

        assert (ReplayStatus.REQUEUED, ReplayStatus.ALREADY_REPLAYED) == (
            first.status,
            second.status,
        )
        assert OutboxStatus.DEAD == ops.outbox(message_id).status
        assert 2 == sum(1 for d in ops.store.dead_letters.values() if d.source_id == message_id)

    def test_a_message_no_longer_dead_is_skipped_and_the_letter_stays_unreplayed(
        self, ops: World
    ) -> None:
        message_id, letter = dead_outbox_message(ops)
        ops.store.outbox[message_id].status = OutboxStatus.SENT

        result = replay(ops, letter, MemoryInboundQueue())

        assert ReplayStatus.SKIPPED == result.status
        assert "is sent, not dead" in result.detail
        assert ops.store.dead_letters[letter.id].replayed_at is None

    def test_a_dry_run_says_what_would_happen_and_changes_nothing(self, ops: World) -> None:
        message_id, letter = dead_outbox_message(ops)

        result = replay(ops, letter, MemoryInboundQueue(), dry_run=True)

        assert (ReplayStatus.REQUEUED, True) == (result.status, result.dry_run)
        assert f"would put outbox message {message_id} back to pending" in result.detail
        assert OutboxStatus.DEAD == ops.outbox(message_id).status
        assert ops.store.dead_letters[letter.id].replayed_at is None


class TestReplayingAWebhookDeadLetter:
    def test_enqueues_the_payload_whole_and_marks_the_letter(self, ops: World) -> None:
        payload = ops.payload("shop-a", CLIENT_PHONE, **{"from": "not a phone"})
        letter = rejected(ops, payload)
        queue = MemoryInboundQueue()

        result = replay(ops, letter, queue)

        assert (ReplayStatus.ENQUEUED, "job-1") == (result.status, result.job_id)
        assert [("job-1", payload)] == [queue.pop()]
        assert ops.now == ops.store.dead_letters[letter.id].replayed_at

    def test_a_payload_fixed_meanwhile_is_processed_on_replay(self, ops: World) -> None:
        payload = ops.payload("shop-late", SELLER_PHONE)
        letter = rejected(ops, payload)  # the tenant did not exist yet
        ops.tenant("shop-late")
        queue = MemoryInboundQueue()

        replay(ops, letter, queue)
        (outcome,) = process_queue(ops, queue)

        assert not isinstance(outcome, Rejected)
        assert ops.store.dead_letters[letter.id].tenant_id is None

    def test_a_payload_with_no_tenant_still_invalid_is_rejected_again_with_a_new_dead_letter(
        self, ops: World
    ) -> None:
        letter = rejected(ops, {"body": "no tenant, no sender"})
        queue = MemoryInboundQueue()

        result = replay(ops, letter, queue)
        (outcome,) = process_queue(ops, queue)

        assert ReplayStatus.ENQUEUED == result.status
        assert isinstance(outcome, Rejected)
        again = ops.store.dead_letters[outcome.dead_letter_id]
        assert outcome.dead_letter_id != letter.id
        assert (None, "invalid_payload", {"body": "no tenant, no sender"}, None) == (
            again.tenant_id,
            again.error_code,
            again.payload,
            again.replayed_at,
        )
        assert ops.store.dead_letters[letter.id].replayed_at is not None

    def test_replaying_twice_enqueues_once(self, ops: World) -> None:
        letter = rejected(ops, {"tenantId": "ghost"})
        queue = MemoryInboundQueue()

        results = [replay(ops, letter, queue).status, replay(ops, letter, queue).status]

        assert [ReplayStatus.ENQUEUED, ReplayStatus.ALREADY_REPLAYED] == results
        assert 1 == len(queue)

    def test_an_unavailable_queue_fails_the_replay_and_leaves_the_letter_unreplayed(
        self, ops: World
    ) -> None:
        letter = rejected(ops, {"tenantId": "ghost"})
        queue = MemoryInboundQueue()
        queue.available = False

        result = replay(ops, letter, queue)

        assert ReplayStatus.FAILED == result.status
        assert "queue is unavailable" in result.detail
        assert ops.store.dead_letters[letter.id].replayed_at is None

    def test_a_commit_that_fails_after_the_enqueue_reports_the_job_and_leaves_the_letter(
        self, ops: World
    ) -> None:
        letter = rejected(ops, {"tenantId": "ghost"})
        queue = MemoryInboundQueue()

        result = replay_dead_letter(
            letter.id, uow_factory=failing_commits(ops), queue=queue, clock=ops.clock
        )

        assert (ReplayStatus.FAILED, "job-1", 1) == (result.status, result.job_id, len(queue))
        assert "replaying it again enqueues it again" in result.detail
        assert ops.store.dead_letters[letter.id].replayed_at is None

    def test_a_dry_run_enqueues_nothing(self, ops: World) -> None:
        letter = rejected(ops, {"tenantId": "ghost"})
        queue = MemoryInboundQueue()

        result = replay(ops, letter, queue, dry_run=True)

        assert (ReplayStatus.ENQUEUED, True, 0) == (result.status, result.dry_run, len(queue))
        assert "would enqueue payload ghost/(none) on webhook-processing" == result.detail
        assert ops.store.dead_letters[letter.id].replayed_at is None


class TestFindingAndListing:
    def test_finds_letters_in_the_order_asked_and_names_the_missing_ones(self, ops: World) -> None:
        first = rejected(ops, {"tenantId": "ghost"})
        second = rejected(ops, {"tenantId": "ghost-2"})

        found, missing = find_dead_letters(
            [second.id, "nope", first.id, second.id], uow_factory=ops.uow_factory
        )

        assert ([second.id, first.id], ["nope"]) == ([d.id for d in found], missing)

    def test_lists_letters_not_replayed_yet(self, ops: World) -> None:
        first = rejected(ops, {"tenantId": "ghost"})
        ops.advance(seconds=1)
        second = rejected(ops, {"tenantId": "ghost-2"})
        replay(ops, first, MemoryInboundQueue())

        waiting = list_dead_letters(uow_factory=ops.uow_factory, replayed=False)

        assert [second.id] == [d.id for d in waiting]


class TestStoreStats:
    def test_an_empty_store_reads_zeros(self, world: World) -> None:
        stats = read_store_stats(uow_factory=world.uow_factory, clock=world.clock)

        assert dict.fromkeys(OutboxStatus, 0) == stats.outbox_by_status
        assert (None, timedelta(0), 0, 0, 0, {}) == (
            stats.oldest_due_at,
            stats.outbox_lag,
            stats.dead_letters_last_hour,
            stats.dead_letters_last_day,
            stats.dead_letters_not_replayed,
            stats.active_sessions,
        )

    def test_reads_outbox_lag_dead_letters_by_age_and_active_sessions_per_tenant(
        self, ops: World
    ) -> None:
        dead_outbox_message(ops)  # a dead letter 3 hours old
        ops.advance(hours=3)
        rejected(ops, {"tenantId": "ghost"})  # and one just now
        ops.queue()
        ops.message_from(SELLER_PHONE, "shop-a")
        ops.advance(seconds=90)

        stats = read_store_stats(uow_factory=ops.uow_factory, clock=ops.clock)

        assert 1 == stats.outbox_by_status[OutboxStatus.PENDING]
        assert 1 == stats.outbox_by_status[OutboxStatus.DEAD]
        assert timedelta(seconds=90) == stats.outbox_lag
        assert (1, 2, 2) == (
            stats.dead_letters_last_hour,
            stats.dead_letters_last_day,
            stats.dead_letters_not_replayed,
        )
        assert ({"shop-a": 1}, 1) == (stats.active_sessions, stats.active_sessions_total)
