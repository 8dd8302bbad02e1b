# ruff: noqa: F811 - pytest fixtures imported from tests.support.webhook are parameters here
"""One bad job fails alone (issue 12 §2, ADR 0014), on the real Redis and Postgres.

A job hash another producer wrote with its own serializer (RQ's ``JSONSerializer``, which RQ
documents as an alternative to pickle: https://python-rq.org/docs/jobs/#job-serialization) and a
job naming a function this queue does not run sit between good jobs of one batch. Each bad one
gets a ``webhook-processing`` dead letter holding its raw hash and leaves the intermediate queue;
the good ones are recorded with no attempt spent; the engine keeps taking jobs.
"""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from redis import Redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from adapters.rq.connection import redis_connection
from adapters.rq.queue import RqInboundQueue
from adapters.rq.spec import JOB_FUNCTION, QUEUE_NAME
from adapters.rq.worker import ThreadedRqWorker
from entrypoints.container import Container
from tests.support.redis_db import RedisTestDb
from tests.support.webhook import (  # noqa: F401 - fixtures
    SELLER_PHONE,
    RqState,
    RunningWorker,
    client_phone,
    count,
    inbound_queue,
    payload,
    redis_db,
    redis_test_db,
    rows,
    rq_state,
    seed_tenant,
    wait_until,
    webhook_container,
)

TENANT = "boutique-poison"


def foreign_serializer_job(connection: Redis) -> str:
    """A job for our function, written by a producer that serializes with JSON."""
    queue = Queue(QUEUE_NAME, connection=connection, serializer=JSONSerializer)
    job = queue.enqueue_call(JOB_FUNCTION, args=(payload(TENANT, SELLER_PHONE),))
    return str(job.id)


def foreign_function_job(connection: Redis) -> str:
    """A job on our queue that names another function."""
    job = Queue(QUEUE_NAME, connection=connection).enqueue_call("os.getcwd")
    return str(job.id)


def processed(engine: sa.Engine) -> int:
    return count(engine, "SELECT count(*) FROM inbound_messages WHERE status = 'processed'")


class TestPoisonJobs:
    def test_undecodable_and_foreign_jobs_between_good_ones_are_dead_lettered_alone(
        self,
        webhook_container: Container,
        inbound_queue: RqInboundQueue,
        rq_state: RqState,
        redis_db: RedisTestDb,
        pg_engine: sa.Engine,
    ) -> None:
        seed_tenant(webhook_container, TENANT)
        connection = redis_connection(redis_db.url)
        good: list[str] = []
        good += inbound_queue.enqueue_many([payload(TENANT, client_phone(n)) for n in range(2)])
        undecodable = foreign_serializer_job(connection)
        good += inbound_queue.enqueue_many([payload(TENANT, client_phone(n)) for n in range(2, 4)])
        foreign = foreign_function_job(connection)
        good += inbound_queue.enqueue_many([payload(TENANT, client_phone(n)) for n in range(4, 6)])
        queue = Queue(QUEUE_NAME, connection=connection)

        with RunningWorker(webhook_container) as worker:
            wait_until(lambda: processed(pg_engine) == 6, timeout=30)
            wait_until(lambda: count(pg_engine, "SELECT count(*) FROM dead_letter_jobs") == 2)
            inbound_queue.enqueue(payload(TENANT, client_phone(99)))
            wait_until(lambda: processed(pg_engine) == 7, timeout=15)
            assert worker.thread.is_alive(), "the engine kept running"

        letters = {
            row["error_code"]: row
            for row in rows(
                pg_engine,
                "SELECT source, error_code, error, payload, attempts FROM dead_letter_jobs",
            )
        }
        assert {"undecodable_job", "foreign_job"} == set(letters)
        bad = letters["undecodable_job"]
        assert "webhook-processing" == bad["source"]
        assert undecodable == bad["payload"]["rqJobId"]
        assert "DeserializationError" in bad["error"]
        raw = bad["payload"]["rawHash"]
        assert QUEUE_NAME == raw["origin"]
        assert raw["data"], "the undecodable data is kept"
        other = letters["foreign_job"]
        assert foreign == other["payload"]["rqJobId"]
        assert "os.getcwd" in other["error"]

        assert 0 == connection.llen(queue.intermediate_queue_key)
        assert 0 == connection.llen(f"livesell:rq:undecodable:{QUEUE_NAME}")
        assert 0 == rq_state.failed()
        assert 0 == rq_state.scheduled()
        for job_id in good:
            job = Job.fetch(job_id, connection=connection)
            assert 4 == job.retries_left, "a good job of the batch lost no attempt"
            assert job.is_finished

    def test_an_undecodable_job_whose_dead_letter_cannot_be_written_stays_parked_then_is_written(
        self,
        webhook_container: Container,
        inbound_queue: RqInboundQueue,
        redis_db: RedisTestDb,
        pg_engine: sa.Engine,
    ) -> None:
        seed_tenant(webhook_container, TENANT)
        connection = redis_connection(redis_db.url)
        spec = inbound_queue.spec
        written: list[str] = []
        refuse = threading.Event()
        refuse.set()

        def dead_letter(job: object) -> None:
            if refuse.is_set():
                raise ConnectionError("the database is down")
            written.append(job.job_id)  # type: ignore[attr-defined]

        engine = ThreadedRqWorker(connection, spec, concurrency=2, on_undecodable=dead_letter)
        job_id = foreign_serializer_job(connection)
        parked = f"livesell:rq:undecodable:{QUEUE_NAME}"
        engine.start()
        stop = threading.Event()
        runner = threading.Thread(target=engine.run, args=(stop,), daemon=True)
        runner.start()
        try:
            wait_until(lambda: connection.lrange(parked, 0, -1) == [job_id.encode()], timeout=10)
            assert 0 == connection.llen(Queue(QUEUE_NAME, connection=connection).key)
            refuse.clear()
            wait_until(lambda: written == [job_id], timeout=15)
            wait_until(lambda: connection.llen(parked) == 0, timeout=5)
            assert connection.ttl(Job.key_for(job_id)) > 0, "the hash expires with failed jobs"
        finally:
            stop.set()
            runner.join(timeout=30)
        assert not runner.is_alive()


@pytest.fixture(autouse=True)
def _no_parked_leftovers(redis_db: RedisTestDb) -> None:
    redis_connection(redis_db.url).delete(f"livesell:rq:undecodable:{QUEUE_NAME}")
