# mypy: disable-error-code="no-untyped-call"
"""``QueueMonitor`` on RQ's own keys: what ``rq info`` and rq-dashboard count.

One pipelined round trip per reading: ``LLEN`` of the queue's list and of its intermediate list,
``ZCARD`` of its started, scheduled, failed, finished and deferred registries. RQ's
``registry.count`` is not used: it runs a clean-up (a write) before counting, and a monitor only
reads (https://python-rq.org/docs/job_registries/).
"""

from __future__ import annotations

from redis import Redis
from rq import Queue
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)

from adapters.rq.connection import queue_errors, redis_connection
from ports.queue_monitor import QueueDepths


class RqQueueMonitor:
    def __init__(self, connection: Redis) -> None:
        self.connection = connection

    @classmethod
    def connect(
        cls, url: str, token: str | None = None, *, client_name: str | None = None
    ) -> RqQueueMonitor:
        """A monitor on its own client for ``url`` (nothing connects until the first reading)."""
        return cls(redis_connection(url, token, client_name=client_name))

    def depths(self, queue: str) -> QueueDepths:
        rq_queue = Queue(queue, connection=self.connection)
        with queue_errors(), self.connection.pipeline(transaction=False) as pipe:
            pipe.llen(rq_queue.key)
            pipe.llen(rq_queue.intermediate_queue_key)
            pipe.zcard(StartedJobRegistry(queue=rq_queue).key)
            pipe.zcard(ScheduledJobRegistry(queue=rq_queue).key)
            pipe.zcard(FailedJobRegistry(queue=rq_queue).key)
            pipe.zcard(FinishedJobRegistry(queue=rq_queue).key)
            pipe.zcard(DeferredJobRegistry(queue=rq_queue).key)
            counts = [int(count) for count in pipe.execute()]
        waiting, intermediate, started, scheduled, failed, finished, deferred = counts
        return QueueDepths(
            waiting=waiting,
            started=started,
            scheduled=scheduled,
            failed=failed,
            finished=finished,
            deferred=deferred,
            intermediate=intermediate,
        )

    def close(self) -> None:
        """Close this monitor's client (its connections are opened again on the next reading)."""
        self.connection.close()
