"""The retry policy shared by both workers (ADR 0003).

After failed attempt ``n`` (1-based) with ``n < max_attempts`` the next attempt is due after
``min(base * 2**(n-1), cap)``: 1, 2, 4, 8 s with the defaults; failed attempt ``max_attempts``
dead-letters. A provider's longer Retry-After is honoured, still capped.
"""

from __future__ import annotations

from datetime import timedelta

import attrs

from domain.errors import InvalidSetting

DEFAULT_MAX_ATTEMPTS = 5


@attrs.frozen
class RetryAt:
    """Try again after ``delay``."""

    delay: timedelta


@attrs.frozen
class GiveUp:
    """No attempt is left: dead-letter."""


RetryDecision = RetryAt | GiveUp


@attrs.frozen
class RetryPolicy:
    """Exponential backoff with a cap and a maximum number of attempts."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    base: timedelta = timedelta(seconds=1)
    cap: timedelta = timedelta(seconds=30)

    def __attrs_post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise InvalidSetting(f"max attempts must be a whole number, got {self.max_attempts!r}")
        if not 1 <= self.max_attempts <= 100:
            raise InvalidSetting(f"max attempts must be 1..100, got {self.max_attempts}")
        if self.base <= timedelta(0) or self.cap < self.base:
            raise InvalidSetting("retry base must be positive and not above the cap")

    def delay_after(self, attempt: int) -> timedelta:
        """The wait after failed attempt ``attempt`` (1-based)."""
        if attempt < 1:
            raise InvalidSetting(f"attempt numbers start at 1, got {attempt}")
        exponent = min(attempt - 1, 32)
        delay: timedelta = self.base * (2**exponent)
        return min(delay, self.cap)

    def decide(self, attempts_made: int, retry_after: timedelta | None = None) -> RetryDecision:
        """What to do after ``attempts_made`` attempts, the last of which failed transiently."""
        if attempts_made >= self.max_attempts:
            return GiveUp()
        delay = self.delay_after(attempts_made)
        if retry_after is not None and retry_after > delay:
            delay = min(retry_after, self.cap)
        return RetryAt(delay)

    def schedule(self) -> list[timedelta]:
        """Every wait between attempts, in order: ``max_attempts - 1`` of them."""
        return [self.delay_after(n) for n in range(1, self.max_attempts)]

    def attempts_remaining(self, attempts_made: int) -> int:
        return max(self.max_attempts - attempts_made, 0)
