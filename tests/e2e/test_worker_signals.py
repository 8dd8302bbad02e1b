# ruff: noqa: F811 - pytest fixtures imported from tests.support.webhook are parameters here
"""``livesell worker`` (every part, the webhook worker with a child process) stopped the ways
process managers stop it (issue 12 §5, ADR 0014), as real processes on the real services.

systemd's default ``KillMode=control-group`` sends SIGTERM to every process of the unit
(https://www.freedesktop.org/software/systemd/man/latest/systemd.kill.html), as honcho/foreman
and ``docker stop`` on a shell-form entrypoint signal the whole group, and coreutils ``timeout``
sends its signal to the process group it runs the command in
(https://www.gnu.org/software/coreutils/manual/html_node/timeout-invocation.html). Each way ends
with exit 0 within the 30 s grace period once the jobs in flight finish, with no traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from rq.registry import StartedJobRegistry

from adapters.rq.connection import redis_connection
from adapters.rq.queue import RqInboundQueue
from adapters.rq.spec import JobSpec
from entrypoints.container import Container
from tests.e2e.test_webhook_worker_process import slow_inserts  # noqa: F401 - fixture
from tests.support.redis_db import RedisTestDb
from tests.support.webhook import (  # noqa: F401 - fixtures
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

LIVESELL = str(Path(sys.executable).with_name("livesell"))
SLOW_PREFIX = "SM-SLOW"
GRACE_SECONDS = 30


class Service:
    """One ``livesell worker`` process, leader of its own process group."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.log_file = log_path.open("ab")
        self.process = subprocess.Popen(
            [LIVESELL, "worker"],
            env=env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.process.pid

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def logged(self, message: str, **context: object) -> bool:
        for raw in self.text().splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if line.get("message") == message and all(
                line.get(key) == value for key, value in context.items()
            ):
                return True
        return False

    def wait_started(self) -> None:
        wait_until(
            lambda: (
                self.logged("Worker started successfully", worker="livesell")
                or self.process.poll() is not None
            ),
            timeout=90,
        )
        assert self.process.poll() is None, self.text()

    def children(self) -> list[int]:
        found = subprocess.run(
            ["pgrep", "-P", str(self.pid)], capture_output=True, text=True, check=False
        )
        return [int(pid) for pid in found.stdout.split()]

    def stopped_within(
        self, send: Callable[[], None], timeout: float = GRACE_SECONDS + 10
    ) -> tuple[int, float]:
        """Send the signal, wait for the exit: (exit code, seconds taken)."""
        signalled = time.monotonic()
        send()
        code = self.process.wait(timeout=timeout)
        return code, time.monotonic() - signalled

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.log_file.close()


@pytest.fixture
def service_env(postgres_url: str, redis_db: RedisTestDb, tmp_path: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(
            ("DATABASE_", "REDIS_", "WEBHOOK_", "OUTBOX_", "SIMULATED_", "TWILIO_", "SENTRY")
        )
    }
    env.update(
        DATABASE_URL=postgres_url,
        REDIS_URL=redis_db.url,
        WEBHOOK_WORKER_CONCURRENCY="4",
        MESSAGING_PROVIDER="simulated",
        SIMULATED_SENT_LOG=str(tmp_path / "sent.jsonl"),
        LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture
def spawn(service_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[], Service]]:
    """Starts a service; each is killed (its group, by pid) at the end if still running."""
    started: list[Service] = []

    def start() -> Service:
        service = Service(service_env, tmp_path / f"service-{len(started)}.log")
        started.append(service)
        return service

    try:
        yield start
    finally:
        for service in started:
            service.close()


def queue_for(container: Container, redis_db: RedisTestDb) -> RqInboundQueue:
    return RqInboundQueue(
        redis_connection(redis_db.url), JobSpec.webhook_processing(container.retry_policy())
    )


def recorded(engine: sa.Engine, prefix: str) -> int:
    return count(
        engine,
        "SELECT count(*) FROM inbound_messages WHERE status = 'processed'"
        " AND provider_message_id LIKE :p",
        {"p": f"{prefix}%"},
    )


def started_jobs(redis_db: RedisTestDb) -> int:
    return len(StartedJobRegistry("webhook-processing", connection=redis_db.client))


def slow_jobs(container: Container, count_: int, first: int = 0) -> list[dict[str, object]]:
    """One tenant per slow job, so no live-session row is shared while they sleep."""
    jobs = []
    for n in range(first, first + count_):
        tenant = f"boutique-signal-{n}"
        seed_tenant(container, tenant, sellers=())
        jobs.append(payload(tenant, client_phone(n), message_id=f"{SLOW_PREFIX}-{n}"))
    return jobs


def _ways() -> dict[str, Callable[[Service], None]]:
    return {
        "SIGTERM to the main process": lambda s: os.kill(s.pid, signal.SIGTERM),
        "SIGTERM to the whole process group": lambda s: os.killpg(s.pid, signal.SIGTERM),
        "SIGINT to the main process": lambda s: os.kill(s.pid, signal.SIGINT),
        "SIGINT to the whole process group (Ctrl-C)": lambda s: os.killpg(s.pid, signal.SIGINT),
    }


class TestStopWithJobsInFlight:
    @pytest.mark.parametrize("way", list(_ways()))
    def test_it_exits_0_within_the_grace_period_once_the_jobs_in_flight_finish(
        self,
        way: str,
        webhook_container: Container,
        slow_inserts: None,
        spawn: Callable[[], Service],
        rq_state: RqState,
        redis_db: RedisTestDb,
        pg_engine: sa.Engine,
    ) -> None:
        service = spawn()
        service.wait_started()
        assert service.children(), "the webhook worker runs a child process"
        queue_for(webhook_container, redis_db).enqueue_many(
            slow_jobs(webhook_container, 4) + slow_jobs(webhook_container, 8, first=4)
        )
        wait_until(lambda: started_jobs(redis_db) == 4, timeout=15)

        send = _ways()[way]
        code, took = service.stopped_within(lambda: send(service))

        assert 0 == code, service.text()
        assert took < GRACE_SECONDS
        assert "Traceback" not in service.text()
        assert 0 == started_jobs(redis_db), "nothing left started"
        assert 0 == rq_state.failed()
        done = recorded(pg_engine, SLOW_PREFIX)
        assert 4 == done, "the jobs in flight finished and no process took new ones"
        assert 8 == rq_state.waiting(), "the jobs not yet taken wait for the next worker"


class TestSignalDuringStartUp:
    @pytest.mark.parametrize("group", [False, True], ids=["main process", "process group"])
    def test_a_sigterm_while_the_child_processes_start_exits_0_without_a_traceback(
        self,
        group: bool,
        webhook_container: Container,
        spawn: Callable[[], Service],
        redis_db: RedisTestDb,
    ) -> None:
        service = spawn()
        wait_until(lambda: service.children() or service.process.poll() is not None, timeout=60)
        assert not service.logged("Worker started successfully", worker="livesell")

        target = os.killpg if group else os.kill
        code, took = service.stopped_within(lambda: target(service.pid, signal.SIGTERM))

        assert 0 == code, service.text()
        assert took < GRACE_SECONDS
        assert "Traceback" not in service.text()
        assert "EOFError" not in service.text()
        assert 0 == started_jobs(redis_db)

    def test_a_sigterm_while_the_command_is_still_loading_exits_0(
        self, spawn: Callable[[], Service]
    ) -> None:
        service = spawn()
        wait_until(lambda: service.text() or service.process.poll() is not None, timeout=60)

        code, took = service.stopped_within(lambda: os.killpg(service.pid, signal.SIGTERM))

        assert 0 == code, service.text()
        assert took < GRACE_SECONDS
        assert "Traceback" not in service.text()
