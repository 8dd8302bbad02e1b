# ruff: noqa: F811 - pytest fixtures imported from tests.support.webhook are parameters here
"""What an operator sees of the webhook-processor (SPEC §4): its log lines and metrics line, a
job enqueued by another service with only the function name, and the worker riding out a Redis
outage. Real Redis and Postgres."""

from __future__ import annotations

import logging
import time

import pytest
import sqlalchemy as sa
from rq import Queue
from rq.job import Job

from adapters.rq.queue import RqInboundQueue
from adapters.rq.spec import FAILURE_CALLBACK, JOB_FUNCTION, QUEUE_NAME
from adapters.rq.worker import JobOutcome
from adapters.sqlalchemy.engine import build_engine
from adapters.sqlalchemy.unit_of_work import SqlUnitOfWorkFactory
from entrypoints.container import Container
from entrypoints.webhook_worker import WorkerMetrics, process_plan
from ports.queue_monitor import QueueDepths
from tests.support.redis_db import RedisTestDb
from tests.support.tcp_proxy import TcpProxy
from tests.support.webhook import (  # noqa: F401 - fixtures
    SELLER_PHONE,
    RqState,
    RunningWorker,
    client_phone,
    container_on,
    count,
    inbound_queue,
    payload,
    redis_db,
    redis_test_db,
    rq_state,
    seed_tenant,
    wait_until,
    webhook_container,
    webhook_settings,
)

TENANT = "boutique-lea"


def outcome(succeeded: bool = True, seconds: float = 0.01) -> JobOutcome:
    return JobOutcome(
        job_id="j",
        payload={},
        succeeded=succeeded,
        result=None,
        error=None if succeeded else "boom",
        processing_seconds=seconds,
        attempts_made=1,
        attempts_remaining=0,
        retry_scheduled=False,
        enqueued_at=None,
        ended_at=None,  # type: ignore[arg-type]
    )


def contexts(caplog: pytest.LogCaptureFixture, message: str) -> list[dict[str, object]]:
    return [
        dict(getattr(record, "context", {}))
        for record in caplog.records
        if record.getMessage() == message
    ]


class TestLogLines:
    def test_each_job_logs_completed_or_failed_with_its_correlation_id_and_attempts(
        self,
        webhook_container: Container,
        inbound_queue: RqInboundQueue,
        rq_state: RqState,
        pg_engine: sa.Engine,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.INFO)
        seed_tenant(webhook_container, TENANT)
        inbound_queue.enqueue(payload(TENANT, SELLER_PHONE, correlationId="corr-ok"))
        inbound_queue.enqueue(
            payload("no-such-shop", client_phone(1), correlationId="corr-rejected")
        )

        with RunningWorker(webhook_container) as running:
            wait_until(lambda: running.part.metrics.completed == 2 and rq_state.idle())

        started = contexts(caplog, "Worker started successfully")
        assert started[0]["queue"] == QUEUE_NAME
        assert started[0]["concurrency"] == 5
        completed = {c["correlationId"]: c for c in contexts(caplog, "Job completed")}
        assert set(completed) == {"corr-ok", "corr-rejected"}
        ok = completed["corr-ok"]
        assert (ok["outcome"], ok["messageType"], ok["attemptsMade"]) == ("processed", "seller", 1)
        assert isinstance(ok["processingTimeMs"], float)
        rejected = completed["corr-rejected"]
        assert (rejected["outcome"], rejected["reason"]) == ("rejected", "unknown_tenant")
        assert "+336" not in str(completed), "no phone number in the job lines"

    def test_a_failed_attempt_logs_attempts_made_and_remaining(
        self,
        postgres_url: str,
        pg_reset: None,
        redis_db: RedisTestDb,
        rq_state: RqState,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.INFO)
        with TcpProxy("127.0.0.1", sa.make_url(postgres_url).port or 5432) as proxy:
            url = sa.make_url(postgres_url).set(port=proxy.port)
            engine = build_engine(url.render_as_string(hide_password=False), pool_size=2)
            container = container_on(
                webhook_settings(postgres_url, redis_db.url), SqlUnitOfWorkFactory(engine)
            )
            seed_tenant(container, TENANT)
            queue = RqInboundQueue(redis_db.client, container.webhook_job_spec())
            proxy.cut()
            queue.enqueue(payload(TENANT, SELLER_PHONE, correlationId="corr-retried"))
            with RunningWorker(container) as running:
                wait_until(lambda: running.part.metrics.failed >= 1)
                proxy.restore()
                wait_until(lambda: running.part.metrics.completed == 1 and rq_state.idle())
            engine.dispose()

        [first_failure, *_] = contexts(caplog, "Job failed")
        assert first_failure["correlationId"] == "corr-retried"
        assert (first_failure["attemptsMade"], first_failure["attemptsRemaining"]) == (1, 4)
        assert first_failure["willRetry"] is True
        assert "database unavailable" in str(first_failure["error"])
        [completed] = contexts(caplog, "Job completed")
        assert completed["attemptsMade"] == 1 + len(contexts(caplog, "Job failed"))

    def test_the_metrics_line_comes_every_100_jobs_with_rates_times_and_queue_depth(
        self,
        webhook_container: Container,
        inbound_queue: RqInboundQueue,
        rq_state: RqState,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.INFO)
        seed_tenant(webhook_container, TENANT)
        inbound_queue.enqueue_many(
            [payload(TENANT, client_phone(n)) for n in range(100)]
            + [payload("no-such-shop", client_phone(n)) for n in range(5)]
        )
        with RunningWorker(webhook_container) as running:
            wait_until(lambda: running.part.metrics.completed == 105 and rq_state.idle())

        lines = contexts(caplog, "Worker metrics")
        assert len(lines) == 2, "one after 100 jobs, one at stop"
        first = lines[0]
        # Logged by the thread that counted the 100th job; jobs finishing on the other slots
        # meanwhile may join its window.
        assert 100 <= first["jobsInWindow"] <= 105  # type: ignore[operator]
        assert first["completed"] + first["failed"] == first["jobsInWindow"]  # type: ignore[operator]
        assert first["successRate"] == 1.0
        assert {"uptimeMs", "avgProcessingTimeMs", "p95ProcessingTimeMs"} <= set(first)
        assert set(first["queue"]) == {  # type: ignore[arg-type]
            "waiting",
            "active",
            "delayed",
            "completed",
            "failed",
        }
        assert lines[-1]["completed"] == 105
        assert lines[-1]["queue"]["completed"] == 105  # type: ignore[index]


