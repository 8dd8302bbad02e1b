"""Live-session use cases: attach a message to the tenant's current session; close stale ones."""

from __future__ import annotations

import enum
import logging
from datetime import datetime
from typing import Protocol

import attrs

from application.errors import ContentionError, EarlierMessagesWaiting
from domain.live_sessions import CloseReason, InactivityWindow, LiveSession
from domain.senders import SenderType
from ports.clock import Clock, IdGenerator
from ports.repositories import ActiveSessionExists
from ports.unit_of_work import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger("livesell.live_sessions")

RACE_RETRIES = 8


class Unread(enum.Enum):
    """``attach_to_current_session``'s default: the active session is not read yet."""

    UNREAD = "unread"


def attach_to_current_session(
    uow: UnitOfWork,
    *,
    tenant_id: str,
    sender: SenderType,
    at: datetime,
    now: datetime,
    window: InactivityWindow,
    ids: IdGenerator,
    correlation_id: str,
    known_active: LiveSession | Unread | None = Unread.UNREAD,
) -> str | None:
    """Touch the session that was current when the message was received and return its id.

    ``at`` is the message's instant (``received_instant``: its receipt, capped at ``now``); the
    window is judged and the touch made at ``at``, so a message from a backlog joins the session
    of its time (ADR 0012). A seller gets-or-creates it (closing a stale active session first, at
    ``now``); a client only joins a session that covers ``at`` and otherwise gets None: a client
    never opens a session (ADR 0004). A stale session whose window still holds messages waiting to
    be processed is not closed: EarlierMessagesWaiting is raised and the job retried. Races are
    resolved as SPEC §3 says: a lost creation re-reads the winner, a session closed between read
    and touch is never reopened and the lookup starts again. ``known_active``: the tenant's
    active session as the caller just read it in ``uow`` (``inbound_facts``), for the first try.
    """
    for _ in range(RACE_RETRIES):
        active = (
            uow.sessions.get_active(tenant_id) if isinstance(known_active, Unread) else known_active
        )
        known_active = Unread.UNREAD  # a retry reads again
        if active is not None and active.is_stale(at, window):
            if sender is SenderType.CLIENT:
                return None
            if uow.inbound.has_waiting(tenant_id, active.started_at, active.window_end(window)):
                raise EarlierMessagesWaiting(
                    f"live session {active.id} of tenant {tenant_id!r} still has messages"
                    " received inside its window waiting to be processed"
                )
            active.close(now, CloseReason.INACTIVITY, correlation_id)
            if not uow.sessions.close(active):
                continue
            active = None
        if active is None:
            if sender is SenderType.CLIENT:
                return None
            session = LiveSession.open(
                id=ids.new_id(), tenant_id=tenant_id, now=at, correlation_id=correlation_id
            )
            session.touch(at, sender)
            try:
                uow.sessions.add(session)
            except ActiveSessionExists:
                continue
            return session.id
        if sender is SenderType.CLIENT and not active.covers(at, window):
            return None
        touched = uow.sessions.touch(tenant_id, active.id, at, sender)
        if touched is not None:
            return touched.id
    raise ContentionError(f"could not attach to a live session of tenant {tenant_id!r}")


@attrs.frozen
class ClosedSession:
    tenant_id: str
    session_id: str
    idle_minutes: float


@attrs.frozen
class CloseReport:
    closed: tuple[ClosedSession, ...]
    batches: int
    window_minutes: int

    @property
    def closed_count(self) -> int:
        return len(self.closed)


class CloseObserver(Protocol):
    """Told of every closing run's report (metrics)."""

    def sessions_closed(self, report: CloseReport) -> None:
        """Called once a run has stored its closures; must not raise."""
        ...


def close_inactive_sessions(
    *,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    window: InactivityWindow,
    batch_limit: int,
    run_id: str,
) -> CloseReport:
    """Close every active session idle for longer than the window, ``batch_limit`` per transaction,
    batch after batch until none is left. Each closure is stored with its ``live_session.closed``
    event. A session with messages received inside its window still waiting is left for a later
    run (ADR 0012). Safe to run in several processes at once: each session is closed once.
    """
    if batch_limit < 1:
        raise ValueError(f"batch limit must be at least 1, got {batch_limit}")
    now = clock.now()
    cutoff = window.cutoff(now)
    closed: list[ClosedSession] = []
    batches = 0
    while True:
        with uow_factory() as uow:
            stale = uow.sessions.claim_stale(cutoff, batch_limit, window.length)
            closed_now: list[ClosedSession] = []
            for session in stale:
                idle = (now - session.last_activity_at).total_seconds() / 60
                session.close(now, CloseReason.INACTIVITY, correlation_id=run_id)
                if uow.sessions.close(session):
                    closed_now.append(ClosedSession(session.tenant_id, session.id, idle))
            uow.commit()
        batches += 1
        closed.extend(closed_now)
        for item in closed_now:
            log.info(
                "Live session closed (inactivity)",
                extra={
                    "context": {
                        "tenantId": item.tenant_id,
                        "liveSessionId": item.session_id,
                        "idleMinutes": round(item.idle_minutes, 1),
                        "correlationId": run_id,
                    }
                },
            )
        if len(stale) < batch_limit or not closed_now:
            break
    return CloseReport(tuple(closed), batches, window.minutes)
