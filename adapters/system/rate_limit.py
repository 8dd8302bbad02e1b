"""A thread-safe token bucket per key, for one process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# A refill computed from a wait of (1 - tokens) / rate may come back a hair under one token; under
# a fake clock that would ask for a wait too small to move it, for ever.
_ROUNDING = 1e-9


class TokenBucketRateLimiter:
    """At most ``rate`` acquisitions per second per key, with bursts up to ``burst``."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self._rate = rate
        self._burst = burst if burst is not None else max(1.0, rate / 10)
        self._monotonic = monotonic
        self._sleep = sleep
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> None:
        while True:
            with self._lock:
                now = self._monotonic()
                tokens, last = self._buckets.get(key, (self._burst, now))
                tokens = min(self._burst, tokens + (now - last) * self._rate)
                if tokens >= 1 - _ROUNDING:
                    self._buckets[key] = (max(0.0, tokens - 1), now)
                    return
                self._buckets[key] = (tokens, now)
                wait = (1 - tokens) / self._rate
            self._sleep(wait)
