"""Bounded database waits (issue 12 §4, ADR 0014), on the real Postgres and Redis.

Every pooled connection carries libpq's TCP keepalives and ``tcp_user_timeout`` (read back from
the socket itself) and a server-side ``statement_timeout`` a little under the job timeout
(parameters: https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-PARAMKEYWORDS;
``tcp_user_timeout`` is milliseconds of unacknowledged data, Linux ``TCP_USER_TIMEOUT``:
https://www.postgresql.org/message-id/attachment/99107/TCP_interface_v7.patch). A peer that
stops answering but keeps the TCP link open (a paused proxy: its kernel still acknowledges) is
beyond all of those: the job's thread hangs in libpq, where the watchdog's exception cannot land,
so the engine stops heartbeating a job past its deadline, another worker re-runs it, and the stuck
worker still stops within its drain time.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from rq import Queue
from rq.job import Job, Retry

from adapters.rq.connection import redis_connection
from adapters.rq.spec import JOB_TIMEOUT_SECONDS, JobSpec
from adapters.rq.worker import ThreadedRqWorker
from adapters.sqlalchemy.engine import (
    KEEPALIVES_COUNT,
    KEEPALIVES_IDLE_SECONDS,
    KEEPALIVES_INTERVAL_SECONDS,
    TCP_USER_TIMEOUT_MS,
    build_engine,
)
from entrypoints.container import build
from tests.support.redis_db import RedisTestDb
from tests.support.tcp_proxy import TcpProxy
from tests.support.webhook import redis_db, redis_test_db, wait_until, webhook_settings

__all__ = ["redis_db", "redis_test_db"]  # fixtures

QUEUE = "livesell-test-timeouts"
_local = threading.local()


def select_one_job(marker: str) -> str:
    """The test job: one statement on this worker thread's engine; says which engine ran it."""
    with _local.engine.connect() as connection:
        connection.execute(sa.text("SELECT 1"))
    return f"{marker} on {_local.name}"


def no_op_failure(*_args: object) -> None:
    return None


def thread_engine(engine: sa.Engine, name: str) -> None:
    _local.engine = engine
    _local.name = name


def _proxied(url: str, proxy: TcpProxy) -> str:
    parsed = sa.make_url(url)
    return parsed.set(host=proxy.host, port=proxy.port).render_as_string(hide_password=False)


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[TcpProxy]:
    target = sa.make_url(postgres_url)
    with TcpProxy(target.host or "127.0.0.1", target.port or 5432) as running:
        yield running


class TestPoolConnections:
    def test_each_pooled_connection_has_tcp_keepalives_and_a_user_timeout_on_its_socket(
        self, postgres_url: str
    ) -> None:
        engine = build_engine(postgres_url)
        try:
            with engine.connect() as connection:
                fd = connection.connection.dbapi_connection.pgconn.socket  # type: ignore[union-attr]
                sock = socket.socket(fileno=os.dup(fd))
                try:
                    options = {
                        "keepalive": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                        "idle": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                        "interval": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                        "count": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
                        "user_timeout": sock.getsockopt(
                            socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT
                        ),
                    }
                finally:
                    sock.detach()
        finally:
            engine.dispose()

        assert {
            "keepalive": 1,
            "idle": KEEPALIVES_IDLE_SECONDS,
            "interval": KEEPALIVES_INTERVAL_SECONDS,
            "count": KEEPALIVES_COUNT,
            "user_timeout": TCP_USER_TIMEOUT_MS,
        } == options

    def test_the_service_engine_cancels_statements_a_little_under_the_job_timeout(
        self, postgres_url: str, redis_db: RedisTestDb
    ) -> None:
        engine = build(webhook_settings(postgres_url, redis_db.url)).engine()
        try:
            with engine.connect() as connection:
                statement = connection.exec_driver_sql("SHOW statement_timeout").scalar_one()
                idle = connection.exec_driver_sql(
                    "SHOW idle_in_transaction_session_timeout"
                ).scalar_one()
        finally:
            engine.dispose()

        assert f"{JOB_TIMEOUT_SECONDS - 5}s" == statement
        assert f"{JOB_TIMEOUT_SECONDS}s" == idle

    def test_a_statement_slower_than_the_timeout_fails_as_a_database_error(
        self, postgres_url: str
    ) -> None:
        engine = build_engine(postgres_url, statement_timeout_ms=300)
        started = time.monotonic()
        try:
            with (
                pytest.raises(sa.exc.OperationalError, match="statement timeout"),
                engine.connect() as connection,
            ):
                connection.exec_driver_sql("SELECT pg_sleep(5)")
        finally:
            engine.dispose()
        assert time.monotonic() - started < 3


class TestHungDatabase:
    def test_a_job_hung_on_a_silent_database_is_run_again_elsewhere_and_its_worker_still_stops(
        self,
        postgres_url: str,
        redis_db: RedisTestDb,
        proxy: TcpProxy,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        connection = redis_connection(redis_db.url)
        spec = JobSpec(
            queue=QUEUE,
            function=f"{__name__}.select_one_job",
            failure_callback=f"{__name__}.no_op_failure",
            retry_intervals=(1,),
            timeout=2,
        )
        hung_engine = build_engine(_proxied(postgres_url, proxy), pool_size=1)
        direct_engine = build_engine(postgres_url, pool_size=1)
        with hung_engine.connect() as warm:  # a pooled connection, then its peer goes silent
            warm.exec_driver_sql("SELECT 1")
        proxy.pause()

        def worker(name: str, engine: sa.Engine) -> ThreadedRqWorker:
            return ThreadedRqWorker(
                connection,
                spec,
                concurrency=1,
                thread_initializer=lambda: thread_engine(engine, name),
                execution_ttl=3,
                heartbeat_seconds=1,
                maintenance_seconds=1,
                drain_seconds=2,
            )

        stuck, healthy = (
            worker("the silent database", hung_engine),
            worker("Postgres", direct_engine),
        )
        stops = {"stuck": threading.Event(), "healthy": threading.Event()}
        threads = {
            "stuck": threading.Thread(target=stuck.run, args=(stops["stuck"],), daemon=True),
            "healthy": threading.Thread(target=healthy.run, args=(stops["healthy"],), daemon=True),
        }
        job = Queue(QUEUE, connection=connection).enqueue_call(
            spec.function, args=("job-1",), timeout=2, retry=Retry(max=1, interval=[1])
        )
        try:
            with caplog.at_level(logging.ERROR, logger="livesell.rq.worker"):
                stuck.start()
                threads["stuck"].start()
                wait_until(lambda: stuck.in_flight() == 1, timeout=10)
                healthy.start()
                threads["healthy"].start()

                wait_until(lambda: Job.fetch(job.id, connection=connection).is_finished, timeout=30)
                assert (
                    "job-1 on Postgres" == Job.fetch(job.id, connection=connection).return_value()
                )
                assert 1 == stuck.in_flight(), "the first run is still hung in libpq"

                stops["stuck"].set()
                stopping = time.monotonic()
                threads["stuck"].join(timeout=10)
                assert not threads["stuck"].is_alive()
                assert time.monotonic() - stopping < 5, "the stuck worker stops within its drain"
            messages = [r.getMessage() for r in caplog.records]
            assert any(m.startswith("Job overran its timeout") for m in messages)
            assert any(m.startswith("In-flight jobs did not finish in time") for m in messages)
        finally:
            for event in stops.values():
                event.set()
            proxy.resume()
            threads["healthy"].join(timeout=10)
            hung_engine.dispose()
            direct_engine.dispose()
