"""The wall clock and time-ordered random ids."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class TimeOrderedIds:
    """26-character ids sortable by creation (48-bit milliseconds + 80 random bits, Crockford
    base32, the ULID layout), so new rows land at the right edge of their primary-key index."""

    _ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

    def new_id(self) -> str:
        value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
        chars = []
        for _ in range(26):
            value, index = divmod(value, 32)
            chars.append(self._ALPHABET[index])
        return "".join(reversed(chars))


class AcceleratedClock:
    """Wall time sped up ``factor`` times from the moment it is made: demos see a 45-minute
    inactivity window pass in seconds while every component reads one consistent clock."""

    def __init__(self, factor: float, start: datetime | None = None) -> None:
        if factor <= 0:
            raise ValueError(f"factor must be positive, got {factor}")
        self.factor = factor
        self._origin = start or datetime.now(UTC)
        self._started = time.monotonic()

    def now(self) -> datetime:
        return self._origin + self.elapsed()

    def elapsed(self) -> timedelta:
        """Virtual time since the clock was made."""
        return timedelta(seconds=(time.monotonic() - self._started) * self.factor)
