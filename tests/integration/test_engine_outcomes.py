# ruff: noqa: F811 - the Redis fixtures imported below are parameters here
"""The outcomes of a batch stored in one transaction (ADR 0026), on the real Redis: each job keeps
what RQ records for a finished job (its ``Result``, the FinishedJobRegistry, no execution left,
the worker's counters, its dependents enqueued), and a job whose outcome is not stored yet stays
heartbeaten in the StartedJobRegistry, so a worker that dies then has it re-run, never lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from redis import Redis
from rq import Queue
from rq.job import JobStatus
from rq.registry import FinishedJobRegistry, StartedJobRegistry
from rq.results import Result

from adapters.rq import lifecycle
from adapters.rq.connection import redis_connection
from adapters.rq.spec import JobSpec
from adapters.rq.worker import ThreadedRqWorker
from tests.support.redis_db import RedisTestDb, redis_db, redis_test_db  # noqa: F401
from tests.support.webhook import wait_until

QUEUE = "test-engine-outcomes"
SPEC = JobSpec(
    queue=QUEUE,
    function=f"{__name__}.echo_job",
    failure_callback=f"{__name__}.on_failure",
    retry_intervals=(1,),
)


def echo_job(value: object) -> object:
    return {"echo": value}


def on_failure(*_args: object) -> None:
    return None


@pytest.fixture
def connection(redis_db: RedisTestDb) -> Redis:
    return redis_connection(redis_db.url)


def running_engine(
    connection: Redis, **kwargs: Any
) -> tuple[ThreadedRqWorker, tuple[threading.Event, threading.Thread]]:
    engine = ThreadedRqWorker(connection, SPEC, concurrency=5, **kwargs)
    engine.start()
    stop = threading.Event()
    thread = threading.Thread(target=engine.run, args=(stop,), daemon=True)
    thread.start()
    return engine, (stop, thread)


@pytest.fixture
def engine_stop(connection: Redis) -> Iterator[list[tuple[threading.Event, threading.Thread]]]:
    """The engines a test started, stopped and joined (none takes the next test's jobs)."""
    running: list[tuple[threading.Event, threading.Thread]] = []
    yield running
    for stop, thread in running:
        stop.set()
        thread.join(timeout=10)


class TestOutcomesOfABatch:
    def test_each_job_of_a_batch_is_recorded_as_rq_records_a_finished_job(
        self, connection: Redis, engine_stop: list[tuple[threading.Event, threading.Thread]]
    ) -> None:
        queue = Queue(QUEUE, connection=connection)
        jobs = [
            queue.enqueue_call(SPEC.function, args=(n,), **SPEC.enqueue_options())
            for n in range(12)
        ]
        dependent = queue.enqueue_call(
            SPEC.function, args=("after",), depends_on=jobs[0], **SPEC.enqueue_options()
        )
        engine, stop = running_engine(connection)
        engine_stop.append(stop)

        finished = FinishedJobRegistry(queue=queue)
        wait_until(lambda: finished.count == 13, timeout=20)

        for n, job in enumerate(jobs):
            job.refresh()
            assert job.get_status() == JobStatus.FINISHED
            result = Result.fetch_latest(job)
            assert result is not None
            assert (result.type, result.return_value) == (Result.Type.SUCCESSFUL, {"echo": n})
            assert connection.ttl(job.key) > 0  # the result TTL, as RQ's cleanup sets it
        dependent.refresh()
        assert dependent.get_status() == JobStatus.FINISHED
        assert StartedJobRegistry(queue=queue).get_job_ids() == []
        assert connection.keys("rq:execution:*") == []
        wait_until(lambda: engine.completed == 13, timeout=5)
        counters = connection.hmget(
            f"rq:worker:{engine.name}", "successful_job_count", "total_working_time"
        )
        assert int(counters[0]) == 13
        assert float(counters[1]) > 0

    def test_a_job_whose_outcome_is_not_stored_yet_stays_started_and_heartbeaten(
        self,
        connection: Redis,
        engine_stop: list[tuple[threading.Event, threading.Thread]],
        monkeypatch: Any,
    ) -> None:
        release = threading.Event()
        store = lifecycle.handle_jobs_success

        def held(*args: Any, **kwargs: Any) -> list[bool]:
            release.wait(20)
            return store(*args, **kwargs)

        monkeypatch.setattr(lifecycle, "handle_jobs_success", held)
        queue = Queue(QUEUE, connection=connection)
        job = queue.enqueue_call(SPEC.function, args=("held",), **SPEC.enqueue_options())
        engine, stop = running_engine(
            connection, heartbeat_seconds=0.5, execution_ttl=2, maintenance_seconds=0.5
        )
        engine_stop.append(stop)
        started = StartedJobRegistry(queue=queue)
        # The job ran (its slot is free) and its outcome waits to be stored.
        wait_until(lambda: engine.in_flight() == 0 and started.get_job_ids() == [job.id], 10)

        [(_member, first)] = connection.zrange(started.key, 0, -1, withscores=True)
        # Past the execution TTL: without heartbeats the sweep would have re-run it by now.
        time.sleep(3)
        assert started.get_job_ids() == [job.id]
        [(_member, later)] = connection.zrange(started.key, 0, -1, withscores=True)
        assert later > first
        assert Result.fetch_latest(job) is None

        release.set()
        wait_until(lambda: FinishedJobRegistry(queue=queue).get_job_ids() == [job.id], timeout=10)
        assert started.get_job_ids() == []
        wait_until(lambda: engine.completed == 1, timeout=5)

    def test_a_stop_waits_for_the_outcomes_still_to_store(
        self, connection: Redis, monkeypatch: Any
    ) -> None:
        store = lifecycle.handle_jobs_success

        def slow(*args: Any, **kwargs: Any) -> list[bool]:
            time.sleep(0.5)
            return store(*args, **kwargs)

        monkeypatch.setattr(lifecycle, "handle_jobs_success", slow)
        queue = Queue(QUEUE, connection=connection)
        engine = ThreadedRqWorker(connection, SPEC, concurrency=5)
        engine.start()
        stop = threading.Event()
        runner = threading.Thread(target=engine.run, args=(stop,), daemon=True)
        runner.start()
        job = queue.enqueue_call(SPEC.function, args=("last",), **SPEC.enqueue_options())
        started = StartedJobRegistry(queue=queue)
        # It ran and its outcome is being stored (0.5 s) when the stop comes.
        wait_until(lambda: engine.in_flight() == 0 and started.get_job_ids() == [job.id], 10)
        stop.set()
        runner.join(timeout=10)

        assert not runner.is_alive()
        assert FinishedJobRegistry(queue=queue).get_job_ids() == [job.id]
        assert StartedJobRegistry(queue=queue).get_job_ids() == []
