"""Live sessions: a seller's live, kept current by activity, closed after the inactivity window."""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

import attrs

from domain.errors import IllegalTransition, InvalidSetting
from domain.events import Event, LiveSessionClosed, LiveSessionOpened
from domain.senders import SenderType

DEFAULT_WINDOW_MINUTES = 45
MIN_WINDOW_MINUTES = 1
MAX_WINDOW_MINUTES = 1440


class SessionStatus(enum.StrEnum):
    ACTIVE = "active"
    CLOSED = "closed"


class CloseReason(enum.StrEnum):
    INACTIVITY = "inactivity"
    SUPERSEDED = "superseded"


@attrs.frozen
class InactivityWindow:
    """``W``: a session with no activity for longer than this is stale (1..1440 minutes)."""

    minutes: int = DEFAULT_WINDOW_MINUTES

    def __attrs_post_init__(self) -> None:
        if isinstance(self.minutes, bool) or not isinstance(self.minutes, int):
            raise InvalidSetting(f"inactivity window must be whole minutes, got {self.minutes!r}")
        if not MIN_WINDOW_MINUTES <= self.minutes <= MAX_WINDOW_MINUTES:
            raise InvalidSetting(
                f"inactivity window must be {MIN_WINDOW_MINUTES}..{MAX_WINDOW_MINUTES} minutes,"
                f" got {self.minutes}"
            )

    @property
    def length(self) -> timedelta:
        return timedelta(minutes=self.minutes)

    def cutoff(self, now: datetime) -> datetime:
        """Sessions whose last activity is before this instant are stale."""
        return now - self.length


def received_instant(received_at: datetime, now: datetime) -> datetime:
    """The instant the inbound rules judge a message at: when it was received, capped at ``now``
    (a sender's clock ahead of ours never moves a session into the future). ADR 0012."""
    return min(received_at, now)


@attrs.define(kw_only=True)
class LiveSession:
    """One tenant's live. At most one is active per tenant (the database guarantees it).

    A session is *current* iff it is active and its last activity is at or after ``now - W``.
    """

    id: str
    tenant_id: str
    status: SessionStatus = SessionStatus.ACTIVE
    started_at: datetime
    last_activity_at: datetime
    closed_at: datetime | None = None
    close_reason: CloseReason | None = None
    seller_message_count: int = 0
    client_message_count: int = 0
    events: list[Event] = attrs.field(factory=list, eq=False, repr=False)

    @classmethod
    def open(cls, *, id: str, tenant_id: str, now: datetime, correlation_id: str) -> LiveSession:
        """A new active session started by a seller at ``now``; records ``live_session.opened``."""
        session = cls(id=id, tenant_id=tenant_id, started_at=now, last_activity_at=now)
        session.events.append(
            LiveSessionOpened(
                tenant_id=tenant_id,
                subject_id=id,
                correlation_id=correlation_id,
                occurred_at=now,
                started_at=now,
            )
        )
        return session

    @property
    def is_active(self) -> bool:
        return self.status is SessionStatus.ACTIVE

    def is_current(self, now: datetime, window: InactivityWindow) -> bool:
        return self.is_active and self.last_activity_at >= window.cutoff(now)

    def covers(self, at: datetime, window: InactivityWindow) -> bool:
        """A message received ``at`` belongs to this session: it is active, had started and was
        not stale yet at that instant (``started_at <= at <= last_activity_at + W``). ADR 0012."""
        return self.is_current(at, window) and self.started_at <= at

    def window_end(self, window: InactivityWindow) -> datetime:
        """The last instant a message can be received inside this session: ``last_activity_at +
        W``. Messages received in ``[started_at, window_end]`` and still waiting keep it open."""
        return self.last_activity_at + window.length

    def is_stale(self, now: datetime, window: InactivityWindow) -> bool:
        """Active but idle for longer than the window: the closing job's and the processor's cue."""
        return self.is_active and self.last_activity_at < window.cutoff(now)

    def touch(self, now: datetime, sender: SenderType) -> None:
        """Record activity by ``sender`` received at ``now``. A closed session is never touched.

        ``last_activity_at`` never moves back; ``started_at`` moves back to a seller message
        received before the first one processed (a backlog processed out of order, ADR 0012).
        """
        if not self.is_active:
            raise IllegalTransition(f"live session {self.id} is closed and cannot be touched")
        self.last_activity_at = max(self.last_activity_at, now)
        self.started_at = min(self.started_at, now)
        if sender is SenderType.SELLER:
            self.seller_message_count += 1
        else:
            self.client_message_count += 1

    def close(self, now: datetime, reason: CloseReason, correlation_id: str) -> None:
        """Close the session and record ``live_session.closed``. Closing twice is an error."""
        if not self.is_active:
            raise IllegalTransition(f"live session {self.id} is already closed")
        self.status = SessionStatus.CLOSED
        self.closed_at = now
        self.close_reason = reason
        self.events.append(
            LiveSessionClosed(
                tenant_id=self.tenant_id,
                subject_id=self.id,
                correlation_id=correlation_id,
                occurred_at=now,
                reason=reason.value,
                started_at=self.started_at,
                last_activity_at=self.last_activity_at,
                closed_at=now,
                duration_seconds=(self.last_activity_at - self.started_at).total_seconds(),
                seller_message_count=self.seller_message_count,
                client_message_count=self.client_message_count,
            )
        )

    def pull_events(self) -> list[Event]:
        """Hand over the recorded events once (the unit of work stores them on commit)."""
        events, self.events = self.events, []
        return events
