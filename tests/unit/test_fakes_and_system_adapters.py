"""The fakes the unit tier stands on, and the in-process system adapters: the unit of work rolls
back unless committed, clocks and ids are deterministic, the queue is FIFO, the simulated provider
is reproducible, the rate limiter paces per sender number, executors run every task, a waiter
wakes early."""

from __future__ import annotations

import contextvars
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.memory.clock import FixedClock, SequentialIds, SteppingClock
from adapters.memory.queue import MemoryInboundQueue
from adapters.simulated.provider import SimulatedMessagingProvider
from adapters.system.executor import InlineExecutor, ThreadPool
from adapters.system.rate_limit import TokenBucketRateLimiter
from adapters.system.waiting import ThreadWaiter
from application.outbox import write_outbound_message
from domain.outbox import OutboxStatus
from domain.tenants import Tenant
from ports.messaging import DeliveryFailed, SendRequest
from ports.queue import QueueUnavailable
from tests.unit.builders import START, World, client


def request(outbox_id: str = "out-1", from_phone: str | None = None) -> SendRequest:
    return SendRequest(
        outbox_id=outbox_id,
        tenant_id="shop-a",
        to_phone="+33698765432",
        body="Paid!",
        correlation_id="corr-1",
        from_phone=from_phone,
    )


class TestTheMemoryUnitOfWork:
    def test_leaving_without_commit_rolls_every_write_back(self, world: World) -> None:
        world.tenant("shop-a")

        with world.uow_factory() as uow:
            write_outbound_message(
                uow,
                tenant_id="shop-a",
                to="+33698765432",
                body="hi",
                correlation_id="c",
                clock=world.clock,
                ids=world.ids,
            )

        assert {} == world.store.outbox

    def test_an_error_after_a_commit_rolls_back_only_what_followed_it(self, world: World) -> None:
        def add_two_then_fail() -> None:
            with world.uow_factory() as uow:
                uow.tenants.add(Tenant.register(id="shop-a", name="A", now=START))
                uow.commit()
                uow.tenants.add(Tenant.register(id="shop-b", name="B", now=START))
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            add_two_then_fail()

        assert ["shop-a"] == list(world.store.tenants)


