"""What the outbox sender's loop carries from turn to turn (``_Pipeline``), what a send posts back
(``_Finished``), and the timing constants and small helpers of
``application.outbox_sender.OutboxSender`` (which re-exports the constants)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Final

import attrs

from application.outbox import Attempt, BatchReport, Expired
from domain.outbox import OutboxMessage

RECORD_GROUP_LIMIT = 200
"""At most this many outcomes per recording transaction."""
RECORD_LINGER_SECONDS = 0.02
"""How long a finished send may wait for others to be recorded with it, while sends are in
flight and fewer than half a claim have finished: a recording transaction costs about the same
for five outcomes as for fifty, and with sends spaced by the rate limit they finish a few at a
time (ADR 0029)."""
MAX_STORE_BACKOFF_SECONDS = 5.0
STOP_RECORD_DEADLINE_SECONDS = 20.0
"""On stop, how long unrecorded outcomes are retried against an unreachable store (the runner
allows 30 s in all)."""
RETRY_MARGIN_SECONDS = 0.02
"""Claim a retry this much after it falls due, so the claim's clock surely sees it due."""
IDLE_TICK_SECONDS = 0.2
"""The longest the loop sleeps without looking at ``stop``."""


@attrs.frozen
class _Finished:
    """A send's attempt (or the expiry found before the provider call) and how long it took,
    posted by the send to the loop."""

    attempt: Attempt | Expired
    seconds: float


_NOTIFIED: Final = "notified"
"""Posted by ``notify``: a message was written."""


@attrs.define
class _Pipeline:
    """What the loop carries from one turn to the next (times are the waiter's monotonic)."""

    in_flight: int = 0
    unrecorded: list[Attempt] = attrs.field(factory=list)
    abandoned: list[OutboxMessage] = attrs.field(factory=list)
    """Claims past their last attempt, to dead-letter unsent."""
    expired: list[OutboxMessage] = attrs.field(factory=list)
    """Claims past their ``expires_at``, to record ``expired`` unsent."""
    backlog: bool = True
    """The last claim came back full (true at start: claim at once)."""
    notified: bool = False
    next_poll: float = 0.0
    retries: list[float] = attrs.field(factory=list)
    """A heap: when the retries this sender scheduled fall due."""
    store_ok_at: float = 0.0
    store_failures: int = 0
    stop_deadline: float | None = None
    unstored_since: float | None = None
    """When the oldest outcome not yet recorded was collected."""

    @property
    def unstored_count(self) -> int:
        return len(self.unrecorded) + len(self.abandoned) + len(self.expired)

    @property
    def unstored(self) -> bool:
        return self.unstored_count > 0


def _no_beat() -> None:
    return None


def _no_job_scope(_tags: Mapping[str, str | None], /) -> AbstractContextManager[None]:
    return contextlib.nullcontext()


def store_backoff(failures: int) -> float:
    """Seconds to wait after ``failures`` consecutive store failures: 0.25 doubling, capped."""
    return float(min(MAX_STORE_BACKOFF_SECONDS, 0.25 * 2 ** min(failures - 1, 6)))


def _copy(message: OutboxMessage) -> OutboxMessage:
    return attrs.evolve(message, events=[])


def _sum(reports: Sequence[BatchReport]) -> BatchReport:
    return BatchReport(
        claimed=sum(r.claimed for r in reports),
        sent=sum(r.sent for r in reports),
        retried=sum(r.retried for r in reports),
        dead=sum(r.dead for r in reports),
        lost=sum(r.lost for r in reports),
        expired=sum(r.expired for r in reports),
    )
