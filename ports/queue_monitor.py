"""What the job queue holds, by state: read by operators' tools (``livesell stats``, the
``livesell_queue_depth`` gauges of ``/metrics``) and by the webhook worker's ``Worker metrics``
line (SPEC §4). Reading changes nothing in the queue.
"""

from __future__ import annotations

from typing import Protocol

import attrs

from ports.queue import QueueUnavailable

__all__ = ["QueueDepths", "QueueMonitor", "QueueUnavailable"]


@attrs.frozen(kw_only=True)
class QueueDepths:
    """Jobs of one queue by state, at one reading."""

    waiting: int
    """Queued, not taken by any worker yet."""
    started: int
    """Running (or left by a worker that died, until the next sweep gives them back)."""
    scheduled: int
    """To run later: failed runs waiting for their retry."""
    failed: int
    """Failed with no attempt left (their dead letter written)."""
    finished: int
    """Ran to the end; kept until their result expires."""
    deferred: int
    """Waiting for another job to finish first."""
    intermediate: int
    """Taken by a worker and not marked started yet (milliseconds, unless that worker died)."""


class QueueMonitor(Protocol):
    """Read-only counts of a job queue's states."""

    def depths(self, queue: str) -> QueueDepths:
        """Every state's count of ``queue`` in one reading (a queue never used reads zeros).

        Raises QueueUnavailable when the broker cannot be reached.
        """
        ...
