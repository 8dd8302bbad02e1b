"""What a worker loop in ``application/`` runs over: the request to stop, a monotonic clock and
the heartbeat it beats. The entrypoint hands in ``threading.Event``, ``time.monotonic`` and its
``Heartbeat``; tests hand in fakes that step a virtual clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

Monotonic = Callable[[], float]
"""Seconds on a clock that never goes back (``time.monotonic``); only differences mean anything."""


class StopSignal(Protocol):
    """Set once when the worker is asked to stop (``threading.Event`` is one)."""

    def is_set(self) -> bool:
        """Whether the stop was asked for."""
        ...

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds, returning early (True) when the stop is asked for."""
        ...


class Pulse(Protocol):
    """A loop's sign of life, read by the health endpoint (ADR 0015)."""

    def beat(self, away: float = 0.0) -> None:
        """The loop went round; ``away``: how long it now waits on purpose before the next
        round, so a wait is not taken for a stall."""
        ...
