"""Fixtures of the operating suites (tests/integration/test_ops_*.py).

- ``redis_test_db`` (session): the test process's Redis database (``claim_redis_db`` claims one
  per process and hands every caller the same one), emptied at the end of the session.
- ``redis_db`` (function): that database, emptied before and after each test of every key but the
  claim key. The database is never left empty while claimed, so a concurrent run looking for an
  empty database cannot take it between two tests.

The test modules import both by name.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.redis_db import CLAIM_KEY, RedisTestDb, claim_redis_db


def empty_but_claimed(db: RedisTestDb) -> None:
    """Delete every key of ``db`` except its claim."""
    keys = [key for key in db.client.scan_iter(count=1000) if key != CLAIM_KEY.encode()]
    for start in range(0, len(keys), 500):
        db.client.delete(*keys[start : start + 500])


@pytest.fixture(scope="session")
def redis_test_db() -> Iterator[RedisTestDb]:
    db = claim_redis_db()
    try:
        yield db
    finally:
        db.release()


@pytest.fixture
def redis_db(redis_test_db: RedisTestDb) -> Iterator[RedisTestDb]:
    empty_but_claimed(redis_test_db)
    yield redis_test_db
    empty_but_claimed(redis_test_db)
