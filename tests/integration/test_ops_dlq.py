# ruff: noqa: F811 - pytest fixtures imported from tests.support.webhook are parameters here
"""``livesell dlq list|replay`` through ``cli.main``, on Postgres and SQLite, with Redis.

Dead letters are made the way production makes them: an outbox message that the provider refuses
for good, and bad payloads run through the RQ job function. Replayed webhook payloads are run by
the real webhook worker part.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest
from rq.job import Job

from adapters.rq.spec import FAILURE_TTL_SECONDS, JOB_FUNCTION, JOB_TIMEOUT_SECONDS, QUEUE_NAME
from adapters.simulated.provider import SimulatedMessagingProvider
from adapters.system.executor import InlineExecutor
from application.dead_letters import ReplayStatus, replay_dead_letter
from application.outbox import BatchReport
from domain.dead_letters import DeadLetter, DeadLetterSource
from domain.outbox import DeliveryFailure, OutboxMessage, OutboxStatus
from domain.retry import RetryPolicy
from entrypoints import cli
from entrypoints.container import Container, build
from entrypoints.jobs import install_container, process_webhook_message
from ports.messaging import DeliveryFailed, MessagingProvider, SendReceipt, SendRequest
from ports.unit_of_work import UnitOfWorkFactory
from tests.support.redis_db import RedisTestDb, redis_db, redis_test_db  # noqa: F401 - fixtures
from tests.support.webhook import (
    RqState,
    RunningWorker,
    payload,
    seed_tenant,
    wait_until,
)

CLIENT = "+33698765432"


class RefusingProvider:
    """A provider that refuses every message for good, as Twilio does an invalid number."""

    def send(self, request: SendRequest) -> SendReceipt:
        raise DeliveryFailed(
            DeliveryFailure(transient=False, code="21211", message="Invalid 'To' Phone Number")
        )

    def sender_key(self, request: SendRequest) -> str:
        return request.from_phone or "+15005550006"


@attrs.define
class Ops:
    """A migrated database (Postgres or SQLite) and the Redis database, named in the environment
    the commands read; ``container`` is what a command builds from it."""

    backend: str
    uow_factory: UnitOfWorkFactory
    redis: RedisTestDb
    container: Container
    capsys: pytest.CaptureFixture[str]

    def run(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = cli.main(list(argv))
        out, err = self.capsys.readouterr()
        return code, out, err

    def letters(self, **filters: Any) -> list[DeadLetter]:
        with self.uow_factory() as uow:
            return list(uow.dead_letters.list(limit=1000, **filters))

    def letter(self, dead_letter_id: str) -> DeadLetter:
        with self.uow_factory() as uow:
            found = uow.dead_letters.get(dead_letter_id)
        assert found is not None
        return found

    def message(self, tenant_id: str, message_id: str) -> OutboxMessage:
        with self.uow_factory() as uow:
            found = uow.outbox.get(tenant_id, message_id)
        assert found is not None
        return found

    def send_due(self, provider: MessagingProvider) -> BatchReport:
        """One cycle of the production outbox sender, its sends inline."""
        sender = self.container.outbox_sender(
            uow_factory=self.uow_factory,
            provider=provider,
            policy=RetryPolicy(),
            batch_size=10,
            executor=InlineExecutor(),
        )
        return sender.run_once()

    def dead_outbox_message(self, tenant_id: str = "shop-a") -> tuple[str, DeadLetter]:
        """``livesell outbox send``, then a provider that refuses it for good (Twilio 21211)."""
        code, out, _ = self.run(
            "outbox", "send", "--tenant", tenant_id, "--to", CLIENT, "--body", "Merci"
        )
        assert 0 == code
        message_id = out.strip()
        self.send_due(RefusingProvider())
        (letter,) = self.letters(source=DeadLetterSource.MESSAGES_OUT, tenant_id=tenant_id)[:1]
        assert message_id == letter.source_id
        return message_id, letter

    def rejected(self, job_payload: dict[str, Any]) -> DeadLetter:
        """Run ``payload`` through the RQ job function; it must be rejected."""
        result = process_webhook_message(job_payload)
        assert "rejected" == result.get("status"), result
        return self.letter(str(result["deadLetterId"]))


@pytest.fixture(params=["postgres", "sqlite"])
def ops(
    request: pytest.FixtureRequest,
    redis_db: RedisTestDb,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Ops]:
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        uow_factory = request.getfixturevalue("pg_uow_factory")
    else:
        url = request.getfixturevalue("sqlite_url")
        uow_factory = request.getfixturevalue("sqlite_uow_factory")
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("REDIS_URL", redis_db.url)
    monkeypatch.delenv("TWILIO_ACCOUNT_SID", raising=False)
    container = build()
    install_container(container)
    seed_tenant(container, "shop-a")
    seed_tenant(container, "shop-b", sellers=())
    try:
        yield Ops(request.param, uow_factory, redis_db, container, capsys)
    finally:
        install_container(None)
        container.engine().dispose()


def cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


class TestList:
    def test_prints_a_table_of_every_dead_letter_newest_first(self, ops: Ops) -> None:
        _, outbox_letter = ops.dead_outbox_message()
        ghost = ops.rejected(payload("ghost", CLIENT))

        code, out, err = ops.run("dlq", "list")

        lines = out.splitlines()
        assert (0, "") == (code, err)
        assert ["ID", "TENANT", "SOURCE", "CODE", "ERROR", "ATTEMPTS", "CREATED", "REPLAYED"] == (
            cells(lines[0])
        )
        assert [
            ghost.id,
            "-",
            "webhook-processing",
            "unknown_tenant",
            "unknown tenant 'ghost'",
            "1",
            ghost.created_at.strftime("%Y-%m-%d %H:%M:%SZ"),
            "-",
        ] == cells(lines[1])
        assert [outbox_letter.id, "shop-a", "messages_out", "21211"] == cells(lines[2])[:4]
        assert "2 dead letter(s), 2 not replayed." == lines[-1]

    def test_cuts_long_errors_short_and_masks_phone_numbers_in_the_table(self, ops: Ops) -> None:
        ops.rejected(payload("shop-a", "0000", body="x" * 5000))
        ops.rejected(payload("shop-a", "+999 1234 5678"))

        _, out, _ = ops.run("dlq", "list")

        assert "invalid payload: body: is 5000 characters, at m…" in out
        assert "1234 5678" not in out
        assert "5678" in out

    def test_json_holds_every_field_and_the_payload_whole(self, ops: Ops) -> None:
        job_payload = payload("ghost", CLIENT)
        letter = ops.rejected(job_payload)

        code, out, _ = ops.run("dlq", "list", "--json")

        assert 0 == code
        assert [
            {
                "id": letter.id,
                "tenantId": None,
                "source": "webhook-processing",
                "sourceId": job_payload["providerMessageId"],
                "errorCode": "unknown_tenant",
                "error": "unknown tenant 'ghost'",
                "attempts": 1,
                "createdAt": letter.created_at.isoformat(),
                "replayedAt": None,
                "payload": job_payload,
            }
        ] == json.loads(out)

    def test_filters_by_tenant_source_age_and_count(self, ops: Ops) -> None:
        _, outbox_a = ops.dead_outbox_message("shop-a")
        _, outbox_b = ops.dead_outbox_message("shop-b")
        invalid = ops.rejected({"body": "no tenant"})
        old = attrs.evolve(
            ops.rejected(payload("ghost", CLIENT)),
            id="dl-old",
            created_at=datetime.now(UTC) - timedelta(days=3),
        )
        with ops.uow_factory() as uow:
            uow.dead_letters.add(old)
            uow.commit()

        def listed(*argv: str) -> list[str]:
            code, out, _ = ops.run("dlq", "list", "--json", *argv)
            assert 0 == code
            return [d["id"] for d in json.loads(out)]

        assert {outbox_a.id} == set(listed("--tenant", "shop-a"))
        assert {outbox_a.id, outbox_b.id} == set(listed("--source", "outbox"))
        assert "dl-old" not in listed("--since", "2d")
        assert "dl-old" in listed("--since", "4d")
        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        assert "dl-old" not in listed("--since", since)
        assert invalid.id in listed("--source", "webhook")
        assert outbox_a.id not in listed("--source", "webhook-processing")
        assert 1 == len(listed("--limit", "1"))

    def test_not_replayed_leaves_out_the_replayed_ones(self, ops: Ops) -> None:
        _, replayed = ops.dead_outbox_message()
        waiting = ops.rejected(payload("ghost", CLIENT))
        ops.run("dlq", "replay", replayed.id)

        code, out, _ = ops.run("dlq", "list", "--not-replayed", "--json")

        assert (0, [waiting.id]) == (code, [d["id"] for d in json.loads(out)])

    def test_an_empty_table_says_so(self, ops: Ops) -> None:
        assert (0, "No dead letters match.\n", "") == ops.run("dlq", "list")

    def test_a_bad_since_is_one_line_and_exit_2(self, ops: Ops) -> None:
        code, out, err = ops.run("dlq", "list", "--since", "yesterday")

        assert (2, "") == (code, out)
        assert [
            "livesell dlq list: --since 'yesterday': use ISO-8601 (2026-03-02T18:00:00Z) or an age"
            " such as 30m, 1h, 2d, 1w"
        ] == err.splitlines()


class TestReplayOutbox:
    def test_puts_the_message_back_to_pending_with_fresh_attempts_and_marks_the_letter(
        self, ops: Ops
    ) -> None:
        message_id, letter = ops.dead_outbox_message()

        code, out, err = ops.run("dlq", "replay", letter.id)

        message = ops.message("shop-a", message_id)
        assert (0, "") == (code, err)
        assert f"outbox message {message_id} is pending again with fresh attempts" in out
        assert "Replayed 1, already replayed 0, skipped 0, failed 0." in out
        assert (OutboxStatus.PENDING, 0, None) == (
            message.status,
            message.attempts,
            message.locked_until,
        )
        assert ops.letter(letter.id).replayed_at is not None

    def test_replaying_twice_does_nothing_the_second_time(self, ops: Ops) -> None:
        message_id, letter = ops.dead_outbox_message()
        ops.run("dlq", "replay", letter.id)
        before = ops.message("shop-a", message_id)
        replayed_at = ops.letter(letter.id).replayed_at

        code, out, _ = ops.run("dlq", "replay", letter.id)

        assert 0 == code
        assert "already replayed" in out
        assert "Replayed 0, already replayed 1" in out
        assert before == ops.message("shop-a", message_id)
        assert replayed_at == ops.letter(letter.id).replayed_at

    def test_a_dry_run_says_what_would_happen_and_changes_nothing(self, ops: Ops) -> None:
        message_id, letter = ops.dead_outbox_message()

        code, out, _ = ops.run("dlq", "replay", "--dry-run", letter.id)

        assert 0 == code
        assert "would requeue" in out
        assert f"would put outbox message {message_id} back to pending (attempts 1 -> 0)" in out
        assert "Dry run: would replay 1, already replayed 0, skipped 0, failed 0." in out
        assert OutboxStatus.DEAD == ops.message("shop-a", message_id).status
        assert ops.letter(letter.id).replayed_at is None

    def test_a_message_sent_meanwhile_is_skipped_with_exit_1(self, ops: Ops) -> None:
        message_id, letter = ops.dead_outbox_message()
        ops.run("dlq", "replay", letter.id)
        ops.send_due(SimulatedMessagingProvider())
        with ops.uow_factory() as uow:  # an operator un-marks it by hand
            uow.dead_letters.add(attrs.evolve(letter, id="dl-copy"))
            uow.commit()

        code, out, _ = ops.run("dlq", "replay", "dl-copy")

        assert 1 == code
        assert f"outbox message {message_id} is sent, not dead; nothing to replay" in out
        assert ops.letter("dl-copy").replayed_at is None


class TestReplayWebhook:
    def test_enqueues_the_payload_with_the_queues_own_job_settings(self, ops: Ops) -> None:
        job_payload = payload("ghost", CLIENT)
        letter = ops.rejected(job_payload)

        code, out, _ = ops.run("dlq", "replay", "--json", letter.id)

        (result,) = json.loads(out)
        job = Job.fetch(result["jobId"], connection=ops.redis.client)
        assert 0 == code
        assert ("enqueued", False) == (result["result"], result["dryRun"])
        assert 1 == RqState(ops.redis.url).waiting()
        assert (JOB_FUNCTION, QUEUE_NAME, (job_payload,)) == (job.func_name, job.origin, job.args)
        assert (4, [1, 2, 4, 8], JOB_TIMEOUT_SECONDS, FAILURE_TTL_SECONDS) == (
            job.retries_left,
            job.retry_intervals,
            job.timeout,
            job.failure_ttl,
        )
        assert ops.letter(letter.id).replayed_at is not None

    def test_a_payload_whose_tenant_now_exists_is_processed_by_the_worker(self, ops: Ops) -> None:
        letter = ops.rejected(payload("shop-late", CLIENT, message_id="SMlate"))
        seed_tenant(ops.container, "shop-late")

        ops.run("dlq", "replay", letter.id)
        with RunningWorker(ops.container):
            wait_until(RqState(ops.redis.url).idle)

        with ops.uow_factory() as uow:
            record = uow.inbound.get("shop-late", "SMlate")
        assert record is not None
        assert record.is_processed

    def test_a_payload_with_no_tenant_still_invalid_is_rejected_again_with_a_new_dead_letter(
        self, ops: Ops
    ) -> None:
        letter = ops.rejected({"body": "no tenant, no sender"})

        code, _, _ = ops.run("dlq", "replay", letter.id)
        with RunningWorker(ops.container):
            wait_until(lambda: len(ops.letters()) == 2)

        (again,) = [d for d in ops.letters() if d.id != letter.id]
        assert 0 == code
        assert (None, "invalid_payload", {"body": "no tenant, no sender"}, None) == (
            again.tenant_id,
            again.error_code,
            again.payload,
            again.replayed_at,
        )
        assert ops.letter(letter.id).replayed_at is not None

    def test_replaying_twice_enqueues_once(self, ops: Ops) -> None:
        letter = ops.rejected(payload("ghost", CLIENT))

        first, _, _ = ops.run("dlq", "replay", letter.id)
        second, out, _ = ops.run("dlq", "replay", letter.id)

        assert (0, 0) == (first, second)
        assert "already replayed" in out
        assert 1 == RqState(ops.redis.url).waiting()

    def test_a_dry_run_enqueues_nothing(self, ops: Ops) -> None:
        letter = ops.rejected(payload("ghost", CLIENT))

        code, out, _ = ops.run("dlq", "replay", "--dry-run", letter.id)

        assert 0 == code
        assert f"would enqueue payload ghost/{letter.source_id} on webhook-processing" in out
        assert 0 == RqState(ops.redis.url).waiting()
        assert ops.letter(letter.id).replayed_at is None

    def test_redis_unreachable_fails_the_replay_with_exit_1_and_changes_nothing(
        self, ops: Ops, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        letter = ops.rejected(payload("ghost", CLIENT))
        monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")

        code, out, _ = ops.run("dlq", "replay", letter.id)

        assert 1 == code
        assert "FAILED" in out
        assert "not replayed, the queue is unavailable" in out
        assert ops.letter(letter.id).replayed_at is None


class TestReplayAll:
    def test_replays_every_letter_not_replayed_yet_of_the_selection_oldest_first(
        self, ops: Ops
    ) -> None:
        _, outbox_a = ops.dead_outbox_message("shop-a")
        _, outbox_b = ops.dead_outbox_message("shop-b")
        webhook = ops.rejected(payload("ghost", CLIENT))

        code, out, _ = ops.run("dlq", "replay", "--all", "--source", "outbox", "--json")

        assert 0 == code
        assert [(outbox_a.id, "requeued"), (outbox_b.id, "requeued")] == [
            (r["id"], r["result"]) for r in json.loads(out)
        ]
        assert ops.letter(webhook.id).replayed_at is None
        code, out, _ = ops.run("dlq", "replay", "--all", "--json")
        assert [(webhook.id, "enqueued")] == [(r["id"], r["result"]) for r in json.loads(out)]
        assert (0, "No dead letters to replay.\n", "") == ops.run("dlq", "replay", "--all")

    def test_a_limit_takes_the_most_recent_and_a_second_run_takes_the_rest(self, ops: Ops) -> None:
        older = ops.rejected(payload("ghost", CLIENT))
        newer = ops.rejected(payload("ghost", CLIENT))

        code, out, _ = ops.run("dlq", "replay", "--all", "--limit", "1")

        assert 0 == code
        assert "--limit 1 reached: run it again for the older dead letters." in out
        assert (None, True) == (
            ops.letter(older.id).replayed_at,
            ops.letter(newer.id).replayed_at is not None,
        )
        ops.run("dlq", "replay", "--all", "--limit", "1")
        assert ops.letter(older.id).replayed_at is not None

    def test_the_tenant_filter_keeps_other_tenants_letters_untouched(self, ops: Ops) -> None:
        _, outbox_a = ops.dead_outbox_message("shop-a")
        _, outbox_b = ops.dead_outbox_message("shop-b")

        ops.run("dlq", "replay", "--all", "--tenant", "shop-b")

        assert ops.letter(outbox_a.id).replayed_at is None
        assert ops.letter(outbox_b.id).replayed_at is not None


class TestReplayInput:
    def test_an_unknown_id_replays_nothing_and_exits_2_with_one_line(self, ops: Ops) -> None:
        _, letter = ops.dead_outbox_message()

        code, out, err = ops.run("dlq", "replay", letter.id, "dl-nope")

        assert (2, "") == (code, out)
        assert [
            "livesell dlq replay: unknown dead letter id(s): dl-nope; nothing replayed"
        ] == err.splitlines()
        assert ops.letter(letter.id).replayed_at is None

    @pytest.mark.parametrize(
        ("argv", "problem"),
        [
            ((), "name the dead letter ids to replay (see `livesell dlq list`), or --all"),
            (("dl-1", "--all"), "name dead letter ids or --all, not both"),
            (("dl-1", "--tenant", "shop-a"), "--tenant and --source select dead letters for --all"),
        ],
    )
    def test_ids_and_all_are_one_or_the_other(
        self, ops: Ops, argv: tuple[str, ...], problem: str
    ) -> None:
        code, _, err = ops.run("dlq", "replay", *argv)

        assert 2 == code
        assert 1 == len(err.splitlines())
        assert problem in err


class TestConcurrentReplays:
    def test_eight_replays_of_one_outbox_letter_at_once_requeue_it_once(self, ops: Ops) -> None:
        message_id, letter = ops.dead_outbox_message()

        statuses = replay_at_once(ops, letter.id, 8)

        assert [ReplayStatus.REQUEUED] == [
            s for s in statuses if s is not ReplayStatus.ALREADY_REPLAYED
        ]
        assert OutboxStatus.PENDING == ops.message("shop-a", message_id).status

    def test_eight_replays_of_one_webhook_letter_at_once_enqueue_it_once(self, ops: Ops) -> None:
        letter = ops.rejected(payload("ghost", CLIENT))

        statuses = replay_at_once(ops, letter.id, 8)

        assert [ReplayStatus.ENQUEUED] == [
            s for s in statuses if s is not ReplayStatus.ALREADY_REPLAYED
        ]
        assert 1 == RqState(ops.redis.url).waiting()


def replay_at_once(ops: Ops, dead_letter_id: str, count: int) -> list[ReplayStatus]:
    """``count`` threads, each with its own container (its own pool), replay at the same moment."""
    containers = [build() for _ in range(count)]
    barrier = threading.Barrier(count)
    statuses: list[ReplayStatus] = []
    lock = threading.Lock()

    def replay(container: Container) -> None:
        barrier.wait()
        result = replay_dead_letter(
            dead_letter_id,
            uow_factory=container.uow_factory(),
            queue=container.inbound_queue(),
            clock=container.clock(),
        )
        with lock:
            statuses.append(result.status)

    threads = [threading.Thread(target=replay, args=(c,)) for c in containers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for container in containers:
        container.engine().dispose()
    assert count == len(statuses)
    return statuses
