"""Virtual time for the loops of ``application/`` (``ports.loops``): a monotonic clock and a stop
signal whose ``wait`` moves the clock on at once instead of sleeping, so a test or a simulation
runs hours of a periodic part in no time."""

from __future__ import annotations

import math


class VirtualTime:
    """Seconds from 0. ``wait(t)`` records ``t`` and moves the clock ``t`` on; the stop is set by
    ``set()``, or once the clock reaches ``until``."""

    def __init__(self, until: float = math.inf) -> None:
        self.now = 0.0
        self.until = until
        self.waits: list[float] = []
        self._set = False

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Time passes: a pass that takes ``seconds``."""
        self.now += seconds

    def is_set(self) -> bool:
        return self._set or self.now >= self.until

    def set(self) -> None:
        self._set = True

    def wait(self, timeout: float) -> bool:
        if not self.is_set():
            self.waits.append(timeout)
            self.now = min(self.now + timeout, max(self.now, self.until))
        return self.is_set()