class TestMetricsArithmetic:
    def test_metrics_are_due_every_100_jobs_or_every_5_minutes(self) -> None:
        now = [0.0]
        metrics = WorkerMetrics(clock=lambda: now[0])
        assert [metrics.record(outcome()) for _ in range(100)][-2:] == [False, True]
        metrics.snapshot(None)
        assert not metrics.due_by_time()
        now[0] = 299.0
        assert not metrics.due_by_time()
        now[0] = 300.0
        assert metrics.due_by_time()

    def test_the_snapshot_gives_success_rate_average_and_p95_and_starts_a_new_window(
        self,
    ) -> None:
        metrics = WorkerMetrics(clock=lambda: 10.0)
        for ms in range(1, 101):
            metrics.record(outcome(succeeded=ms % 10 != 0, seconds=ms / 1000))
        depths = QueueDepths(
            waiting=3, started=2, scheduled=1, failed=10, finished=90, deferred=0, intermediate=0
        )
        line = metrics.snapshot(depths)
        assert (line["completed"], line["failed"], line["successRate"]) == (90, 10, 0.9)
        assert (line["avgProcessingTimeMs"], line["p95ProcessingTimeMs"]) == (50.5, 95.0)
        assert line["queue"] == {
            "waiting": 3,
            "active": 2,
            "delayed": 1,
            "completed": 90,
            "failed": 10,
        }
        assert metrics.snapshot(None)["jobsInWindow"] == 0


class TestProcessPlan:
    @pytest.mark.parametrize(
        ("concurrency", "cpus", "plan"),
        [(5, 2, [3, 2]), (5, 1, [5]), (5, 8, [1, 1, 1, 1, 1]), (1, 4, [1]), (6, 4, [2, 2, 1, 1])],
    )
    def test_the_slots_are_spread_over_one_process_per_cpu_at_most_one_per_slot(
        self, concurrency: int, cpus: int, plan: list[int]
    ) -> None:
        assert process_plan(concurrency, cpus) == plan

    def test_a_container_with_overridden_providers_keeps_every_slot_in_this_process(
        self, webhook_container: Container
    ) -> None:
        assert webhook_container.webhook_part().plan == [5]


class TestForeignProducers:
    def test_a_job_enqueued_by_name_only_gets_our_retries_and_failure_callback(
        self,
        webhook_container: Container,
        redis_db: RedisTestDb,
        rq_state: RqState,
        pg_engine: sa.Engine,
    ) -> None:
        seed_tenant(webhook_container, TENANT)
        job = Queue(QUEUE_NAME, connection=redis_db.client).enqueue(
            JOB_FUNCTION, payload(TENANT, SELLER_PHONE, message_id="SM-foreign")
        )
        assert job.retries_left is None

        with RunningWorker(webhook_container):
            wait_until(
                lambda: (
                    rq_state.idle()
                    and count(pg_engine, "SELECT count(*) FROM inbound_messages") == 1
                )
            )

        stored = Job.fetch(job.id, connection=redis_db.client)
        assert (stored.retries_left, stored.retry_intervals) == (4, [1, 2, 4, 8])
        assert stored._failure_callback_name == FAILURE_CALLBACK
        assert stored.get_status() == "finished"


class TestRedisOutage:
    def test_the_worker_rides_out_a_redis_outage_and_records_every_message_once(
        self,
        postgres_url: str,
        pg_uow_factory: SqlUnitOfWorkFactory,
        redis_db: RedisTestDb,
        rq_state: RqState,
        pg_engine: sa.Engine,
    ) -> None:
        with TcpProxy("127.0.0.1", 6379) as proxy:
            proxied = f"redis://{proxy.host}:{proxy.port}/{redis_db.db}"
            container = container_on(webhook_settings(postgres_url, proxied), pg_uow_factory)
            seed_tenant(container, TENANT)
            queue = RqInboundQueue(redis_db.client, container.webhook_job_spec())
            queue.enqueue_many([payload(TENANT, client_phone(n)) for n in range(50)])
            with RunningWorker(container):
                wait_until(lambda: count(pg_engine, "SELECT count(*) FROM inbound_messages") > 0)
                proxy.cut()
                queue.enqueue_many([payload(TENANT, client_phone(n)) for n in range(50, 100)])
                time.sleep(2)
                proxy.restore()
                wait_until(
                    lambda: (
                        count(pg_engine, "SELECT count(*) FROM inbound_messages") == 100
                        and rq_state.idle()
                    ),
                    timeout=60,
                )

        assert (
            count(pg_engine, "SELECT count(DISTINCT provider_message_id) FROM inbound_messages")
            == 100
        )
        assert count(pg_engine, "SELECT count(*) FROM dead_letter_jobs") == 0
