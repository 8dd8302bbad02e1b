# ruff: noqa: F811 - the Redis fixtures imported below are parameters here
"""Jobs left in RQ's intermediate queue by a worker that took them and never started them
(ADR 0013), on the real Redis. RQ 2.12's own cleanup (``rq/intermediate_queue.py``,
https://github.com/rq/rq/blob/master/rq/intermediate_queue.py) notes an id on one pass and fails
it more than a minute later; ``requeue_stuck`` notes it and puts it back at the head of the queue
``STUCK_SECONDS`` later, untouched."""

from __future__ import annotations

from rq import Queue
from rq.job import JobStatus

from adapters.rq.intermediate import STUCK_SECONDS, requeue_stuck, seen_key
from adapters.rq.spec import QUEUE_NAME, JobSpec
from domain.retry import RetryPolicy
from tests.support.redis_db import RedisTestDb, redis_db, redis_test_db  # noqa: F401


def taken_job(queue: Queue, sid: str) -> str:
    """A job moved to the intermediate queue as a worker's LMOVE leaves it."""
    spec = JobSpec.webhook_processing(RetryPolicy())
    job = queue.enqueue_call(
        spec.function, args=({"providerMessageId": sid},), **spec.enqueue_options()
    )
    queue.connection.lmove(queue.key, queue.intermediate_queue_key)
    return str(job.id)


class TestRequeueStuck:
    def test_a_job_noted_then_still_there_after_the_threshold_goes_back_to_the_queue_head(
        self, redis_db: RedisTestDb
    ) -> None:
        queue = Queue(QUEUE_NAME, connection=redis_db.client)
        stuck = taken_job(queue, "SM-stuck")
        waiting = queue.enqueue_call("entrypoints.jobs.process_webhook_message", args=({},)).id

        assert [] == requeue_stuck(queue, now=1000.0)
        assert [] == requeue_stuck(queue, now=1000.0 + STUCK_SECONDS - 0.5)
        assert [stuck] == requeue_stuck(queue, now=1000.0 + STUCK_SECONDS)

        assert [stuck, waiting] == queue.get_job_ids()
        assert 0 == redis_db.client.llen(queue.intermediate_queue_key)
        assert {} == redis_db.client.hgetall(seen_key(queue))
        job = queue.fetch_job(stuck)
        assert job is not None
        assert (JobStatus.QUEUED, 4) == (job.get_status(), job.retries_left)

    def test_a_job_started_meanwhile_or_gone_is_not_queued_again(
        self, redis_db: RedisTestDb
    ) -> None:
        queue = Queue(QUEUE_NAME, connection=redis_db.client)
        started = taken_job(queue, "SM-started")
        gone = taken_job(queue, "SM-gone")
        requeue_stuck(queue, now=1000.0)
        # The worker that took ``started`` marks it started and removes it (its pipeline).
        redis_db.client.lrem(queue.intermediate_queue_key, 1, started)
        queue.fetch_job(gone).delete(remove_from_queue=False)  # type: ignore[union-attr]

        assert [] == requeue_stuck(queue, now=1000.0 + 60)
        assert [] == queue.get_job_ids()
        assert 0 == redis_db.client.llen(queue.intermediate_queue_key)
        assert {} == redis_db.client.hgetall(seen_key(queue))
