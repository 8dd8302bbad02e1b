"""The wait of a loop on threads (``ports.wakeup.Waiter``): an event and the monotonic clock."""

from __future__ import annotations

import threading
import time


class ThreadWaiter:
    """``wait`` blocks on a ``threading.Event`` that ``wake`` sets (from any thread)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, seconds: float) -> None:
        self._event.wait(seconds)

    def wake(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()
