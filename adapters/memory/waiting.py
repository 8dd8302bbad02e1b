"""A loop's wait in virtual time (``ports.wakeup.Waiter``), for tests and the simulation."""

from __future__ import annotations

from datetime import timedelta

from adapters.memory.clock import FixedClock


class VirtualWaiter:
    """Waiting moves ``clock`` forward instead of sleeping; its monotonic time is the clock's
    seconds since the waiter was made. A ``wake`` (from an inline task) makes the next ``wait``
    return at once without moving the clock. Deterministic; for one thread."""

    def __init__(self, clock: FixedClock) -> None:
        self._clock = clock
        self._origin = clock.now()
        self._woken = False
        self.waited: list[float] = []
        """The length of every ``wait`` that moved the clock, in order."""

    def monotonic(self) -> float:
        return (self._clock.now() - self._origin).total_seconds()

    def wait(self, seconds: float) -> None:
        if self._woken:
            return
        self.waited.append(seconds)
        self._clock.advance(timedelta(seconds=seconds))

    def wake(self) -> None:
        self._woken = True

    def clear(self) -> None:
        self._woken = False
