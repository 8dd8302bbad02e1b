# ruff: noqa: F811 - pytest fixtures imported from tests.support.webhook are parameters here
"""``livesell worker`` as the service operators deploy: every part in one real process tree on
the real Postgres and Redis. Inbound jobs are classified, outbox rows are sent, a stale session is
closed; SIGTERM with work in flight exits 0 within 30 s and loses nothing; a bad configuration
exits 2 naming the variable (SPEC §4, issue 6)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from adapters.rq.connection import redis_connection
from adapters.rq.queue import RqInboundQueue
from adapters.rq.spec import JobSpec
from adapters.sqlalchemy import tables
from application.outbox import queue_outbound_message
from entrypoints.container import Container
from tests.support.redis_db import RedisTestDb
from tests.support.webhook import (  # noqa: F401 - fixtures
    SELLER_PHONE,
    client_phone,
    count,
    payload,
    redis_db,
    redis_test_db,
    seed_tenant,
    wait_until,
    webhook_container,
)

pytestmark = pytest.mark.slow

LIVESELL = str(Path(sys.executable).with_name("livesell"))
SHOP = "boutique-service"
QUIET_SHOP = "boutique-quiet"


def service_env(postgres_url: str, redis_url: str, sent_log: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_", "REDIS_", "OUTBOX_", "SIMULATED_", "TWILIO_", "CLOSE_"))
    }
    env.update(
        DATABASE_URL=postgres_url,
        REDIS_URL=redis_url,
        LOG_FORMAT="json",
        MESSAGING_PROVIDER="simulated",
        SIMULATED_LATENCY_MS="20",
        SIMULATED_SENT_LOG=str(sent_log),
        OUTBOX_POLL_INTERVAL_SECONDS="0.5",
        CLOSE_INTERVAL_MINUTES="0.05",
        WEBHOOK_WORKER_CONCURRENCY="4",
        **extra,
    )
    return env


class Service:
    """One ``livesell worker`` process (all parts); stopped by its pid only."""

    def __init__(self, env: dict[str, str], log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [LIVESELL, "worker", *args], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def lines(self) -> list[dict[str, object]]:
        found = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            try:
                found.append(json.loads(raw))
            except ValueError:
                continue
        return found

    def logged(self, message: str) -> bool:
        return any(line.get("message") == message for line in self.lines())

    def close(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture
def service_parts(
    webhook_container: Container, redis_db: RedisTestDb, postgres_url: str, tmp_path: Path
) -> tuple[Container, RqInboundQueue, dict[str, str]]:
    seed_tenant(webhook_container, SHOP)
    seed_tenant(webhook_container, QUIET_SHOP)
    queue = RqInboundQueue(
        redis_connection(redis_db.url), JobSpec.webhook_processing(webhook_container.retry_policy())
    )
    return (
        webhook_container,
        queue,
        service_env(postgres_url, redis_db.url, tmp_path / "sent.jsonl"),
    )


def stale_session(engine: sa.Engine, tenant_id: str) -> None:
    idle_since = datetime.now(UTC) - timedelta(hours=2)
    with engine.begin() as connection:
        connection.execute(
            sa.insert(tables.live_sessions).values(
                id=f"stale-{tenant_id}",
                tenant_id=tenant_id,
                status="active",
                started_at=idle_since - timedelta(hours=1),
                last_activity_at=idle_since,
            )
        )


def outbox_rows(container: Container, how_many: int) -> None:
    for n in range(how_many):
        queue_outbound_message(
            uow_factory=container.uow_factory(),
            tenant_id=SHOP,
            to=client_phone(n),
            body=f"Merci pour votre commande n°{n}",
            correlation_id=f"order-{n}",
            clock=container.clock(),
            ids=container.ids(),
        )


class TestWorkerService:
    def test_every_part_does_its_work_in_one_service(
        self, service_parts: tuple[Container, RqInboundQueue, dict[str, str]], tmp_path: Path
    ) -> None:
        container, queue, env = service_parts
        engine = container.engine()
        stale_session(engine, QUIET_SHOP)
        outbox_rows(container, 30)
        service = Service(env, tmp_path / "worker.log")
        try:
            wait_until(lambda: service.logged("Worker started successfully"), timeout=60)
            queue.enqueue(payload(SHOP, SELLER_PHONE, message_id="SM-seller-1"))
            for n in range(20):
                queue.enqueue(payload(SHOP, client_phone(n), message_id=f"SM-client-{n}"))

            wait_until(
                lambda: (
                    21
                    == count(
                        engine, "SELECT count(*) FROM inbound_messages WHERE status = 'processed'"
                    )
                ),
                timeout=60,
            )
            wait_until(
                lambda: (
                    30 == count(engine, "SELECT count(*) FROM messages_out WHERE status = 'sent'")
                ),
                timeout=60,
            )
            wait_until(
                lambda: (
                    1
                    == count(
                        engine,
                        "SELECT count(*) FROM live_sessions WHERE"
                        " id = 'stale-boutique-quiet' AND status = 'closed'",
                    )
                ),
                timeout=60,
            )
        finally:
            service.process.send_signal(signal.SIGTERM)
            code = service.process.wait(timeout=40)
            service.close()

        assert 0 == code
        assert 1 == count(
            engine,
            "SELECT count(DISTINCT live_session_id) FROM inbound_messages WHERE tenant_id = :t",
            {"t": SHOP},
        )
        assert 30 == len((tmp_path / "sent.jsonl").read_text().splitlines())
        assert service.logged("Close inactive live sessions run completed")
        assert service.logged("Outbox sender worker started successfully")

    def test_sigterm_with_work_in_flight_exits_zero_in_time_and_loses_nothing(
        self, service_parts: tuple[Container, RqInboundQueue, dict[str, str]], tmp_path: Path
    ) -> None:
        container, queue, env = service_parts
        env = {**env, "SIMULATED_LATENCY_MS": "400", "OUTBOX_SEND_CONCURRENCY": "4"}
        engine = container.engine()
        outbox_rows(container, 40)
        service = Service(env, tmp_path / "worker.log")
        try:
            wait_until(lambda: service.logged("Worker started successfully"), timeout=60)
            for n in range(40):
                queue.enqueue(payload(SHOP, client_phone(n), message_id=f"SM-term-{n}"))
            wait_until(
                lambda: (
                    count(engine, "SELECT count(*) FROM messages_out WHERE status = 'sent'") >= 4
                ),
                timeout=30,
            )
            stopped_at = time.monotonic()
            service.process.send_signal(signal.SIGTERM)
            code = service.process.wait(timeout=40)
            took = time.monotonic() - stopped_at
        finally:
            service.close()

        sending = count(engine, "SELECT count(*) FROM messages_out WHERE status = 'sending'")
        sent = count(engine, "SELECT count(*) FROM messages_out WHERE status = 'sent'")
        log_lines = len((tmp_path / "sent.jsonl").read_text().splitlines())
        assert (0, 0) == (code, sending)
        assert took < 30
        assert sent == log_lines

        # nothing lost: a second service finishes every message and every job
        restarted = Service(env, tmp_path / "worker-2.log")
        try:
            wait_until(
                lambda: (
                    40 == count(engine, "SELECT count(*) FROM messages_out WHERE status = 'sent'")
                ),
                timeout=60,
            )
            wait_until(
                lambda: (
                    40
                    == count(
                        engine, "SELECT count(*) FROM inbound_messages WHERE status = 'processed'"
                    )
                ),
                timeout=60,
            )
        finally:
            restarted.process.send_signal(signal.SIGTERM)
            assert 0 == restarted.process.wait(timeout=40)
            restarted.close()

    def test_a_bad_configuration_exits_2_naming_the_variable(self, tmp_path: Path) -> None:
        env = {**os.environ, "OUTBOX_BATCH_SIZE": "lots"}

        result = subprocess.run(
            [LIVESELL, "worker"], env=env, capture_output=True, text=True, timeout=30, check=False
        )

        assert 2 == result.returncode
        assert "OUTBOX_BATCH_SIZE" in result.stderr
        assert "Traceback" not in result.stderr

    def test_check_config_prints_the_configuration_with_secrets_masked(self) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": "postgres://app:hunter2@db.example:5432/live",
            "TWILIO_ACCOUNT_SID": "AC123",
            "TWILIO_AUTH_TOKEN": "supersecret",
            "TWILIO_WHATSAPP_NUMBER": "+14155238886",
        }

        result = subprocess.run(
            [LIVESELL, "worker", "--check-config"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

        assert 0 == result.returncode, result.stderr
        assert "hunter2" not in result.stdout
        assert "supersecret" not in result.stdout
        assert "postgresql+psycopg://app:***@db.example:5432/live" in result.stdout
        assert "MESSAGING_PROVIDER" in result.stdout
