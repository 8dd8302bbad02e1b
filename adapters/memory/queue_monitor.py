"""``QueueMonitor`` over in-memory inbound queues, for unit tests and the simulation: a queue's
waiting jobs are those in its list; the in-memory queue has no other state, so the others read
zero. A queue switched off (``available = False``) raises QueueUnavailable, as an unreachable
Redis does. The contract suite runs on it and on RQ."""

from __future__ import annotations

from collections.abc import Mapping

from adapters.memory.queue import MemoryInboundQueue
from ports.queue_monitor import QueueDepths, QueueUnavailable


class MemoryQueueMonitor:
    def __init__(self, queues: Mapping[str, MemoryInboundQueue]) -> None:
        self.queues = dict(queues)

    def depths(self, queue: str) -> QueueDepths:
        watched = self.queues.get(queue)
        if watched is not None and not watched.available:
            raise QueueUnavailable("in-memory queue switched off")
        waiting = 0 if watched is None else len(watched)
        return QueueDepths(
            waiting=waiting,
            started=0,
            scheduled=0,
            failed=0,
            finished=0,
            deferred=0,
            intermediate=0,
        )
