# ruff: noqa: F811 - the Redis fixtures imported below are parameters here
"""The per-sender-number limit shared through Redis (ADR 0018) on real servers: the shared one (a
database of its own) for limiters and processes that share a number, and a private redis-server
on a spare port that the test kills (by pid) and starts again, or hangs behind a proxy.

WhatsApp's throughput on Twilio is per sender: "80 MPS (messages per second) by default per
WhatsApp sender for outbound traffic" (https://www.twilio.com/docs/whatsapp/best-practices-and-
faqs); 63018 "Rate limit exceeded for Channel" is the answer past it
(https://www.twilio.com/docs/api/errors/63018). Redis runs a script atomically and ``TIME`` is the
server's clock (https://redis.io/docs/latest/develop/programmability/eval-intro/,
https://redis.io/docs/latest/commands/time/).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.rq.connection import redis_connection
from adapters.rq.rate_limit import (
    BURST_SECONDS,
    RedisRateLimiter,
    rate_limit_client,
    sender_key,
)
from adapters.system.rate_limit import TokenBucketRateLimiter
from tests.support.redis_db import RedisTestDb, redis_db, redis_test_db  # noqa: F401
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
SENDER = "+33180808080"
OTHER_SENDER = "+33180808081"
RATE = 100.0
BURST = math.ceil(RATE * BURST_SECONDS)  # the default: 25 at 100/s (ADR 0030)


def limiter_on(url: str, rate: float = RATE, instances: int = 1) -> RedisRateLimiter:
    return RedisRateLimiter(
        rate_limit_client(redis_connection(url)),
        rate,
        instances=instances,
        fallback=TokenBucketRateLimiter,
    )


def saturate(
    limiter: RedisRateLimiter, key: str, start: float, end: float, threads: int = 4
) -> list[float]:
    """Acquire for ``key`` from ``threads`` threads between two ``time.monotonic`` instants; the
    instants each acquisition returned."""
    granted: list[float] = []
    lock = threading.Lock()

    def send() -> None:
        while time.monotonic() < start:
            time.sleep(0.001)
        while True:
            limiter.acquire(key)
            now = time.monotonic()
            if now >= end:
                return
            with lock:
                granted.append(now)

    workers = [threading.Thread(target=send, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(end - time.monotonic() + 10)
        assert not worker.is_alive(), "a sender thread is stuck"
    return granted


class TestOneNumberSharedBySenders:
    def test_two_limiters_on_one_number_together_stay_within_the_rate(
        self, redis_db: RedisTestDb
    ) -> None:
        first, second = limiter_on(redis_db.url), limiter_on(redis_db.url)
        start = time.monotonic() + 0.2
        end = start + 2.0
        results: list[list[float]] = [[], []]
        runners = [
            threading.Thread(target=lambda i=i, lim=lim: results[i].extend(
                saturate(lim, SENDER, start, end)))
            for i, lim in enumerate((first, second))
        ]  # fmt: skip
        for runner in runners:
            runner.start()
        for runner in runners:
            runner.join(30)

        total = sum(len(r) for r in results)
        # at most the burst plus 2 s at 100/s; each alone would have sent as many
        assert 0.9 * RATE * 2 <= total <= BURST + RATE * 2 + 1, total
        assert all(len(r) > 0.25 * RATE * 2 for r in results), [len(r) for r in results]
        assert (False, False) == (first.on_fallback, second.on_fallback)

    def test_two_processes_on_one_number_together_stay_within_the_rate(
        self, redis_db: RedisTestDb
    ) -> None:
        children = [
            subprocess.Popen(
                [sys.executable, "-c", CHILD, redis_db.url, SENDER, str(RATE)],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        try:
            for child in children:
                assert child.stdout is not None
                assert "ready" == child.stdout.readline().strip()
            start = time.time() + 0.3  # wall clock: the one clock both processes share
            for child in children:
                assert child.stdin is not None
                child.stdin.write(f"{start} {start + 2.0}\n")
                child.stdin.flush()
            reports = [json.loads(child.communicate(timeout=30)[0]) for child in children]
        finally:
            for child in children:
                if child.poll() is None:
                    os.kill(child.pid, signal.SIGKILL)
                    child.wait(10)

        counts = [len(report["granted"]) for report in reports]
        assert 0.9 * RATE * 2 <= sum(counts) <= BURST + RATE * 2 + 1, counts
        assert all(count > 0.25 * RATE * 2 for count in counts), counts
        assert [False, False] == [report["fallback"] for report in reports]

    def test_a_busy_number_does_not_slow_another(self, redis_db: RedisTestDb) -> None:
        busy, other = limiter_on(redis_db.url), limiter_on(redis_db.url)
        start = time.monotonic() + 0.2
        end = start + 1.5
        counts: dict[str, int] = {}
        runners = [
            threading.Thread(target=lambda k=k, lim=lim: counts.__setitem__(
                k, len(saturate(lim, k, start, end))))
            for k, lim in ((SENDER, busy), (OTHER_SENDER, other))
        ]  # fmt: skip
        for runner in runners:
            runner.start()
        for runner in runners:
            runner.join(30)

        for key in (SENDER, OTHER_SENDER):
            assert 0.9 * RATE * 1.5 <= counts[key] <= BURST + RATE * 1.5 + 1, counts


CHILD = r"""
import json, sys, threading, time
from adapters.rq.connection import redis_connection
from adapters.rq.rate_limit import RedisRateLimiter, rate_limit_client
from adapters.system.rate_limit import TokenBucketRateLimiter

