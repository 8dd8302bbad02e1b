"""``Spool`` in memory, for unit tests and the simulation: the same claim / acknowledge / release /
recover behaviour as the Redis spool (the contract suite runs on both), durable only as long as
the process. ``down`` makes every call raise SpoolUnavailable, as an unreachable Redis does."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

from ports.spool import SpoolEntry, SpoolUnavailable


class MemorySpoolStore:
    """What several drainers share: the waiting entries and each drainer's claims."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pending: deque[str] = deque()
        self.claimed: dict[str, list[str]] = {}
        self.alive: set[str] = set()
        self.down = False
        self.policy: str | None = None


class MemorySpool:
    def __init__(self, store: MemorySpoolStore | None = None, drainer: str = "memory") -> None:
        self.store = store or MemorySpoolStore()
        self.drainer = drainer

    def _check(self) -> None:
        if self.store.down:
            raise SpoolUnavailable("the spool is down")

    def append(self, document: Mapping[str, Any]) -> None:
        text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
        with self.store.lock:
            self._check()
            self.store.pending.append(text)

    def claim(self) -> SpoolEntry | None:
        with self.store.lock:
            self._check()
            self.store.alive.add(self.drainer)
            claimed = self.store.claimed.setdefault(self.drainer, [])
            if not self.store.pending:
                return None
            raw = self.store.pending.popleft()
            claimed.append(raw)
        value = json.loads(raw)
        return SpoolEntry(raw=raw, document=value if isinstance(value, dict) else None)

    def ack(self, entry: SpoolEntry) -> None:
        with self.store.lock:
            self._check()
            claimed = self.store.claimed.get(self.drainer, [])
            if entry.raw in claimed:
                claimed.remove(entry.raw)

    def release(self, entry: SpoolEntry) -> None:
        with self.store.lock:
            self._check()
            claimed = self.store.claimed.get(self.drainer, [])
            if entry.raw in claimed:
                claimed.remove(entry.raw)
                self.store.pending.appendleft(entry.raw)

    def recover(self) -> int:
        moved = 0
        with self.store.lock:
            self._check()
            for drainer, claimed in self.store.claimed.items():
                if drainer != self.drainer and drainer in self.store.alive:
                    continue
                while claimed:
                    self.store.pending.appendleft(claimed.pop())
                    moved += 1
        return moved

    def stop(self) -> None:
        """This drainer is gone (its lease expired): others may recover its claims."""
        with self.store.lock:
            self.store.alive.discard(self.drainer)

    def depth(self) -> int:
        with self.store.lock:
            self._check()
            return len(self.store.pending) + sum(map(len, self.store.claimed.values()))

    def durability_problem(self) -> str | None:
        policy = self.store.policy
        if policy is None or policy == "noeviction":
            return None
        return f"maxmemory-policy is {policy!r}"
