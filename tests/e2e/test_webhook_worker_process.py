# ruff: noqa: F811 - pytest fixtures imported from tests.support.webhook are parameters here
"""``livesell worker --only webhook`` as real processes on the real services: a clean stop on
SIGTERM with jobs in flight, an immediate stop on a second signal, and a worker killed with
SIGKILL mid-job whose jobs run again on another worker and are recorded once (SPEC §4)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from rq.registry import StartedJobRegistry

from adapters.rq.connection import redis_connection
from adapters.rq.queue import RqInboundQueue
from adapters.rq.spec import JobSpec
from entrypoints.container import Container
from tests.support.redis_db import RedisTestDb
from tests.support.webhook import (  # noqa: F401 - fixtures
    SELLER_PHONE,
    RqState,
    client_phone,
    count,
    payload,
    redis_db,
    redis_test_db,
    rq_state,
    seed_tenant,
    wait_until,
    webhook_container,
)

pytestmark = pytest.mark.slow

TENANT = "boutique-lea"
LIVESELL = str(Path(sys.executable).with_name("livesell"))
SLOW_PREFIX = "SM-SLOW"
REDELIVERY_BUDGET_SECONDS = 60


class WorkerProcess:
    """One ``livesell worker --only webhook`` process; stopped by its pid only."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.log_file = log_path.open("ab")
        self.process = subprocess.Popen(
            [LIVESELL, "worker", "--only", "webhook"],
            env=env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def lines(self) -> list[dict[str, object]]:
        out = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(raw))
            except ValueError:
                continue
        return out

    def logged(self, message: str, **context: object) -> bool:
        return any(
            line.get("message") == message
            and all(line.get(key) == value for key, value in context.items())
            for line in self.lines()
        )

    def wait_started(self) -> None:
        """Until the runner says every part (and every process of the part) is up."""
        wait_until(
            lambda: (
                self.logged("Worker started successfully", worker="livesell")
                or self.process.poll() is not None
            ),
            timeout=60,
        )
        assert self.process.poll() is None, self.log_path.read_text()

    def children(self) -> list[int]:
        found = subprocess.run(
            ["pgrep", "-P", str(self.pid)], capture_output=True, text=True, check=False
        )
        return [int(pid) for pid in found.stdout.split()]

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.log_file.close()


