"""The loop of every periodic worker part (the session closer, the inbox reconciler, the spool
drainer): run a pass when one is due, then wait; after a failed pass wait longer, doubling up to
a cap; go round at least every ``tick`` seconds, so that a task can look at something between
passes (the reconciler probes the queue every second, ADR 0013).

The task says what a pass came to (``PassOutcome``) and logs what it does, its failures too; the
loop decides when the next pass runs. Stopping, waiting and the clock are ports
(``ports.loops``): no thread is started or slept here.
"""

from __future__ import annotations

import enum
import math
from typing import Protocol

import attrs

from ports.loops import Monotonic, Pulse, StopSignal

MAX_DOUBLINGS = 6
"""A backoff doubles at most this many times (64 times its base), and never passes its cap."""


class Schedule(enum.Enum):
    """From when the wait after a pass counts (the two kinds of ``ScheduledExecutorService``)."""

    FIXED_DELAY = "fixed-delay"
    """From the end of the pass: a slow pass pushes the next one back."""
    FIXED_RATE = "fixed-rate"
    """From the start of the pass: passes keep their cadence while they are quicker than it."""


@attrs.frozen(kw_only=True)
class Pacing:
    """When a task's passes run. ``interval``: seconds between passes that did their work;
    after ``n`` failed passes in a row, ``min(backoff_cap, backoff_base * 2 ** min(n, 6))``."""

    interval: float
    backoff_base: float
    backoff_cap: float
    schedule: Schedule = Schedule.FIXED_DELAY
    tick: float = math.inf
    """The loop goes round at least this often (``between_passes`` runs every time round)."""

    def backoff(self, failures: int) -> float:
        """The wait after the ``failures``-th failed pass in a row."""
        return min(self.backoff_cap, self.backoff_base * 2.0 ** min(failures, MAX_DOUBLINGS))


class PassOutcome(enum.Enum):
    """What a pass came to, for the loop to choose the wait before the next."""

    DONE = "done"
    """The work there was is done: the next pass after the interval."""
    MORE = "more"
    """The pass stopped at its limit with work left: the next pass at once."""
    FAILED = "failed"
    """The pass could not do its work (and said so): the next one after a backoff."""


class PeriodicTask(Protocol):
    """The work of a periodic part, one pass at a time."""

    def between_passes(self) -> None:
        """Called every time round, before a pass that is due. Must not raise: it logs and
        swallows its own failures (a raise ends the loop, and the part dies)."""
        ...

    def run_pass(self) -> PassOutcome:
        """One pass. Raising counts as a failed pass, which ``pass_failed`` reports."""
        ...

    def pass_failed(self, error: Exception, retry_in: float, failures: int) -> None:
        """Report a pass that raised ``error``, the ``failures``-th in a row; the next pass runs
        in ``retry_in`` seconds. Called while ``error`` is being handled."""
        ...


class PeriodicLoop:
    """Runs ``task`` paced by ``pacing`` until ``stop`` is set; the first pass at once."""

    def __init__(
        self,
        task: PeriodicTask,
        pacing: Pacing,
        *,
        heartbeat: Pulse,
        monotonic: Monotonic,
    ) -> None:
        self.task = task
        self.pacing = pacing
        self.heartbeat = heartbeat
        self.monotonic = monotonic
        self.failures = 0
        """Passes failed in a row."""
        self.next_pass = -math.inf
        """Monotonic time from which the next pass is due."""

    def run(self, stop: StopSignal) -> None:
        while not stop.is_set():
            self.heartbeat.beat()
            self.task.between_passes()
            now = self.monotonic()
            if now >= self.next_pass:
                self.run_pass(started=now)
            pause = min(self.pacing.tick, max(0.0, self.next_pass - self.monotonic()))
            self.heartbeat.beat(away=pause)
            stop.wait(pause)

    def run_pass(self, *, started: float) -> None:
        """Run one pass and schedule the next."""
        wait = self._wait_after_pass()
        if self.pacing.schedule is Schedule.FIXED_RATE:
            self.next_pass = started + wait
        else:
            self.next_pass = self.monotonic() + wait

    def _wait_after_pass(self) -> float:
        try:
            outcome = self.task.run_pass()
        except Exception as exc:
            wait = self._failed()
            self.task.pass_failed(exc, wait, self.failures)
            return wait
        if outcome is PassOutcome.FAILED:
            return self._failed()
        self.failures = 0
        return 0.0 if outcome is PassOutcome.MORE else self.pacing.interval

    def _failed(self) -> float:
        self.failures += 1
        return self.pacing.backoff(self.failures)
