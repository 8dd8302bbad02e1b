# ruff: noqa: F811 - the Redis fixtures imported below are parameters here
"""Spool contract (ADR 0013), on the in-memory spool and on Redis: first in, first out; a claimed
entry is held by one drainer until acknowledged or released; the claims of a drainer that
stopped are given back, in order; an unreachable spool raises SpoolUnavailable.

Redis' list commands are the spec of the Redis side (LMOVE: https://redis.io/docs/latest/commands/
lmove/ "reliable queue" pattern; eviction: https://redis.io/docs/latest/develop/reference/
eviction/, ``noeviction`` is the only policy that never drops a key)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from adapters.memory.spool import MemorySpool, MemorySpoolStore
from adapters.rq.connection import redis_connection
from adapters.rq.spool import LEASE_SECONDS, RedisSpool, lease_key
from ports.spool import Spool, SpoolUnavailable
from tests.support.redis_db import RedisTestDb, redis_db, redis_test_db  # noqa: F401

MakeSpool = Callable[[str], Spool]
"""A drainer's view of one shared spool, by drainer name."""


@pytest.fixture(params=["memory", "redis"])
def make_spool(request: pytest.FixtureRequest) -> Iterator[MakeSpool]:
    if request.param == "memory":
        store = MemorySpoolStore()
        yield lambda name: MemorySpool(store, drainer=name)
        return
    db: RedisTestDb = request.getfixturevalue("redis_db")
    yield lambda name: RedisSpool(redis_connection(db.url), drainer=name)


def stop(spool: Spool) -> None:
    """The drainer is gone, as its lease expiring says."""
    if isinstance(spool, MemorySpool):
        spool.stop()
    else:
        assert isinstance(spool, RedisSpool)
        spool.connection.delete(lease_key(spool.drainer))


def drain(spool: Spool) -> list[object]:
    documents = []
    while (entry := spool.claim()) is not None:
        spool.ack(entry)
        documents.append(entry.document)
    return documents


class TestOrderAndClaims:
    def test_entries_come_out_oldest_first_and_whole(self, make_spool: MakeSpool) -> None:
        spool = make_spool("a")
        spool.append({"n": 1, "text": "Je prends le 3 ! é"})
        spool.append({"n": 2, "nested": {"pairs": [["MessageSid", "SM1"]]}})

        assert [
            {"n": 1, "text": "Je prends le 3 ! é"},
            {"n": 2, "nested": {"pairs": [["MessageSid", "SM1"]]}},
        ] == drain(spool)
        assert 0 == spool.depth()

    def test_a_claimed_entry_is_not_given_to_another_drainer(self, make_spool: MakeSpool) -> None:
        first, second = make_spool("a"), make_spool("b")
        first.append({"n": 1})

        entry = first.claim()

        assert entry is not None
        assert None is second.claim()
        assert 1 == first.depth()

    def test_a_released_entry_is_first_in_line_again(self, make_spool: MakeSpool) -> None:
        spool = make_spool("a")
        for n in range(3):
            spool.append({"n": n})
        entry = spool.claim()
        assert entry is not None

        spool.release(entry)

        assert [{"n": 0}, {"n": 1}, {"n": 2}] == drain(spool)


class TestRecovery:
    def test_the_claims_of_a_stopped_drainer_are_given_back_in_order(
        self, make_spool: MakeSpool
    ) -> None:
        dead, alive = make_spool("dead"), make_spool("alive")
        for n in range(4):
            dead.append({"n": n})
        assert dead.claim() is not None
        assert dead.claim() is not None
        stop(dead)

        assert 2 == alive.recover()
        assert [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 3}] == drain(alive)

    def test_the_claims_of_a_drainer_still_alive_are_left_alone(
        self, make_spool: MakeSpool
    ) -> None:
        busy, other = make_spool("busy"), make_spool("other")
        busy.append({"n": 1})
        held = busy.claim()
        assert held is not None

        assert 0 == other.recover()
        assert None is other.claim()
        busy.ack(held)
        assert 0 == other.depth()

    def test_a_restarted_drainer_takes_back_its_own_claims(self, make_spool: MakeSpool) -> None:
        before = make_spool("worker-1")
        before.append({"n": 1})
        assert before.claim() is not None

        after = make_spool("worker-1")

        assert 1 == after.recover()
        assert [{"n": 1}] == drain(after)


class TestRedisSpool:
    def test_no_spool_key_expires_and_the_lease_does(self, redis_db: RedisTestDb) -> None:
        spool = RedisSpool(redis_connection(redis_db.url), drainer="a")
        spool.append({"n": 1})
        spool.append({"n": 2})
        assert spool.claim() is not None

        ttls = {
            key.decode(): redis_db.client.ttl(key)
            for key in redis_db.client.keys("livesell:spool:*")
        }

        assert {
            "livesell:spool:pending": -1,
            "livesell:spool:claimed:a": -1,
            "livesell:spool:drainers": -1,
        } == {k: v for k, v in ttls.items() if "lease" not in k}
        assert 0 < ttls["livesell:spool:lease:a"] <= LEASE_SECONDS

    def test_the_eviction_policy_is_read_and_a_policy_that_evicts_is_named(
        self, redis_db: RedisTestDb
    ) -> None:
        spool = RedisSpool(redis_connection(redis_db.url))
        policy = redis_db.client.config_get("maxmemory-policy")["maxmemory-policy"]

        problem = spool.durability_problem()

        if policy == "noeviction":
            assert problem is None
        else:
            assert problem is not None
            assert policy in problem

    def test_an_unreachable_redis_raises_spool_unavailable(self) -> None:
        spool = RedisSpool(redis_connection("redis://127.0.0.1:1/0"))

        with pytest.raises(SpoolUnavailable):
            spool.append({"n": 1})
        with pytest.raises(SpoolUnavailable):
            spool.claim()
