"""Clocks and id generators for tests and the virtual-time simulation."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta


class FixedClock:
    """Always the same instant until ``advance`` or ``set`` moves it."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("clocks deal in timezone-aware instants")
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now

    def set(self, instant: datetime) -> None:
        with self._lock:
            self._now = instant


class SteppingClock(FixedClock):
    """Moves forward by ``step`` every time it is read."""

    def __init__(
        self, start: datetime | None = None, step: timedelta = timedelta(seconds=1)
    ) -> None:
        super().__init__(start)
        self._step = step

    def now(self) -> datetime:
        with self._lock:
            current = self._now
            self._now += self._step
            return current


class SequentialIds:
    """``prefix-000001``, ``prefix-000002`` ...: readable and deterministic."""

    def __init__(self, prefix: str = "id") -> None:
        self._prefix = prefix
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def new_id(self) -> str:
        with self._lock:
            return f"{self._prefix}-{next(self._counter):06d}"