url, key, rate = sys.argv[1], sys.argv[2], float(sys.argv[3])
limiter = RedisRateLimiter(rate_limit_client(redis_connection(url)), rate,
                           fallback=TokenBucketRateLimiter)
print("ready", flush=True)
start, end = map(float, sys.stdin.readline().split())
granted, lock = [], threading.Lock()

def send():
    while time.time() < start:
        time.sleep(0.001)
    while True:
        limiter.acquire(key)
        now = time.time()
        if now >= end:
            return
        with lock:
            granted.append(now)

threads = [threading.Thread(target=send) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps({"granted": granted, "fallback": limiter.on_fallback}))
"""


# -- a private server: stopped, hung ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A redis-server of the test's own on a spare port of 127.0.0.1, started and killed by pid."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is needed for the outage tests"
        self.binary, self.workdir, self.port = binary, workdir, free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("the private redis-server did not start")
                time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def paced(limiter: RedisRateLimiter, sends: int) -> tuple[float, float]:
    """(seconds the sends took, the longest one acquisition took)."""
    longest = 0.0
    started = time.perf_counter()
    for _ in range(sends):
        before = time.perf_counter()
        limiter.acquire(SENDER)
        longest = max(longest, time.perf_counter() - before)
    return time.perf_counter() - started, longest


def wait_back_on_redis(limiter: RedisRateLimiter, seconds: float) -> float:
    started = time.monotonic()
    while limiter.on_fallback:
        assert time.monotonic() - started < seconds, "not back on Redis in time"
        limiter.acquire(SENDER)
    return time.monotonic() - started


def messages(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[Any]:
    return [r for r in caplog.records if r.levelno == level and text in r.getMessage()]


class TestWhenRedisStops:
    def test_a_stopped_redis_leaves_each_instance_its_share_until_it_is_back(
        self, private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, logger="livesell.outbox.rate_limit")
        limiter = limiter_on(private_redis.url, rate=40, instances=2)
        on_redis, _ = paced(limiter, 21)
        assert not limiter.on_fallback

        private_redis.kill()
        on_fallback, longest = paced(limiter, 21)

        assert limiter.on_fallback
        # 20/s in this process (40/s shared by 2), after its burst of 2: 19 sends, 0.95 s
        assert 0.9 <= on_fallback < 1.6, on_fallback
        assert longest < 0.2, longest  # no send waited on Redis
        [warning] = messages(caplog, logging.WARNING, "falls back to this process")
        assert (2, 20.0) == (
            warning.context["senderInstances"],
            warning.context["fallbackRatePerSecond"],
        )

        private_redis.start()
        assert wait_back_on_redis(limiter, 3.0) < 2.5
        back, _ = paced(limiter, 21)

        assert 1 == len(messages(caplog, logging.INFO, "through Redis again"))
        assert on_redis < 0.8, on_redis  # 40/s on Redis: 11 sends after its burst of 10, 0.275 s
        assert back < 0.8, back  # and 40/s again, not 20/s
        assert 1 == len(messages(caplog, logging.WARNING, "falls back to this process"))

    def test_a_hung_redis_holds_one_send_for_the_socket_timeout_and_no_other(
        self, private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.INFO, logger="livesell.outbox.rate_limit")
        with TcpProxy("127.0.0.1", private_redis.port) as proxy:
            limiter = limiter_on(f"redis://127.0.0.1:{proxy.port}/0", rate=40, instances=2)
            paced(limiter, 3)

            proxy.pause()
            first, _ = paced(limiter, 1)
            rest, longest = paced(limiter, 30)  # 1.5 s: probes start, time out, start again

            assert limiter.on_fallback
            assert 0.2 <= first < 0.6, first  # the 0.25 s socket timeout, once
            assert 1.3 <= rest < 2.2, rest  # then 20/s: 29 sends past the fallback's burst
            assert longest < 0.2, longest
            [warning] = messages(caplog, logging.WARNING, "falls back to this process")
            assert warning.context["error"].startswith("TimeoutError")

            proxy.resume()
            assert wait_back_on_redis(limiter, 3.0) < 2.5
            assert 1 == client_sees_the_key(private_redis.url, limiter)


def client_sees_the_key(url: str, limiter: RedisRateLimiter) -> int:
    """After one more send on Redis, its key is there (it lives one slot, 25 ms at 40/s)."""
    limiter.acquire(SENDER)
    return int(redis_connection(url).exists(sender_key(SENDER)))
