# ruff: noqa: F811 - pytest fixtures imported from tests.support.webhook are parameters here
"""``livesell stats`` through ``cli.main``, on Postgres and SQLite, with RQ's registries in Redis.

The queue's figures come from RQ's own keys: jobs waiting on the queue, scheduled for a later run,
and in the failed registry, put there through RQ's API as a worker would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
from rq import Queue
from rq.registry import FailedJobRegistry

from adapters.rq.connection import redis_connection
from adapters.rq.queue import RqInboundQueue
from adapters.rq.spec import JOB_FUNCTION, QUEUE_NAME, JobSpec
from domain.dead_letters import DeadLetter, DeadLetterSource
from domain.live_sessions import LiveSession
from domain.outbox import OutboxMessage, OutboxStatus
from domain.retry import RetryPolicy
from entrypoints import cli
from ports.unit_of_work import UnitOfWorkFactory
from tests.contract.builders import tenant
from tests.support.redis_db import RedisTestDb, redis_db, redis_test_db  # noqa: F401 - fixtures
from tests.support.webhook import (  # noqa: F401 - fixtures
    payload,
    seed_tenant,
)

CLIENT = "+33698765432"
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


@attrs.define
class Stats:
    uow_factory: UnitOfWorkFactory
    redis: RedisTestDb
    capsys: pytest.CaptureFixture[str]
    now: datetime = attrs.field(factory=lambda: datetime.now(UTC))

    def run(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = cli.main(["stats", *argv])
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self) -> tuple[int, dict[str, Any]]:
        code, out, _ = self.run("--json")
        return code, json.loads(out)

    def add(self, *rows: Any) -> None:
        with self.uow_factory() as uow:
            for row in rows:
                if isinstance(row, OutboxMessage):
                    uow.outbox.add(row)
                elif isinstance(row, DeadLetter):
                    uow.dead_letters.add(row)
                else:
                    uow.sessions.add(row)
            uow.commit()

    def message(self, message_id: str, tenant_id: str = "shop-a", **changes: Any) -> OutboxMessage:
        message = OutboxMessage.new(
            id=message_id,
            tenant_id=tenant_id,
            to_phone=CLIENT,
            body="Merci",
            correlation_id=f"corr-{message_id}",
            now=self.now,
        )
        return attrs.evolve(message, **changes)

    def letter(self, letter_id: str, age: timedelta) -> DeadLetter:
        return DeadLetter(
            id=letter_id,
            tenant_id="shop-a",
            source=DeadLetterSource.WEBHOOK_PROCESSING,
            source_id="SM1",
            payload={"tenantId": "shop-a"},
            error="boom",
            attempts=5,
            created_at=self.now - age,
        )


@pytest.fixture(params=["postgres", "sqlite"])
def stats(
    request: pytest.FixtureRequest,
    redis_db: RedisTestDb,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Stats:
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        uow_factory = request.getfixturevalue("pg_uow_factory")
    else:
        url = request.getfixturevalue("sqlite_url")
        uow_factory = request.getfixturevalue("sqlite_uow_factory")
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("REDIS_URL", redis_db.url)
    stats = Stats(uow_factory, redis_db, capsys)
    with uow_factory() as uow:
        for tenant_id in ("shop-a", "shop-b", "shop-c"):
            uow.tenants.add(tenant(tenant_id))
        uow.commit()
    return stats


@pytest.fixture
def busy(stats: Stats) -> Stats:
    """3 jobs waiting, 1 scheduled, 2 failed; 6 outbox rows; 3 dead letters; 2 active sessions."""
    connection = redis_connection(stats.redis.url)
    queue = RqInboundQueue(connection, JobSpec.webhook_processing(_policy()))
    for tenant_id in ("shop-a", "shop-a", "shop-b"):
        queue.enqueue(payload(tenant_id, CLIENT))
    rq_queue = Queue(QUEUE_NAME, connection=connection)
    rq_queue.enqueue_in(timedelta(minutes=5), JOB_FUNCTION, payload("shop-a", CLIENT))
    failed = FailedJobRegistry(queue=rq_queue)
    for _ in range(2):
        job = rq_queue.create_job(JOB_FUNCTION, args=(payload("shop-a", CLIENT),))
        job.save()
        failed.add(job, ttl=3600, exc_string="ConnectionError")
    stats.add(
        stats.message("m-due-90s", next_attempt_at=stats.now - timedelta(seconds=90)),
        stats.message("m-due-now"),
        stats.message(
            "m-later", status=OutboxStatus.FAILED, next_attempt_at=stats.now + timedelta(hours=1)
        ),
        stats.message("m-sent", status=OutboxStatus.SENT, attempts=1),
        stats.message("m-dead", tenant_id="shop-b", status=OutboxStatus.DEAD, attempts=5),
        stats.message("m-expired", status=OutboxStatus.EXPIRED, attempts=1),
        stats.letter("dl-10m", timedelta(minutes=10)),
        stats.letter("dl-5h", timedelta(hours=5)),
        stats.letter("dl-3d", timedelta(days=3)),
        LiveSession.open(id="s-a", tenant_id="shop-a", now=stats.now, correlation_id="c"),
        LiveSession.open(id="s-c", tenant_id="shop-c", now=stats.now, correlation_id="c"),
    )
    return stats


def _policy() -> RetryPolicy:
    return RetryPolicy()


class TestStats:
    def test_json_holds_the_queue_the_outbox_dead_letters_and_sessions(self, busy: Stats) -> None:
        code, out = busy.json()

        assert 0 == code
        assert {
            "name": "webhook-processing",
            "available": True,
            "waiting": 3,
            "started": 0,
            "scheduled": 1,
            "failed": 2,
        } == out["queue"]
        assert {
            "pending": 2,
            "sending": 0,
            "sent": 1,
            "failed": 1,
            "dead": 1,
            "expired": 1,
        } == out["outbox"]["byStatus"]
        assert 90 <= out["outbox"]["lagSeconds"] < 120
        assert (busy.now - timedelta(seconds=90)).isoformat() == out["outbox"]["oldestDueAt"]
        assert {"lastHour": 1, "lastDay": 2, "notReplayed": 3} == out["deadLetters"]
        assert {"total": 2, "byTenant": {"shop-a": 1, "shop-c": 1}} == out["activeSessions"]

    def test_the_text_report_reads_well(self, busy: Stats) -> None:
        code, out, err = busy.run()

        assert (0, "") == (code, err)
        lines = [line.split() for line in out.splitlines()]
        assert ["queue", "webhook-processing", f"({busy.redis.url})"] == lines[2]
        assert [["waiting", "3"], ["started", "0"], ["scheduled", "1"], ["failed", "2"]] == (
            lines[3:7]
        )
        assert ["pending", "2"] in lines
        assert ["dead", "1"] in lines
        assert ["expired", "1"] in lines
        assert "  oldest due    waiting 9" in out
        assert ["last", "hour", "1"] in lines
        assert ["not", "replayed", "3"] in lines
        assert ["active", "sessions:", "2"] in lines
        assert ["shop-c", "1"] in lines

    def test_an_empty_service_reads_zeros(self, stats: Stats) -> None:
        code, out = stats.json()

        assert 0 == code
        assert (0, 0, 0, 0) == tuple(
            out["queue"][k] for k in ("waiting", "started", "scheduled", "failed")
        )
        assert {
            "pending": 0,
            "sending": 0,
            "sent": 0,
            "failed": 0,
            "dead": 0,
            "expired": 0,
        } == out["outbox"]["byStatus"]
        assert (None, 0) == (out["outbox"]["oldestDueAt"], out["outbox"]["lagSeconds"])
        assert "nothing is due" in stats.run()[1]

    def test_redis_unreachable_still_prints_the_database_figures_and_exits_1(
        self, busy: Stats, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("REDIS_URL", UNREACHABLE_REDIS)

        code, out = busy.json()
        text_code, text, _ = busy.run()

        assert (1, 1) == (code, text_code)
        assert (False, "webhook-processing") == (out["queue"]["available"], out["queue"]["name"])
        assert out["queue"]["error"].startswith("Redis is unavailable")
        assert 1 == out["outbox"]["byStatus"]["dead"]
        assert "  unavailable: Redis is unavailable" in text
        assert "outbox (messages_out)" in text

    def test_reads_the_queue_without_loading_prometheus(self, busy: Stats) -> None:
        """The queue is read through the QueueMonitor port, as /metrics reads it."""
        script = (
            "import json, sys\n"
            "from entrypoints import cli\n"
            "code = cli.main(['stats', '--json'])\n"
            "print(json.dumps([code, 'prometheus_client' in sys.modules]))\n"
        )

        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
        )

        *report, verdict = done.stdout.strip().splitlines()
        assert [0, False] == json.loads(verdict)
        assert 3 == json.loads("\n".join(report))["queue"]["waiting"]

    def test_the_database_unreachable_still_prints_the_queue_and_exits_1(
        self, busy: Stats, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("DATABASE_URL", "postgresql://livesell@127.0.0.1:1/livesell")

        code, out = busy.json()

        assert 1 == code
        assert 3 == out["queue"]["waiting"]
        assert False is out["store"]["available"]
        assert "outbox" not in out


class TestHelp:
    def test_every_command_and_action_has_help(self, capsys: pytest.CaptureFixture[str]) -> None:
        for argv in (
            [],
            ["dlq"],
            ["dlq", "list"],
            ["dlq", "replay"],
            ["stats"],
        ):
            with pytest.raises(SystemExit) as exit_:
                cli.main([*argv, "--help"])
            out = capsys.readouterr().out
            assert 0 == exit_.value.code
            assert out.startswith("usage: livesell")
        top = _help(capsys, [])
        assert "dlq       list and replay dead letters" in top
        assert "stats     queue depths, outbox by status, dead letters, active sessions" in top


def _help(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit):
        cli.main([*argv, "--help"])
    return capsys.readouterr().out


class TestRqInfo:
    def test_rq_info_reads_our_queue_unchanged(self, stats: Stats) -> None:
        """DEPLOYMENT.md "Watching the queue": RQ's own CLI on the queue the workers use."""
        queue = RqInboundQueue(
            redis_connection(stats.redis.url), JobSpec.webhook_processing(_policy())
        )
        for tenant_id in ("shop-a", "shop-b"):
            queue.enqueue(payload(tenant_id, CLIENT))
        rq = Path(sys.executable).with_name("rq")

        shown = subprocess.run(
            [str(rq), "info", "--url", stats.redis.url, QUEUE_NAME],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout

        assert "webhook-processing |" in shown
        assert " 2, 0 executing, 0 finished, 0 failed" in shown
        assert "1 queues, 2 jobs total" in shown
