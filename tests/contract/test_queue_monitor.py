"""QueueMonitor contract, on the in-memory queue and on RQ: a queue never used reads zeros; each
job queued is counted waiting, on its own queue only; reading changes nothing; an unreachable
broker raises QueueUnavailable. RQ's other states (started, scheduled, failed...) are read from
its registries: tests/integration/test_rq_queue_monitor.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import attrs
import pytest

from adapters.memory.queue import MemoryInboundQueue
from adapters.memory.queue_monitor import MemoryQueueMonitor
from adapters.rq.connection import redis_connection
from adapters.rq.monitor import RqQueueMonitor
from adapters.rq.queue import RqInboundQueue
from adapters.rq.spec import QUEUE_NAME, JobSpec
from domain.retry import RetryPolicy
from ports.queue import InboundQueue
from ports.queue_monitor import QueueDepths, QueueMonitor, QueueUnavailable
from tests.support.redis_db import RedisTestDb, redis_db, redis_test_db  # noqa: F401

ZEROS = QueueDepths(
    waiting=0, started=0, scheduled=0, failed=0, finished=0, deferred=0, intermediate=0
)


@attrs.frozen
class Broker:
    queue: InboundQueue
    """Fills queue ``QUEUE_NAME``."""
    monitor: QueueMonitor
    unreachable: Callable[[], QueueMonitor]
    """A monitor whose broker cannot be reached."""


@pytest.fixture(params=["memory", "redis"])
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    if request.param == "memory":
        queue = MemoryInboundQueue()
        monitor = MemoryQueueMonitor({QUEUE_NAME: queue})

        def switched_off() -> QueueMonitor:
            queue.available = False
            return monitor

        yield Broker(queue, monitor, switched_off)
        return
    db: RedisTestDb = request.getfixturevalue("redis_db")
    rq_queue = RqInboundQueue(redis_connection(db.url), JobSpec.webhook_processing(RetryPolicy()))
    yield Broker(
        rq_queue,
        RqQueueMonitor(redis_connection(db.url)),
        lambda: RqQueueMonitor.connect("redis://127.0.0.1:1/0"),
    )


def payload(n: int) -> dict[str, object]:
    return {"tenantId": "shop-a", "providerMessageId": f"SM{n}", "body": "Je prends le 3"}


class TestDepths:
    def test_a_queue_never_used_reads_zero_in_every_state(self, broker: Broker) -> None:
        assert ZEROS == broker.monitor.depths(QUEUE_NAME)

    def test_each_queued_job_is_counted_waiting_on_its_own_queue_only(self, broker: Broker) -> None:
        for n in range(3):
            broker.queue.enqueue(payload(n))

        assert attrs.evolve(ZEROS, waiting=3) == broker.monitor.depths(QUEUE_NAME)
        assert ZEROS == broker.monitor.depths("another-queue")

    def test_reading_changes_nothing(self, broker: Broker) -> None:
        broker.queue.enqueue(payload(1))

        readings = [broker.monitor.depths(QUEUE_NAME) for _ in range(3)]

        assert [attrs.evolve(ZEROS, waiting=1)] * 3 == readings


class TestUnavailable:
    def test_an_unreachable_broker_raises_queue_unavailable(self, broker: Broker) -> None:
        with pytest.raises(QueueUnavailable):
            broker.unreachable().depths(QUEUE_NAME)

    def test_queue_unavailable_is_a_connection_error(self) -> None:
        assert issubclass(QueueUnavailable, ConnectionError)
