"""What wakes a waiting loop: a hint that work was written, and the wait itself."""

from __future__ import annotations

from typing import Protocol


class Wakeup(Protocol):
    """Calls back, from a thread of its own, when a message is written to the outbox (Postgres
    LISTEN/NOTIFY: ``adapters.sqlalchemy.notify.PostgresOutboxWakeup``, built with the callback).

    Only a hint: a sender still polls. The container gives none where writers notify nobody
    (SQLite, the memory store)."""

    def start(self) -> None:
        """Begin listening; the callback may be called from now on, also after each reconnect."""
        ...

    def stop(self, timeout: float = 2.0) -> None:
        """Stop listening, waiting up to ``timeout`` seconds for the listener to end."""
        ...


class Waiter(Protocol):
    """Where a loop sleeps between turns, and the monotonic time it sleeps by.

    ``wake`` may be called from any thread (a finished send, a ``Wakeup``): it ends the current
    ``wait``, or makes the next one return at once, until ``clear``. Threads and events
    (``adapters.system.waiting.ThreadWaiter``) or a virtual clock that ``wait`` moves forward
    (``adapters.memory.waiting.VirtualWaiter``, deterministic)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (only differences mean anything)."""
        ...

    def wait(self, seconds: float) -> None:
        """Return after ``seconds``, or sooner once ``wake`` was called since the last ``clear``."""
        ...

    def wake(self) -> None:
        """End the current or the next ``wait`` early. Thread-safe."""
        ...

    def clear(self) -> None:
        """Forget the wake-ups so far: the next ``wait`` waits again."""
        ...


class StopSignal(Protocol):
    """Set when a loop should stop (the runner's ``threading.Event``)."""

    def is_set(self) -> bool: ...
