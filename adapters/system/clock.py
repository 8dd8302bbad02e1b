"""The wall clock and time-ordered random ids."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime


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