@pytest.fixture
def worker_env(postgres_url: str, redis_db: RedisTestDb) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_", "REDIS_", "WEBHOOK_", "LIVE_SESSION", "SENTRY"))
    }
    env.update(
        DATABASE_URL=postgres_url,
        REDIS_URL=redis_db.url,
        WEBHOOK_WORKER_CONCURRENCY="5",
        LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    return env


class Workers:
    """The worker processes a test started; each is stopped by its own pid at the end."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.started: list[WorkerProcess] = []

    def spawn(self) -> WorkerProcess:
        worker = WorkerProcess(self.env, self.log_dir / f"worker-{len(self.started)}.log")
        self.started.append(worker)
        return worker

    def close(self) -> None:
        for worker in self.started:
            worker.close()


@pytest.fixture
def workers(worker_env: dict[str, str], tmp_path: Path) -> Iterator[Workers]:
    spawned = Workers(worker_env, tmp_path)
    try:
        yield spawned
    finally:
        spawned.close()


@pytest.fixture
def slow_inserts(pg_engine: sa.Engine) -> Iterator[None]:
    """Recording a message whose id starts with SM-SLOW takes 3 s (a slow job, in flight)."""
    with pg_engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE OR REPLACE FUNCTION livesell_test_slow() RETURNS trigger AS $$"
            " BEGIN IF NEW.provider_message_id LIKE 'SM-SLOW%%' THEN PERFORM pg_sleep(3);"
            " END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
        )
        connection.exec_driver_sql(
            "CREATE TRIGGER livesell_test_slow BEFORE INSERT ON inbound_messages"
            " FOR EACH ROW EXECUTE FUNCTION livesell_test_slow()"
        )
    try:
        yield
    finally:
        with pg_engine.begin() as connection:
            connection.exec_driver_sql(
                "DROP TRIGGER IF EXISTS livesell_test_slow ON inbound_messages"
            )
            connection.exec_driver_sql("DROP FUNCTION IF EXISTS livesell_test_slow()")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


def queue_for(container: Container, redis_db: RedisTestDb) -> RqInboundQueue:
    return RqInboundQueue(
        redis_connection(redis_db.url), JobSpec.webhook_processing(container.retry_policy())
    )


def recorded(engine: sa.Engine, prefix: str = "SM-") -> int:
    return count(
        engine,
        "SELECT count(*) FROM inbound_messages WHERE status = 'processed'"
        " AND provider_message_id LIKE :p",
        {"p": f"{prefix}%"},
    )


def started_jobs(redis_db: RedisTestDb) -> int:
    return len(StartedJobRegistry("webhook-processing", connection=redis_db.client))


class TestGracefulStop:
    def test_sigterm_lets_the_jobs_in_flight_finish_and_exits_0_with_none_left_started(
        self,
        webhook_container: Container,
        slow_inserts: None,
        workers: Workers,
        rq_state: RqState,
        redis_db: RedisTestDb,
        pg_engine: sa.Engine,
    ) -> None:
        seed_tenant(webhook_container, TENANT)
        worker = workers.spawn()
        worker.wait_started()
        queue = queue_for(webhook_container, redis_db)
        queue.enqueue_many(
            [payload(TENANT, client_phone(n), message_id=f"{SLOW_PREFIX}-{n}") for n in range(5)]
            + [payload(TENANT, SELLER_PHONE, message_id=f"SM-after-{n}") for n in range(20)]
        )
        wait_until(lambda: started_jobs(redis_db) == 5, timeout=10)

        signalled = time.monotonic()
        worker.signal(signal.SIGTERM)
        code = worker.wait(timeout=35)
        took = time.monotonic() - signalled

        assert code == 0, worker.log_path.read_text()
        assert took < 30
        assert started_jobs(redis_db) == 0
        assert recorded(pg_engine, SLOW_PREFIX) == 5, "the jobs in flight finished"
        assert rq_state.failed() == 0
        assert worker.logged("Shutdown requested, finishing in-flight work")
        assert worker.logged("Worker stopped")
        untouched = rq_state.waiting()
        assert untouched + recorded(pg_engine, "SM-after-") == 20, "nothing lost"

    def test_a_second_signal_stops_at_once(
        self,
        webhook_container: Container,
        slow_inserts: None,
        workers: Workers,
        redis_db: RedisTestDb,
    ) -> None:
        seed_tenant(webhook_container, TENANT)
        worker = workers.spawn()
        worker.wait_started()
        queue_for(webhook_container, redis_db).enqueue_many(
            [payload(TENANT, client_phone(n), message_id=f"{SLOW_PREFIX}-{n}") for n in range(5)]
        )
        wait_until(lambda: started_jobs(redis_db) == 5, timeout=10)

        children = worker.children()
        worker.signal(signal.SIGTERM)
        time.sleep(0.3)
        signalled = time.monotonic()
        worker.signal(signal.SIGTERM)
        code = worker.wait(timeout=10)

        assert time.monotonic() - signalled < 2
        assert code != 0
        assert worker.logged("Second signal: stopping at once")
        wait_until(lambda: not any(_alive(pid) for pid in children), timeout=5)


class TestKilledWorker:
    def test_jobs_of_a_worker_killed_mid_job_run_again_within_a_minute_and_are_recorded_once(
        self,
        webhook_container: Container,
        slow_inserts: None,
        workers: Workers,
        rq_state: RqState,
        redis_db: RedisTestDb,
        pg_engine: sa.Engine,
    ) -> None:
        seed_tenant(webhook_container, TENANT)
        for n in range(5):  # a tenant per slow job: no live-session row shared while they sleep
            seed_tenant(webhook_container, f"{TENANT}-{n}", sellers=())
        first = workers.spawn()
        first.wait_started()
        slow = [
            payload(f"{TENANT}-{n}", client_phone(n), message_id=f"{SLOW_PREFIX}-{n}")
            for n in range(5)
        ]
        queue_for(webhook_container, redis_db).enqueue_many(
            [*slow, *(payload(TENANT, SELLER_PHONE, message_id=f"SM-more-{n}") for n in range(30))]
        )
        wait_until(lambda: started_jobs(redis_db) == 5, timeout=10)

        first.signal(signal.SIGKILL)
        first.wait(timeout=10)
        killed = time.monotonic()
        assert started_jobs(redis_db) == 5, "the killed worker's jobs are left started"
        assert recorded(pg_engine, SLOW_PREFIX) == 0

        second = workers.spawn()
        second.wait_started()
        wait_until(lambda: recorded(pg_engine, SLOW_PREFIX) == 5, timeout=REDELIVERY_BUDGET_SECONDS)
        redelivered_after = time.monotonic() - killed
        wait_until(lambda: rq_state.idle() and recorded(pg_engine) == 35, timeout=30)

        print(f"\nkilled worker's jobs re-run and recorded {redelivered_after:.1f} s later")
        assert redelivered_after < REDELIVERY_BUDGET_SECONDS
        assert count(pg_engine, "SELECT count(*) FROM inbound_messages") == 35
        assert (
            count(pg_engine, "SELECT count(DISTINCT provider_message_id) FROM inbound_messages")
            == 35
        )
        assert (
            count(
                pg_engine,
                "SELECT count(*) FROM event_logs WHERE event_type = 'message.classified'",
            )
            == 35
        )
        assert count(pg_engine, "SELECT count(*) FROM dead_letter_jobs") == 0
        assert started_jobs(redis_db) == 0
        assert rq_state.failed() == 0
