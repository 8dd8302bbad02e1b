"""A Redis logical database of its own for a test run, on the shared server on 127.0.0.1.

RQ's key names are fixed (``rq:queue:webhook-processing`` ...), so runs are isolated by database
number: ``claim_redis_db`` takes the first of databases 15, 14, ... 8, 6, 4 ... 1 that is empty,
marks it with a claim key (so a concurrent run skips it) and ``release`` empties that database
only. Database 0, which others use, is never touched; nothing calls FLUSHALL.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

REDIS_SERVER = os.environ.get("LIVESELL_TEST_REDIS", "redis://127.0.0.1:6379")
# 5 and 7 are the benchmarks' defaults; 0 belongs to whoever else uses the server.
CANDIDATE_DBS = (*range(15, 7, -1), 6, 4, 3, 2, 1)
CLAIM_KEY = "livesell:test-claim"
CLAIM_SECONDS = 3600
START_REDIS = "redis-server --daemonize yes"
_DELETE_ALL_BUT = """
for _, key in ipairs(redis.call('KEYS', '*')) do
    if key ~= ARGV[1] then redis.call('DEL', key) end
end
"""


class RedisTestDb:
    """A claimed database: ``url`` for clients and subprocesses, ``client`` for assertions."""

    def __init__(self, db: int) -> None:
        self.db = db
        self.url = f"{REDIS_SERVER.rstrip('/')}/{db}"
        self.client = Redis.from_url(self.url)

    def flush(self) -> None:
        """Delete every key a test made, in one atomic step that keeps the claim (a database
        emptied even for an instant could be claimed by a concurrent run)."""
        self.client.eval(_DELETE_ALL_BUT, 0, CLAIM_KEY)

    def release(self) -> None:
        self.client.flushdb()
        self.client.close()


_claimed: RedisTestDb | None = None


def claim_redis_db() -> RedisTestDb:
    """Claim an empty database; fails (never skips) when Redis is down or none is free.

    One claim per test process: every module that imports the session fixture gets its own copy
    of it, and a database per module would run out of the candidates in one run; the tests
    of a process run one at a time and empty the database around each test anyway."""
    global _claimed
    if _claimed is not None:
        return _claimed
    _claimed = _claim()
    return _claimed


def _claim() -> RedisTestDb:
    owner = f"{socket.gethostname()}:{os.getpid()}"
    for db in CANDIDATE_DBS:
        client = Redis.from_url(f"{REDIS_SERVER.rstrip('/')}/{db}", socket_connect_timeout=3)
        try:
            if client.dbsize() == 0 and client.set(CLAIM_KEY, owner, nx=True, ex=CLAIM_SECONDS):
                return RedisTestDb(db)
        except RedisConnectionError as exc:
            pytest.fail(
                f"Redis is unreachable at {REDIS_SERVER} ({exc}). Start it with: {START_REDIS}",
                pytrace=False,
            )
        finally:
            client.close()
    pytest.fail(f"no empty Redis database among {CANDIDATE_DBS} for this test run", pytrace=False)


@pytest.fixture(scope="session")
def redis_test_db() -> Iterator[RedisTestDb]:
    """The test process's Redis database (one claim per process), emptied at the end."""
    db = claim_redis_db()
    try:
        yield db
    finally:
        db.release()


@pytest.fixture
def redis_db(redis_test_db: RedisTestDb) -> Iterator[RedisTestDb]:
    """The run's Redis database, emptied before and after the test (its claim kept, so a
    concurrent run never sees it empty and takes it)."""
    redis_test_db.flush()
    yield redis_test_db
    redis_test_db.flush()
