"""Jobs a worker took from the queue but never started go back to the queue within seconds
(ADR 0013), replacing RQ's ``IntermediateQueue.cleanup`` in the sweep.

A worker moves job ids to ``rq:queue:<name>:intermediate`` (LMOVE) and, in the same breath, marks
them started and removes them from there (``adapters.rq.worker``: one pipeline, milliseconds). An
id still there later belongs to a worker that died or froze in between. RQ 2.12's cleanup
(``rq/intermediate_queue.py``) notes an id on one sweep and, more than one minute later, fails it
through ``handle_job_failure`` (an attempt spent, no failure callback: a job with no retry left is
lost to the dead letters). Here the id is noted on one sweep and, ``STUCK_SECONDS`` later, moved
back to the head of the queue, untouched, in one atomic script: the job runs again as if it had
never been taken, no attempt spent. The marks live in one hash per queue
(``livesell:rq:intermediate-seen:<name>``) and are dropped with the ids they mark.
"""

from __future__ import annotations

import time

from redis import Redis
from rq import Queue
from rq.registry import StartedJobRegistry

STUCK_SECONDS = 6.0
"""An id in the intermediate queue this long was taken by a worker that never started it. A live
worker holds an id there for milliseconds; a worker whose Redis failed half way through a take
starts its ids first when Redis answers (and a job run twice is harmless: jobs are idempotent)."""

_REQUEUE = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0
"""


def seen_key(queue: Queue) -> str:
    return f"livesell:rq:intermediate-seen:{queue.name}"


def requeue_stuck(
    queue: Queue, *, stuck_seconds: float = STUCK_SECONDS, now: float | None = None
) -> list[str]:
    """One sweep of ``queue``'s intermediate queue; returns the ids moved back to the queue."""
    connection: Redis = queue.connection
    moment = time.time() if now is None else now
    key = queue.intermediate_queue_key
    ids = [_text(item) for item in connection.lrange(key, 0, -1)]
    marks = {_text(k): float(v) for k, v in connection.hgetall(seen_key(queue)).items()}
    started = set(StartedJobRegistry(queue=queue).get_job_ids(cleanup=False)) if ids else set()
    requeued: list[str] = []
    with connection.pipeline(transaction=False) as pipe:
        for stale in set(marks) - set(ids):
            pipe.hdel(seen_key(queue), stale)
        for job_id in ids:
            if job_id in started:
                continue
            if not connection.exists(queue.job_class.key_for(job_id)):
                pipe.lrem(key, 1, job_id)
                pipe.hdel(seen_key(queue), job_id)
                continue
            first_seen = marks.get(job_id)
            if first_seen is None:
                pipe.hsetnx(seen_key(queue), job_id, moment)
            elif moment - first_seen >= stuck_seconds:
                if connection.eval(_REQUEUE, 2, key, queue.key, job_id):
                    requeued.append(job_id)
                pipe.hdel(seen_key(queue), job_id)
        pipe.execute()
    return requeued


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
