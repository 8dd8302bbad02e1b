"""In-memory live sessions."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from adapters.memory.repositories.base import _copy, _has_waiting, _Repo
from domain.live_sessions import LiveSession, SessionStatus
from domain.senders import SenderType
from ports.repositories import ActiveSessionExists


class MemoryLiveSessionRepository(_Repo):
    def get(self, tenant_id: str, session_id: str) -> LiveSession | None:
        session = self._store.sessions.get(session_id)
        return _copy(session) if session is not None and session.tenant_id == tenant_id else None

    def get_active(self, tenant_id: str) -> LiveSession | None:
        for session in self._store.sessions.values():
            if session.tenant_id == tenant_id and session.status is SessionStatus.ACTIVE:
                return _copy(session)
        return None

    def add(self, session: LiveSession) -> None:
        if session.is_active and self.get_active(session.tenant_id) is not None:
            raise ActiveSessionExists(f"tenant {session.tenant_id!r} already has an active session")
        self._journal.put(self._store.sessions, session.id, _copy(session))
        self._events.append(session.pull_events())

    def touch(
        self, tenant_id: str, session_id: str, now: datetime, sender: SenderType
    ) -> LiveSession | None:
        stored = self._store.sessions.get(session_id)
        if stored is None or stored.tenant_id != tenant_id or not stored.is_active:
            return None
        updated = _copy(stored)
        updated.touch(now, sender)
        self._journal.put(self._store.sessions, session_id, updated)
        return _copy(updated)

    def close(self, session: LiveSession) -> bool:
        stored = self._store.sessions.get(session.id)
        if (
            stored is None
            or stored.tenant_id != session.tenant_id
            or not stored.is_active
            or stored.last_activity_at != session.last_activity_at
            or stored.seller_message_count != session.seller_message_count
            or stored.client_message_count != session.client_message_count
        ):
            session.pull_events()
            return False
        self._journal.put(self._store.sessions, session.id, _copy(session))
        self._events.append(session.pull_events())
        return True

    def claim_stale(self, cutoff: datetime, limit: int, window: timedelta) -> Sequence[LiveSession]:
        stale = [
            s
            for s in self._store.sessions.values()
            if s.is_active
            and s.last_activity_at < cutoff
            and not _has_waiting(
                self._store, s.tenant_id, s.started_at, s.last_activity_at + window
            )
        ]
        stale.sort(key=lambda s: (s.last_activity_at, s.id))
        return [_copy(s) for s in stale[:limit]]

    def count_active(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for session in self._store.sessions.values():
            if session.is_active:
                counts[session.tenant_id] += 1
        return dict(counts)
