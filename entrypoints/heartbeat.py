"""A worker part's sign of life (ADR 0015): its loop beats, the runner records how it ended.

Light on purpose: the runner imports it before the signal handlers are installed, so it pulls in
nothing slow (``entrypoints.health`` serves what the heartbeats say).
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable

import attrs


class PartState(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPED = "stopped"
    DIED = "died"


@attrs.frozen
class Beat:
    """What a heartbeat says at one moment."""

    state: PartState
    last: float | None
    """Monotonic time of the last beat (or of the start of ``run``), None before either."""
    last_wall: float | None
    away: float
    error: str | None


class Heartbeat:
    """A part's sign of life. Its loop calls ``beat``; the runner calls ``running``, ``stopped``
    and ``died``. Thread-safe."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._beat = Beat(PartState.STARTING, None, None, 0.0, None)

    def beat(self, away: float = 0.0) -> None:
        """The loop went round. ``away``: how long it will now wait on purpose (a poll interval,
        a backoff) before it goes round again."""
        with self._lock:
            self._beat = attrs.evolve(
                self._beat, last=self._clock(), last_wall=self._wall_clock(), away=max(away, 0.0)
            )

    def running(self) -> None:
        with self._lock:
            self._beat = attrs.evolve(self._beat, state=PartState.RUNNING)
        self.beat()

    def stopped(self) -> None:
        with self._lock:
            self._beat = attrs.evolve(self._beat, state=PartState.STOPPED)

    def died(self, error: BaseException) -> None:
        text = f"{type(error).__name__}: {error}".splitlines()[0][:300]
        with self._lock:
            self._beat = attrs.evolve(self._beat, state=PartState.DIED, error=text)

    def read(self) -> Beat:
        with self._lock:
            return self._beat
