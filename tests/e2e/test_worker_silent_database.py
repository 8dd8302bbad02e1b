# ruff: noqa: F811 - pytest fixtures imported from tests.support.webhook are parameters here
"""``livesell worker --only webhook`` whose database goes silent mid-job (issue 12 §4, ADR 0014).

A paused TCP proxy keeps the connection open and stops forwarding bytes: the peer's kernel still
acknowledges, so neither TCP keepalives nor ``tcp_user_timeout`` fire, and the job's thread waits
in libpq where the job timeout cannot interrupt it. Before ADR 0014 the job stayed ``started``
for ever and shutdown overran its 30 s grace; now SIGTERM still ends the process within the
grace period, and the job, no longer heartbeaten, is recorded once by the next worker.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from entrypoints.container import Container
from tests.e2e.test_webhook_worker_process import (
    Workers,
    queue_for,
    recorded,
    started_jobs,
    worker_env,
    workers,
)
from tests.support.redis_db import RedisTestDb
from tests.support.tcp_proxy import TcpProxy
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

__all__ = ["worker_env", "workers"]  # fixtures

pytestmark = pytest.mark.slow

TENANT = "boutique-silent"
GRACE_SECONDS = 30


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[TcpProxy]:
    target = sa.make_url(postgres_url)
    with TcpProxy(target.host or "127.0.0.1", target.port or 5432) as running:
        yield running


class TestSilentDatabase:
    def test_sigterm_ends_the_worker_within_its_grace_and_the_hung_job_is_recorded_once_later(
        self,
        webhook_container: Container,
        workers: Workers,
        worker_env: dict[str, str],
        proxy: TcpProxy,
        rq_state: RqState,
        redis_db: RedisTestDb,
        pg_engine: sa.Engine,
        postgres_url: str,
    ) -> None:
        seed_tenant(webhook_container, TENANT)
        direct_env = dict(worker_env)
        worker_env["DATABASE_URL"] = (
            sa.make_url(postgres_url)
            .set(host=proxy.host, port=proxy.port)
            .render_as_string(hide_password=False)
        )
        queue = queue_for(webhook_container, redis_db)
        silent = workers.spawn()
        silent.wait_started()
        queue.enqueue_many(
            [payload(TENANT, client_phone(n), message_id=f"SM-warm-{n}") for n in range(10)]
        )
        wait_until(lambda: recorded(pg_engine, "SM-warm-") == 10, timeout=30)

        proxy.pause()
        queue.enqueue(payload(TENANT, client_phone(99), message_id="SM-hung-1"))
        wait_until(lambda: started_jobs(redis_db) == 1, timeout=10)
        time.sleep(1)
        signalled = time.monotonic()
        silent.signal(signal.SIGTERM)
        silent.wait(timeout=GRACE_SECONDS + 15)
        took = time.monotonic() - signalled

        assert took < GRACE_SECONDS, silent.log_path.read_text()
        assert silent.logged(
            "In-flight jobs did not finish in time; they will run again on another worker"
        )
        assert 0 == recorded(pg_engine, "SM-hung-")

        proxy.resume()
        workers.env = direct_env
        workers.spawn().wait_started()
        wait_until(lambda: recorded(pg_engine, "SM-hung-") == 1, timeout=60)
        wait_until(rq_state.idle, timeout=30)
        assert 11 == count(pg_engine, "SELECT count(*) FROM inbound_messages")
        assert 0 == rq_state.failed()
