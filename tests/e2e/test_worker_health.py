# ruff: noqa: F811 - pytest fixtures imported from tests.support.webhook are parameters here
"""``livesell worker``'s health as Railway or Kubernetes probe it, and the schema check of every
command that touches the database, against real processes (ADR 0015).

- ``/healthz`` on ``HEALTH_PORT`` is 200 with every part and its last heartbeat while they work;
  when the database connection goes silent (a paused TCP proxy: the closer's and the sender's
  queries hang) the stalled parts are named with a 503 within the stall bound; when it answers
  again the service is healthy again. Unknown paths are 404 there and on ``METRICS_PORT``, which
  serves the same ``/healthz`` and ``/readyz``.
- A database that was never migrated: every database command prints one line naming
  ``livesell migrate`` and exits 2 (before: "Worker started successfully" and a loop of
  tracebacks; raw SQL from ``livesell tenants add``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import create_postgres_database, drop_postgres_database
from tests.support.redis_db import RedisTestDb
from tests.support.tcp_proxy import TcpProxy
from tests.support.webhook import redis_db, redis_test_db  # noqa: F401 - fixtures

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

LIVESELL = str(Path(sys.executable).with_name("livesell"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_env(**values: str) -> dict[str, str]:
    prefixes = ("DATABASE_", "REDIS_", "OUTBOX_", "SIMULATED_", "TWILIO_", "CLOSE_", "HEALTH_")
    env = {k: v for k, v in os.environ.items() if not k.startswith((*prefixes, "METRICS_"))}
    env.update(values)
    return env


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def get(url: str, timeout: float = 2) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=timeout)
    except httpx.HTTPError:
        return None


@pytest.fixture
def unmigrated_database() -> Iterator[str]:
    url = create_postgres_database("livesell_unmigrated")
    try:
        yield url
    finally:
        drop_postgres_database(url)


class Worker:
    def __init__(self, env: dict[str, str], log_path: Path, *args: str) -> None:
        self._log = log_path.open("ab")
        self.log_path = log_path
        self.process = subprocess.Popen(
            [LIVESELL, "worker", *args], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def close(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def start(env: dict[str, str], *args: str) -> Worker:
        worker = Worker(env, tmp_path / f"worker-{len(started)}.log", *args)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.close()


class TestHealthOfARealWorker:
    def test_a_silent_database_stalls_the_parts_that_use_it_and_healthz_names_them(
        self, postgres_url: str, redis_db: RedisTestDb, start_worker: Any
    ) -> None:
        target = sa.make_url(postgres_url)
        health_port, metrics_port = free_port(), free_port()
        with TcpProxy(target.host or "127.0.0.1", target.port or 5432) as proxy:
            env = clean_env(
                DATABASE_URL=target.set(port=proxy.port).render_as_string(False),
                REDIS_URL=redis_db.url,
                HEALTH_PORT=str(health_port),
                METRICS_PORT=str(metrics_port),
                HEALTH_STALL_SECONDS="2",
                CLOSE_INTERVAL_MINUTES="0.01",
                OUTBOX_POLL_INTERVAL_SECONDS="0.5",
                LOG_FORMAT="json",
            )
            worker = start_worker(env, "--only", "outbox,closer")
            healthz = f"http://127.0.0.1:{health_port}/healthz"

            healthy = wait_for(
                lambda: (r := get(healthz)) is not None and r.status_code == 200 and r, 30, "200"
            )
            body = healthy.json()
            assert ("ok", {"outbox-sender", "close-inactive-live-sessions"}) == (
                body["status"],
                set(body["parts"]),
            )
            assert all(p["lastHeartbeatSecondsAgo"] < 2 for p in body["parts"].values())

            proxy.pause()
            started = time.monotonic()
            sick = wait_for(  # each part stalls on its own wait: until both are named
                lambda: (
                    (r := get(healthz)) is not None
                    and r.status_code == 503
                    and "close-inactive-live-sessions" in r.json()["failed"]
                    and r
                ),
                15,
                "503 naming the closer",
            )
            noticed_after = time.monotonic() - started
            failed = sick.json()["failed"]
            problems = [sick.json()["parts"][name]["problem"] for name in failed]
            ready = get(f"http://127.0.0.1:{health_port}/readyz", timeout=10)
            proxy.resume()
            recovered = wait_for(
                lambda: (r := get(healthz)) is not None and r.status_code == 200, 30, "recovery"
            )

            assert "close-inactive-live-sessions" in failed
            assert all(p.startswith("stalled: no heartbeat for") for p in problems)
            assert noticed_after < 2 + 0.6 + 5  # the bound, the closer's wait, the probe
            assert ready is not None
            assert 503 == ready.status_code
            assert {"postgres", "schema"} <= set(ready.json()["failed"])
            assert recovered
            assert worker.process.poll() is None

    def test_every_part_beats_and_the_metrics_port_serves_health_and_404_elsewhere(
        self, postgres_url: str, redis_db: RedisTestDb, start_worker: Any
    ) -> None:
        health_port, metrics_port = free_port(), free_port()
        env = clean_env(
            DATABASE_URL=postgres_url,
            REDIS_URL=redis_db.url,
            HEALTH_PORT=str(health_port),
            METRICS_PORT=str(metrics_port),
            HEALTH_STALL_SECONDS="2",
            WEBHOOK_WORKER_CONCURRENCY="1",
            LOG_FORMAT="json",
        )
        start_worker(env)  # every part
        base = f"http://127.0.0.1:{metrics_port}"
        wait_for(
            lambda: (r := get(base + "/healthz")) is not None and r.status_code == 200, 30, "up"
        )
        time.sleep(3)  # past the stall bound: every loop must have beaten meanwhile

        health = httpx.get(base + "/healthz", timeout=5)

        metrics = httpx.get(base + "/metrics", timeout=5)
        ready = httpx.get(base + "/readyz", timeout=5)
        missing = httpx.get(base + "/", timeout=5)
        elsewhere = httpx.get(f"http://127.0.0.1:{health_port}/metrics", timeout=5)

        assert (200, []) == (health.status_code, health.json()["failed"])
        assert {
            "webhook-processor",
            "outbox-sender",
            "close-inactive-live-sessions",
            "inbox-reconciler",
            "spool-drainer",
        } == set(health.json()["parts"])
        assert (200, "livesell_outbox_sends_total" in metrics.text) == (metrics.status_code, True)
        assert (200, {"postgres": "ok", "schema": "ok", "redis": "ok"}) == (
            ready.status_code,
            ready.json()["checks"],
        )
        assert (404, "application/json") == (missing.status_code, missing.headers["content-type"])
        assert 404 == elsewhere.status_code


class TestAnUnmigratedDatabase:
    @pytest.mark.parametrize(
        "command",
        [
            ["worker"],
            ["worker", "--only", "outbox"],
            ["webhook", "--insecure-skip-signature"],
            ["tenants", "add", "--id", "shop", "--name", "Shop"],
            ["tenants", "list"],
            ["sellers", "add", "--tenant", "shop", "--phone", "+33612345678"],
            ["sellers", "list", "--tenant", "shop"],
            ["outbox", "send", "--tenant", "shop", "--to", "+33612345678", "--body", "Hi"],
            ["dlq", "list"],
            ["dlq", "replay", "--all"],
            ["stats"],
        ],
        ids=lambda c: " ".join(c[:2]),
    )
    def test_every_database_command_refuses_in_one_line_naming_livesell_migrate(
        self, unmigrated_database: str, redis_db: RedisTestDb, command: list[str]
    ) -> None:
        env = clean_env(DATABASE_URL=unmigrated_database, REDIS_URL=redis_db.url)

        done = subprocess.run(
            [LIVESELL, *command], env=env, capture_output=True, text=True, timeout=60, check=False
        )

        lines = done.stderr.strip().splitlines()
        assert (2, 1) == (done.returncode, len(lines)), done.stderr
        name = " ".join(w for w in command[:2] if not w.startswith("-"))  # the full command name
        assert lines[0].startswith(f"livesell {name}: DATABASE_URL: the database schema")
        assert "never migrated" in lines[0]
        assert "run `livesell migrate`" in lines[0]
        assert "Worker started successfully" not in done.stdout + done.stderr

    def test_a_database_behind_head_names_its_revision(
        self, unmigrated_database: str, redis_db: RedisTestDb
    ) -> None:
        from adapters.sqlalchemy import migrations

        migrations.upgrade(unmigrated_database, "0005")
        env = clean_env(DATABASE_URL=unmigrated_database, REDIS_URL=redis_db.url)

        done = subprocess.run(
            [LIVESELL, "tenants", "list"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

        assert 2 == done.returncode
        assert (
            f"is at 0005, this build needs {migrations.head()}: run `livesell migrate`"
            in done.stderr
        )

    def test_a_fresh_sqlite_file_is_refused_the_same_way(
        self, tmp_path: Path, redis_db: RedisTestDb
    ) -> None:
        env = clean_env(DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.db'}", REDIS_URL=redis_db.url)

        done = subprocess.run(
            [LIVESELL, "tenants", "add", "--id", "shop", "--name", "Shop"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

        assert (2, "") == (done.returncode, done.stdout)
        assert "run `livesell migrate`" in done.stderr
        assert "INSERT" not in done.stderr
