# ruff: noqa: F811 - the Redis fixtures imported below are parameters here
"""``RqQueueMonitor`` reads each state of a job from RQ's own keys, put there through RQ's API as
a worker would, and counts what RQ itself counts (``rq info``).

RQ's registries: https://python-rq.org/docs/job_registries/ (started, scheduled, failed,
finished, deferred; ``count`` runs a clean-up first, which a monitor must not). The intermediate
queue: https://python-rq.org/docs/workers/ (a job taken from the queue is moved there, then marked
started).
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from redis import Redis
from rq import Queue
from rq.executions import Execution
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)

from adapters.rq.connection import redis_connection
from adapters.rq.monitor import RqQueueMonitor
from adapters.rq.spec import JOB_FUNCTION, QUEUE_NAME
from ports.queue_monitor import QueueDepths
from tests.support.redis_db import RedisTestDb, redis_db, redis_test_db  # noqa: F401


@pytest.fixture
def connection(redis_db: RedisTestDb) -> Redis:
    return redis_connection(redis_db.url)


@pytest.fixture
def queue(connection: Redis) -> Queue:
    return Queue(QUEUE_NAME, connection=connection)


def job_payload(n: int) -> dict[str, object]:
    return {"tenantId": "shop-a", "providerMessageId": f"SM{n}"}


def fill_every_state(queue: Queue) -> None:
    """5 waiting (1 of them then taken into the intermediate queue), 2 started, 1 scheduled,
    3 failed, 4 finished, 1 deferred."""
    for n in range(5):
        queue.enqueue(JOB_FUNCTION, job_payload(n))
    queue.connection.lmove(queue.key, queue.intermediate_queue_key, "LEFT", "RIGHT")
    for n in range(2):
        job = queue.create_job(JOB_FUNCTION, args=(job_payload(10 + n),))
        job.save()
        with queue.connection.pipeline() as pipe:
            Execution.create(job, ttl=60, pipeline=pipe)
            pipe.execute()
    queue.enqueue_in(timedelta(minutes=5), JOB_FUNCTION, job_payload(20))
    for n in range(3):
        job = queue.create_job(JOB_FUNCTION, args=(job_payload(30 + n),))
        job.save()
        FailedJobRegistry(queue=queue).add(job, ttl=3600, exc_string="ConnectionError")
    for n in range(4):
        job = queue.create_job(JOB_FUNCTION, args=(job_payload(40 + n),))
        job.save()
        FinishedJobRegistry(queue=queue).add(job, ttl=3600)
    first = queue.create_job(JOB_FUNCTION, args=(job_payload(50),))
    first.save()
    queue.enqueue(JOB_FUNCTION, job_payload(51), depends_on=first)


class TestStates:
    def test_every_state_is_read_from_rq_s_keys(self, connection: Redis, queue: Queue) -> None:
        fill_every_state(queue)

        depths = RqQueueMonitor(connection).depths(QUEUE_NAME)

        assert (
            QueueDepths(
                waiting=4,
                started=2,
                scheduled=1,
                failed=3,
                finished=4,
                deferred=1,
                intermediate=1,
            )
            == depths
        )

    def test_the_counts_are_rq_s_own(self, connection: Redis, queue: Queue) -> None:
        fill_every_state(queue)

        depths = RqQueueMonitor(connection).depths(QUEUE_NAME)

        assert (
            queue.count,
            len(queue.intermediate_queue.get_job_ids()),
            StartedJobRegistry(queue=queue).get_job_count(cleanup=False),
            ScheduledJobRegistry(queue=queue).get_job_count(cleanup=False),
            FailedJobRegistry(queue=queue).get_job_count(cleanup=False),
            FinishedJobRegistry(queue=queue).get_job_count(cleanup=False),
            DeferredJobRegistry(queue=queue).get_job_count(cleanup=False),
        ) == (
            depths.waiting,
            depths.intermediate,
            depths.started,
            depths.scheduled,
            depths.failed,
            depths.finished,
            depths.deferred,
        )


class TestReadOnly:
    def test_an_expired_started_entry_is_counted_and_left_for_the_workers_sweep(
        self, connection: Redis, queue: Queue
    ) -> None:
        job = queue.create_job(JOB_FUNCTION, args=(job_payload(1),))
        job.save()
        registry = StartedJobRegistry(queue=queue)
        connection.zadd(registry.key, {f"{job.id}:execution-1": time.time() - 60})

        depths = RqQueueMonitor(connection).depths(QUEUE_NAME)

        assert 1 == depths.started
        assert 1 == connection.zcard(registry.key)
