"""An in-process inbound queue: a FIFO list of payloads."""

from __future__ import annotations

import collections
import threading
from typing import Any

from ports.queue import QueueUnavailable


class MemoryInboundQueue:
    def __init__(self) -> None:
        self._jobs: collections.deque[tuple[str, dict[str, Any]]] = collections.deque()
        self._lock = threading.Lock()
        self._counter = 0
        self.available = True

    def enqueue(self, payload: dict[str, Any]) -> str:
        if not self.available:
            raise QueueUnavailable("in-memory queue switched off")
        with self._lock:
            self._counter += 1
            job_id = f"job-{self._counter}"
            self._jobs.append((job_id, dict(payload)))
            return job_id

    def pop(self) -> tuple[str, dict[str, Any]] | None:
        with self._lock:
            return self._jobs.popleft() if self._jobs else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)