class TestClocksAndIds:
    def test_a_fixed_clock_moves_only_when_told(self) -> None:
        clock = FixedClock(START)

        assert [START, START, START + timedelta(seconds=3)] == [
            clock.now(),
            clock.now(),
            clock.advance(timedelta(seconds=3)),
        ]

    def test_a_clock_refuses_a_naive_start(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            FixedClock(datetime(2026, 1, 1))

    def test_a_stepping_clock_moves_on_every_read(self) -> None:
        clock = SteppingClock(START, step=timedelta(seconds=2))

        assert [START, START + timedelta(seconds=2)] == [clock.now(), clock.now()]

    def test_sequential_ids_are_readable_and_ordered(self) -> None:
        ids = SequentialIds("out")

        assert ["out-000001", "out-000002"] == [ids.new_id(), ids.new_id()]

    def test_the_start_is_utc(self) -> None:
        assert UTC == FixedClock().now().tzinfo


class TestTheMemoryInboundQueue:
    def test_jobs_come_out_in_the_order_they_went_in(self) -> None:
        queue = MemoryInboundQueue()
        first = queue.enqueue({"providerMessageId": "SM1"})
        second = queue.enqueue({"providerMessageId": "SM2"})

        assert [
            (first, {"providerMessageId": "SM1"}),
            (second, {"providerMessageId": "SM2"}),
            None,
        ] == [queue.pop(), queue.pop(), queue.pop()]

    def test_a_switched_off_queue_refuses_jobs(self) -> None:
        queue = MemoryInboundQueue()
        queue.available = False

        with pytest.raises(QueueUnavailable):
            queue.enqueue({})
        assert 0 == len(queue)


class TestTheSimulatedProvider:
    def test_the_same_seed_gives_the_same_fates(self) -> None:
        def fates(seed: int) -> list[str]:
            provider = SimulatedMessagingProvider(
                transient_failure_rate=0.3, permanent_failure_rate=0.2, seed=seed
            )
            out = []
            for n in range(40):
                try:
                    out.append(provider.send(request(f"out-{n}")).provider_message_id)
                except DeliveryFailed as exc:
                    out.append(f"{exc.failure.transient}:{exc.failure.code}")
            return out

        assert fates(11) == fates(11)
        assert fates(11) != fates(12)

    def test_a_rate_of_one_fails_every_send(self) -> None:
        provider = SimulatedMessagingProvider(permanent_failure_rate=1.0)

        with pytest.raises(DeliveryFailed) as caught:
            provider.send(request())

        assert (False, []) == (caught.value.failure.transient, provider.sent)

    def test_each_accepted_send_is_appended_to_the_sent_log(self, tmp_path: Path) -> None:
        log = tmp_path / "sent.jsonl"
        clock = FixedClock(datetime(2026, 3, 2, 18, 0, 5, tzinfo=UTC))
        provider = SimulatedMessagingProvider(
            sent_log=str(log),
            latency_ms=200,
            sleep=lambda seconds: clock.advance(timedelta(seconds=seconds)),
            wall_clock=clock.now,
        )

        provider.send(request("out-1"))
        provider.close()

        (line,) = [json.loads(line) for line in log.read_text().splitlines()]
        called, answered = (datetime.fromisoformat(line.pop(k)) for k in ("calledAt", "at"))
        assert {"outboxId": "out-1", "to": "+33698765432", "correlationId": "corr-1"} == line
        # calledAt is when the provider was asked (what a rate limit paces); at, after its latency
        assert datetime(2026, 3, 2, 18, 0, 5, tzinfo=UTC) == called
        assert timedelta(seconds=0.1) <= answered - called <= timedelta(seconds=0.3)

    @pytest.mark.parametrize(
        "rates", [(-0.1, 0.0), (0.0, 1.1), (0.6, 0.5)], ids=["negative", "above-one", "sum"]
    )
    def test_impossible_rates_are_refused(self, rates: tuple[float, float]) -> None:
        with pytest.raises(ValueError, match="rate"):
            SimulatedMessagingProvider(
                transient_failure_rate=rates[0], permanent_failure_rate=rates[1]
            )

    def test_the_sender_key_is_the_tenants_number_or_the_default(self) -> None:
        provider = SimulatedMessagingProvider(default_sender="+15005550006")

        assert ["+33180808080", "+15005550006"] == [
            provider.sender_key(request(from_phone="+33180808080")),
            provider.sender_key(request()),
        ]


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class TestTheRateLimiter:
    def test_sends_beyond_the_burst_wait_for_the_rate(self) -> None:
        time = FakeTime()
        limiter = TokenBucketRateLimiter(2, burst=1, monotonic=time.monotonic, sleep=time.sleep)

        for _ in range(3):
            limiter.acquire("+33180808080")

        assert pytest.approx(1.0) == time.now

    def test_each_sender_number_has_its_own_budget(self) -> None:
        time = FakeTime()
        limiter = TokenBucketRateLimiter(1, burst=1, monotonic=time.monotonic, sleep=time.sleep)

        limiter.acquire("+33180808080")
        limiter.acquire("+14155238886")

        assert [] == time.slept

    def test_a_non_positive_rate_is_refused(self) -> None:
        with pytest.raises(ValueError, match="rate"):
            TokenBucketRateLimiter(0)


class TestSendingConcurrently:
    def test_an_executor_and_a_rate_limiter_send_every_message_once(self, world: World) -> None:
        world.tenant("shop-a", whatsapp_number="+33180808080")
        ids = [world.queue(to=client(n), body=f"m{n}") for n in range(20)]
        provider = SimulatedMessagingProvider()
        time = FakeTime()
        limiter = TokenBucketRateLimiter(1000, monotonic=time.monotonic, sleep=time.sleep)

        batch = world.send_due(
            provider,
            batch_size=20,
            executor=ThreadPool(max_workers=4),
            waiter=ThreadWaiter(),
            rate_limiter=limiter,
        )

        assert (20, 20) == (batch.claimed, batch.sent)
        assert [OutboxStatus.SENT] * 20 == [world.outbox(i).status for i in ids]
        assert sorted(ids) == sorted(r.outbox_id for r in provider.sent)


WORKER: contextvars.ContextVar[str] = contextvars.ContextVar("worker", default="none")


class TestTheExecutors:
    def test_the_inline_executor_runs_each_task_at_once_in_order(self) -> None:
        done: list[int] = []
        executor = InlineExecutor()

        for n in range(3):
            executor.submit(lambda n=n: done.append(n))

        assert [0, 1, 2] == done

    def test_the_thread_pool_runs_every_task_on_its_threads_before_shutdown_returns(
        self,
    ) -> None:
        names: list[str] = []
        lock = threading.Lock()
        pool = ThreadPool(2, thread_name_prefix="outbox-send")

        def task() -> None:
            time.sleep(0.01)
            with lock:
                names.append(threading.current_thread().name)

        for _ in range(6):
            pool.submit(task)
        pool.shutdown()

        assert 6 == len(names)
        assert all(name.startswith("outbox-send") for name in names), names

    def test_the_pool_threads_inherit_the_context_of_the_first_submitter(self) -> None:
        seen: list[str] = []
        pool = ThreadPool(1, inherit=[WORKER])
        token = WORKER.set("outbox-sender")
        try:
            pool.submit(lambda: seen.append(WORKER.get()))
        finally:
            WORKER.reset(token)
        pool.submit(lambda: seen.append(WORKER.get()))
        pool.shutdown()

        assert ["outbox-sender", "outbox-sender"] == seen


class TestTheThreadWaiter:
    def test_a_wake_from_another_thread_ends_the_wait(self) -> None:
        waiter = ThreadWaiter()
        threading.Timer(0.05, waiter.wake).start()
        started = waiter.monotonic()

        waiter.wait(5.0)

        assert waiter.monotonic() - started < 2.0

    def test_after_clear_the_wait_waits_again(self) -> None:
        waiter = ThreadWaiter()
        waiter.wake()
        waiter.clear()
        started = waiter.monotonic()

        waiter.wait(0.05)

        assert waiter.monotonic() - started >= 0.04
