"""The retry policy shared by both workers (ADR 0003).

After failed attempt ``n`` (1-based) with ``n < max_attempts`` the next attempt is due after
``min(base * 2**(n-1), cap)``: 1, 2, 4, 8 s with the defaults; failed attempt ``max_attempts``
dead-letters. A provider's longer Retry-After is honoured in full (ADR 0015).

A rate-limited answer (HTTP 429, Twilio 20429) is not a failed attempt: the provider never
processed the request. ``decide_rate_limited`` reschedules it without spending an attempt, for as
long as the message has been rate limited for less than ``rate_limited_ceiling`` (ADR 0015).
"""

from __future__ import annotations

from datetime import timedelta

import attrs

from domain.errors import InvalidSetting

DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_RATE_LIMITED_CEILING = timedelta(hours=1)


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
    """Exponential backoff with a cap and a maximum number of attempts; rate limits wait apart,
    up to ``rate_limited_ceiling`` in all."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    base: timedelta = timedelta(seconds=1)
    cap: timedelta = timedelta(seconds=30)
    rate_limited_ceiling: timedelta = DEFAULT_RATE_LIMITED_CEILING

    def __attrs_post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise InvalidSetting(f"max attempts must be a whole number, got {self.max_attempts!r}")
        if not 1 <= self.max_attempts <= 100:
            raise InvalidSetting(f"max attempts must be 1..100, got {self.max_attempts}")
        if self.base <= timedelta(0) or self.cap < self.base:
            raise InvalidSetting("retry base must be positive and not above the cap")
        if self.rate_limited_ceiling <= timedelta(0):
            raise InvalidSetting("the rate-limited ceiling must be positive")

    def delay_after(self, attempt: int) -> timedelta:
        """The wait after failed attempt ``attempt`` (1-based)."""
        if attempt < 1:
            raise InvalidSetting(f"attempt numbers start at 1, got {attempt}")
        exponent = min(attempt - 1, 32)
        delay: timedelta = self.base * (2**exponent)
        return min(delay, self.cap)

    def decide(self, attempts_made: int, retry_after: timedelta | None = None) -> RetryDecision:
        """What to do after ``attempts_made`` attempts, the last of which failed transiently.

        A ``retry_after`` longer than the backoff is honoured whole: the provider said when it
        will take the request again (the adapter bounds what it reads)."""
        if attempts_made >= self.max_attempts:
            return GiveUp()
        delay = self.delay_after(attempts_made)
        if retry_after is not None and retry_after > delay:
            delay = retry_after
        return RetryAt(delay)

    def decide_rate_limited(
        self, limited_for: timedelta, retry_after: timedelta | None = None
    ) -> RetryDecision:
        """What to do after a rate-limited answer, the message having been rate limited for
        ``limited_for`` (zero on the first one). No attempt is spent.

        The wait is the provider's ``retry_after`` when it gave one, else it grows with the time
        already limited (``min(max(limited_for, base), cap)``: 1, 1, 2, 4, 8 ... 30 s). GiveUp when
        the next attempt would fall past ``rate_limited_ceiling``: the message has waited as long
        as it may for the provider's capacity."""
        limited_for = max(limited_for, timedelta(0))
        if retry_after is not None and retry_after > timedelta(0):
            delay = retry_after
        else:
            delay = min(max(limited_for, self.base), self.cap)
        if limited_for + delay > self.rate_limited_ceiling:
            return GiveUp()
        return RetryAt(delay)

    def schedule(self) -> list[timedelta]:
        """Every wait between attempts, in order: ``max_attempts - 1`` of them."""
        return [self.delay_after(n) for n in range(1, self.max_attempts)]

    def attempts_remaining(self, attempts_made: int) -> int:
        return max(self.max_attempts - attempts_made, 0)
