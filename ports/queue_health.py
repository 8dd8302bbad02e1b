"""Whether the queue answers, and whether it is still the queue it was (ADR 0013)."""

from __future__ import annotations

from typing import Protocol


class QueueHealth(Protocol):
    def epoch(self) -> str:
        """The queue's epoch: a token that stays the same while the broker keeps its data and
        changes when it lost them (restarted empty, flushed, evicted). Raises
        ``ports.queue.QueueUnavailable`` when the broker cannot be reached."""
        ...
