"""RateLimiter contract (ports.messaging), on the in-process token bucket (the in-memory store's
limiter), on Redis (the limiter every sender shares, ADR 0018) and on fakeredis (the embedded
demo's): a first send goes at once; past the burst, sends are paced at the rate; each sender
number has its own budget. Real time, a second or so per test."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import fakeredis
import pytest

from adapters.rq.connection import redis_connection
from adapters.rq.rate_limit import RedisRateLimiter, rate_limit_client
from adapters.system.rate_limit import TokenBucketRateLimiter
from ports.messaging import RateLimiter
from tests.support.redis_db import RedisTestDb, redis_db, redis_test_db  # noqa: F401

BURST = 2
MakeLimiter = Callable[[float], RateLimiter]
"""A limiter at this many sends a second, with a burst of ``BURST``."""


@pytest.fixture(params=["process", "redis", "fakeredis"])
def make_limiter(request: pytest.FixtureRequest) -> Iterator[MakeLimiter]:
    if request.param == "process":
        yield lambda rate: TokenBucketRateLimiter(rate, burst=BURST)
        return
    if request.param == "redis":
        db: RedisTestDb = request.getfixturevalue("redis_db")
        client = rate_limit_client(redis_connection(db.url))
    else:
        client = rate_limit_client(fakeredis.FakeRedis(server=fakeredis.FakeServer()))
    made: list[RedisRateLimiter] = []

    def make(rate: float) -> RateLimiter:
        made.append(RedisRateLimiter(client, rate, burst=BURST, fallback=TokenBucketRateLimiter))
        return made[-1]

    yield make
    assert [False] * len(made) == [m.on_fallback for m in made], "Redis was not used"


def timed(limiter: RateLimiter, key: str, sends: int) -> float:
    started = time.perf_counter()
    for _ in range(sends):
        limiter.acquire(key)
    return time.perf_counter() - started


class TestPacing:
    def test_the_first_sends_of_a_burst_go_at_once(self, make_limiter: MakeLimiter) -> None:
        assert timed(make_limiter(1), "+33180808080", BURST) < 0.5

    def test_sends_past_the_burst_are_paced_at_the_rate(self, make_limiter: MakeLimiter) -> None:
        elapsed = timed(make_limiter(40), "+33180808080", 21)

        # 19 sends after the burst at 40/s: 0.475 s at least, and not much more
        assert 0.47 <= elapsed < 1.2

    def test_each_sender_number_has_its_own_budget(self, make_limiter: MakeLimiter) -> None:
        limiter = make_limiter(2)
        timed(limiter, "+33180808080", BURST)  # that number's burst is spent

        assert timed(limiter, "+14155238886", BURST) < 0.4  # 0.5 s if the budget were shared
