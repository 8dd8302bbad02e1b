"""In-memory dead letters."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from adapters.memory.repositories.base import _copy, _Repo
from domain.dead_letters import DeadLetter, DeadLetterSource


class MemoryDeadLetterRepository(_Repo):
    def add(self, dead_letter: DeadLetter) -> None:
        self._journal.put(self._store.dead_letters, dead_letter.id, _copy(dead_letter))

    def get(self, dead_letter_id: str) -> DeadLetter | None:
        found = self._store.dead_letters.get(dead_letter_id)
        return _copy(found) if found is not None else None

    def list(
        self,
        *,
        tenant_id: str | None = None,
        source: DeadLetterSource | None = None,
        since: datetime | None = None,
        limit: int = 100,
        replayed: bool | None = None,
    ) -> Sequence[DeadLetter]:
        rows = [
            d
            for d in self._store.dead_letters.values()
            if (tenant_id is None or d.tenant_id == tenant_id)
            and (source is None or d.source is source)
            and (since is None or d.created_at >= since)
            and (replayed is None or d.replayed is replayed)
        ]
        rows.sort(key=lambda d: (d.created_at, d.id), reverse=True)
        return [_copy(d) for d in rows[:limit]]

    def count(self, *, since: datetime | None = None, replayed: bool | None = None) -> int:
        return sum(
            1
            for d in self._store.dead_letters.values()
            if (since is None or d.created_at >= since)
            and (replayed is None or d.replayed is replayed)
        )

    def mark_replayed(self, dead_letter: DeadLetter) -> bool:
        stored = self._store.dead_letters.get(dead_letter.id)
        if stored is None or stored.replayed_at is not None or dead_letter.replayed_at is None:
            return False
        self._journal.put(self._store.dead_letters, dead_letter.id, _copy(dead_letter))
        return True

    def find_open(
        self, source: DeadLetterSource, tenant_id: str | None, source_id: str
    ) -> DeadLetter | None:
        found = [
            d
            for d in self._store.dead_letters.values()
            if d.source is source
            and d.tenant_id == tenant_id
            and d.source_id == source_id
            and not d.replayed
        ]
        return _copy(max(found, key=lambda d: (d.created_at, d.id))) if found else None
