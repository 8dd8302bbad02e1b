"""Noticing that the queue is back (ADR 0013), so the inbox reconciler enqueues at once what the
webhook recorded while it was down, instead of waiting for those records to grow old.

``QueueWatch.observe()`` is called about once a second. It returns a ``QueueRecovered`` when the
queue answers again after failing, with the instant from which records may have missed their
enqueue (the last time it answered, less a margin), or when the queue's epoch changed: the broker
lost its data, so every job queued before is gone and every record still ``received`` needs one.
``recovery_due()`` observes the same way and keeps a recovery owed until it is ``recovered()``:
one that could not enqueue everything (the queue failed again half way) is run again at the next
probe that finds the queue answering.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs

from ports.clock import Clock
from ports.queue import QueueUnavailable
from ports.queue_health import QueueHealth

MARGIN = timedelta(seconds=2)
"""Records received this long before the last good probe are enqueued again too: the webhook may
have met the outage a little before this process did."""


@attrs.frozen(kw_only=True)
class QueueRecovered:
    """The queue answers again. ``since`` None: it lost its data, every record still ``received``
    needs a job; else the records received since then do."""

    since: datetime | None
    down_seconds: float


class QueueWatch:
    """``lookback``: when the queue was never seen answering (this process started during the
    outage), records received this long before the first failed probe count as possibly missed
    (older ones are the regular reconcile pass's)."""

    def __init__(
        self,
        health: QueueHealth,
        clock: Clock,
        lookback: timedelta,
        margin: timedelta = MARGIN,
    ) -> None:
        self.health = health
        self.clock = clock
        self.lookback = lookback
        self.margin = margin
        self._epoch: str | None = None
        self._last_ok: datetime | None = None
        self._down_since: datetime | None = None
        self._owed: QueueRecovered | None = None

    @property
    def down(self) -> bool:
        return self._down_since is not None

    def observe(self) -> QueueRecovered | None:
        """Probe the queue once; a QueueRecovered when this probe ends an outage or sees a new
        epoch, else None."""
        now = self.clock.now()
        try:
            epoch = self.health.epoch()
        except QueueUnavailable:
            if self._down_since is None:
                self._down_since = self._last_ok or now - self.lookback
            return None
        recovered: QueueRecovered | None = None
        if self._epoch is not None and epoch != self._epoch:
            recovered = QueueRecovered(since=None, down_seconds=self._down_for(now))
        elif self._down_since is not None:
            recovered = QueueRecovered(
                since=self._down_since - self.margin, down_seconds=self._down_for(now)
            )
        self._epoch = epoch
        self._last_ok = now
        self._down_since = None
        return recovered

    def recovery_due(self) -> QueueRecovered | None:
        """Probe the queue once (``observe``); the recovery to run now, while the queue answers:
        the one this probe noticed, else one noticed before and not ``recovered()`` yet."""
        self._owed = self.observe() or self._owed
        return None if self.down else self._owed

    def recovered(self) -> None:
        """The recovery ``recovery_due`` returned went through: none is owed any more."""
        self._owed = None

    def _down_for(self, now: datetime) -> float:
        return 0.0 if self._down_since is None else (now - self._down_since).total_seconds()
