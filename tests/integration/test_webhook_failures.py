# ruff: noqa: F811 - pytest fixtures imported from tests.support.webhook are parameters here
"""Transient failures of the webhook-processor on the real services: the database cut off
mid-run through a TCP proxy the test controls, and a job that fails on every attempt."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from rq.job import Job, JobStatus

from adapters.rq.connection import redis_connection
from adapters.rq.queue import RqInboundQueue
from adapters.rq.spec import JobSpec
from adapters.sqlalchemy.engine import build_engine
from adapters.sqlalchemy.unit_of_work import SqlUnitOfWorkFactory
from entrypoints.container import Container
from tests.support.redis_db import RedisTestDb
from tests.support.tcp_proxy import TcpProxy
from tests.support.webhook import (  # noqa: F401 - fixtures
    SELLER_PHONE,
    RqState,
    RunningWorker,
    client_phone,
    container_on,
    count,
    payload,
    redis_db,
    redis_test_db,
    rows,
    rq_state,
    seed_tenant,
    wait_until,
    webhook_settings,
)

TENANT = "boutique-lea"
POISON_PREFIX = "SM-POISON"


@pytest.fixture
def db_proxy(postgres_url: str) -> Iterator[TcpProxy]:
    url = sa.make_url(postgres_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        yield proxy


@pytest.fixture
def proxied_container(
    postgres_url: str, pg_reset: None, db_proxy: TcpProxy, redis_db: RedisTestDb
) -> Iterator[Container]:
    """The production container whose database connections all go through ``db_proxy``."""
    proxied_url = (
        sa.make_url(postgres_url)
        .set(host=db_proxy.host, port=db_proxy.port)
        .render_as_string(hide_password=False)
    )
    engine = build_engine(proxied_url, pool_size=5)
    container = container_on(
        webhook_settings(proxied_url, redis_db.url), SqlUnitOfWorkFactory(engine)
    )
    try:
        yield container
    finally:
        engine.dispose()


@pytest.fixture
def poisoned_inserts(pg_engine: sa.Engine) -> Iterator[None]:
    """Inserting an inbound message whose id starts with SM-POISON fails, every time, with an
    error that is neither a bad payload nor a lost connection."""
    with pg_engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE OR REPLACE FUNCTION livesell_test_poison() RETURNS trigger AS $$"
            " BEGIN IF NEW.provider_message_id LIKE 'SM-POISON%%' THEN"
            " RAISE EXCEPTION 'poisoned message %%', NEW.provider_message_id; END IF;"
            " RETURN NEW; END $$ LANGUAGE plpgsql"
        )
        connection.exec_driver_sql(
            "CREATE TRIGGER livesell_test_poison BEFORE INSERT ON inbound_messages"
            " FOR EACH ROW EXECUTE FUNCTION livesell_test_poison()"
        )
    try:
        yield
    finally:
        with pg_engine.begin() as connection:
            connection.exec_driver_sql(
                "DROP TRIGGER IF EXISTS livesell_test_poison ON inbound_messages"
            )
            connection.exec_driver_sql("DROP FUNCTION IF EXISTS livesell_test_poison()")


def processed(engine: sa.Engine) -> int:
    return count(engine, "SELECT count(*) FROM inbound_messages WHERE status = 'processed'")


class TestDatabaseOutage:
    def test_jobs_retry_while_the_database_is_unreachable_and_all_complete_once_afterwards(
        self,
        proxied_container: Container,
        db_proxy: TcpProxy,
        rq_state: RqState,
        redis_db: RedisTestDb,
        pg_engine: sa.Engine,
    ) -> None:
        seed_tenant(proxied_container, TENANT)
        queue = RqInboundQueue(
            redis_connection(redis_db.url),
            JobSpec.webhook_processing(proxied_container.retry_policy()),
        )
        messages = [
            payload(
                TENANT,
                SELLER_PHONE if n % 4 == 0 else client_phone(n),
                message_id=f"SM-outage-{n:03d}",
            )
            for n in range(150)
        ]
        queue.enqueue_many(messages[:50])

        with RunningWorker(proxied_container) as running:
            wait_until(lambda: processed(pg_engine) == 50)
            db_proxy.cut()
            queue.enqueue_many(messages[50:])
            time.sleep(3)
            assert processed(pg_engine) == 50
            db_proxy.restore()
            wait_until(lambda: processed(pg_engine) == 150 and rq_state.idle(), timeout=60)
            failed_attempts = running.part.metrics.failed

        assert failed_attempts > 0, "the outage made attempts fail, which were retried"
        assert (
            count(pg_engine, "SELECT count(DISTINCT provider_message_id) FROM inbound_messages")
            == 150
        )
        assert count(pg_engine, "SELECT count(*) FROM inbound_messages") == 150
        assert (
            count(
                pg_engine, "SELECT count(*) FROM event_logs WHERE event_type = 'message.classified'"
            )
            == 150
        )
        assert count(pg_engine, "SELECT count(*) FROM dead_letter_jobs") == 0
        assert count(pg_engine, "SELECT count(*) FROM live_sessions WHERE status = 'active'") == 1
        assert rq_state.failed() == 0


class TestRetriesExhausted:
    def test_a_job_failing_every_attempt_is_dead_lettered_once_after_the_last_attempt(
        self,
        postgres_url: str,
        pg_uow_factory: SqlUnitOfWorkFactory,
        poisoned_inserts: None,
        rq_state: RqState,
        redis_db: RedisTestDb,
        pg_engine: sa.Engine,
    ) -> None:
        container = container_on(
            webhook_settings(postgres_url, redis_db.url, OUTBOX_MAX_ATTEMPTS="3"), pg_uow_factory
        )
        seed_tenant(container, TENANT)
        spec = JobSpec.webhook_processing(container.retry_policy())
        assert spec.retry_intervals == (1, 2)
        queue = RqInboundQueue(redis_connection(redis_db.url), spec)
        poison = payload(TENANT, client_phone(7), message_id=f"{POISON_PREFIX}-1")
        job_id = queue.enqueue(poison)
        queue.enqueue(payload(TENANT, SELLER_PHONE, message_id="SM-healthy"))

        started = time.monotonic()
        with RunningWorker(container) as running:
            wait_until(lambda: rq_state.failed() == 1 and rq_state.idle(), timeout=30)
            elapsed = time.monotonic() - started
            # The engine counts a run after RQ has stored its outcome (and the last attempt's
            # dead letter is written in between): let the count settle before reading it.
            wait_until(lambda: running.part.metrics.failed >= 3, timeout=10)
            attempts = running.part.metrics.failed

        assert attempts == 3
        assert elapsed >= 3, "attempts 2 and 3 waited 1 s and 2 s"
        [dead] = rows(pg_engine, "SELECT * FROM dead_letter_jobs")
        assert (dead["source"], dead["error_code"], dead["attempts"]) == (
            "webhook-processing",
            "retries_exhausted",
            3,
        )
        assert (dead["tenant_id"], dead["source_id"]) == (TENANT, f"{POISON_PREFIX}-1")
        assert dead["payload"] == poison
        assert "poisoned message" in dead["error"]
        [event] = rows(pg_engine, "SELECT * FROM event_logs WHERE event_type = 'inbound.rejected'")
        assert event["payload"]["reason"] == "retries_exhausted"
        job = Job.fetch(job_id, connection=redis_db.client)
        assert (job.get_status(), job.retries_left) == (JobStatus.FAILED, 0)
        [healthy] = rows(pg_engine, "SELECT * FROM inbound_messages")
        assert healthy["provider_message_id"] == "SM-healthy"
