"""The engine's loop survives what goes wrong while it takes jobs (issue 12 §2, ADR 0014), on
fakeredis: only ``stop`` ends it; an unexpected error and Redis being unreachable are logged and
retried with a backoff, and the jobs waiting meanwhile are then run."""

from __future__ import annotations

import logging
import threading
from typing import Any

import fakeredis
import pytest
import redis
from rq import Queue

from adapters.rq.spec import JobSpec
from adapters.rq.worker import ThreadedRqWorker
from tests.support.webhook import wait_until

QUEUE = "loop-test"


def answer(value: int) -> int:
    return value * 2


def no_op_failure(*_args: object) -> None:
    return None


class FlakyRedis(fakeredis.FakeRedis):
    """The blocking dequeue fails with each of ``failures`` in turn, then works."""

    failures: list[BaseException] = []

    def blmove(self, *args: Any, **kwargs: Any) -> Any:
        if FlakyRedis.failures:
            raise FlakyRedis.failures.pop(0)
        return super().blmove(*args, **kwargs)


class TestTheLoop:
    def test_an_unexpected_error_and_an_unreachable_redis_are_retried_and_the_loop_goes_on(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        connection = FlakyRedis()
        spec = JobSpec(
            queue=QUEUE,
            function=f"{__name__}.answer",
            failure_callback=f"{__name__}.no_op_failure",
            retry_intervals=(),
        )
        engine = ThreadedRqWorker(connection, spec, concurrency=1)
        engine.start()
        FlakyRedis.failures = [
            RuntimeError("a bug while taking jobs"),
            redis.exceptions.ConnectionError("Connection refused"),
        ]
        stop = threading.Event()
        runner = threading.Thread(target=engine.run, args=(stop,), daemon=True)
        with caplog.at_level(logging.ERROR, logger="livesell.rq.worker"):
            runner.start()
            try:
                wait_until(lambda: not FlakyRedis.failures, timeout=10)
                job = Queue(QUEUE, connection=connection).enqueue_call(spec.function, args=(21,))
                wait_until(lambda: job.get_status(refresh=True) == "finished", timeout=15)
                assert runner.is_alive()
            finally:
                stop.set()
                runner.join(timeout=10)

        assert 42 == job.return_value()
        contexts = [getattr(r, "context", {}) for r in caplog.records]
        assert any(c.get("stage") == "taking jobs" for c in contexts)
        assert any("Redis unavailable" in str(c.get("error")) for c in contexts)
