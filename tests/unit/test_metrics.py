"""The Prometheus adapter on the in-memory adapters: the scrape-time gauges read the store's
levels and the ``QueueMonitor`` (``StoreCollector``), and the worker parts' events are counted by
``PrometheusObserver``. The HTTP endpoint on Postgres and Redis: tests/integration/
test_ops_metrics.py. Counters are process-wide, so tests assert how much they moved."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from adapters.memory.queue import MemoryInboundQueue
from adapters.memory.queue_monitor import MemoryQueueMonitor
from adapters.prometheus.collectors import StoreCollector, StoreLevels
from adapters.prometheus.metrics import process_registry
from adapters.prometheus.observer import PrometheusObserver
from adapters.rq.outcomes import JobOutcome
from application.outbox import Attempt, BatchReport
from application.stats import read_store_stats
from ports.messaging import SendReceipt
from ports.repositories import StoreUnavailable
from tests.unit.builders import CLIENT_PHONE, SELLER_PHONE, START, World, permanent, transient

QUEUE = "webhook-processing"
Sample = tuple[str, dict[str, str]]


@pytest.fixture
def queue() -> MemoryInboundQueue:
    return MemoryInboundQueue()


def scraped(collector: StoreCollector) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(collector)
    return registry


def collector_on(
    world: World | None,
    queue: MemoryInboundQueue | None = None,
    *,
    cache_seconds: float = 0,
    clock: Callable[[], float] = lambda: 0.0,
) -> StoreCollector:
    """The collector ``livesell worker`` serves, on ``world``'s store (None: the store is down)
    and ``queue`` (None: the worker reads no queue)."""

    def read_store() -> StoreLevels:
        if world is None:
            raise StoreUnavailable("database down")
        return read_store_stats(uow_factory=world.uow_factory, clock=world.clock)

    return StoreCollector(
        read_store=read_store,
        monitor=None if queue is None else MemoryQueueMonitor({QUEUE: queue}),
        queues=(QUEUE,),
        cache_seconds=cache_seconds,
        clock=clock,
    )


def depth(registry: CollectorRegistry, state: str) -> float | None:
    return registry.get_sample_value("livesell_queue_depth", {"queue": QUEUE, "state": state})


def up(registry: CollectorRegistry, source: str) -> float | None:
    return registry.get_sample_value("livesell_metrics_source_up", {"source": source})


class TestTheQueueGauges:
    def test_each_queue_serves_its_waiting_started_scheduled_and_failed_jobs(
        self, shop: World, queue: MemoryInboundQueue
    ) -> None:
        queue.enqueue({"n": 1})
        queue.enqueue({"n": 2})

        registry = scraped(collector_on(shop, queue))

        assert [2, 0, 0, 0, None] == [
            depth(registry, state)
            for state in ("waiting", "started", "scheduled", "failed", "finished")
        ]
        assert 1 == up(registry, "queue")

    def test_a_queue_that_cannot_be_read_is_down_and_its_gauges_are_left_out(
        self, shop: World, queue: MemoryInboundQueue
    ) -> None:
        queue.available = False

        registry = scraped(collector_on(shop, queue))

        assert (1, 0, None) == (
            up(registry, "store"),
            up(registry, "queue"),
            depth(registry, "waiting"),
        )

    def test_without_a_monitor_the_store_is_the_only_source(self, shop: World) -> None:
        registry = scraped(collector_on(shop))

        assert (1, None) == (up(registry, "store"), up(registry, "queue"))

    def test_scrapes_within_the_cache_time_read_the_sources_once(
        self, shop: World, queue: MemoryInboundQueue
    ) -> None:
        moment = [0.0]
        registry = scraped(collector_on(shop, queue, cache_seconds=5.0, clock=lambda: moment[0]))
        first = depth(registry, "waiting")
        queue.enqueue({"n": 1})
        moment[0] = 4.9
        cached = depth(registry, "waiting")
        moment[0] = 5.0
        fresh = depth(registry, "waiting")

        assert (0, 0, 1) == (first, cached, fresh)


class TestTheStoreGauges:
    def test_the_levels_are_the_figures_of_livesell_stats(self, shop: World) -> None:
        shop.queue(to=CLIENT_PHONE)
        shop.message_from(SELLER_PHONE)
        shop.advance(seconds=40)

        registry = scraped(collector_on(shop))

        assert (40, 1, 1, 0) == (
            registry.get_sample_value("livesell_outbox_lag_seconds"),
            registry.get_sample_value("livesell_outbox_messages", {"status": "pending"}),
            registry.get_sample_value("livesell_active_sessions", {"tenant": "shop-a"}),
            registry.get_sample_value("livesell_dead_letters_not_replayed"),
        )

    def test_a_store_that_cannot_be_read_is_down_and_the_queue_is_still_served(
        self, queue: MemoryInboundQueue
    ) -> None:
        registry = scraped(collector_on(None, queue))

        assert (0, 1) == (up(registry, "store"), up(registry, "queue"))
        assert None is registry.get_sample_value("livesell_outbox_lag_seconds")


def moved(action: Callable[[], None], *samples: Sample) -> list[float]:
    """How much each of ``samples`` of this process's metrics moved during ``action``."""

    def value(sample: Sample) -> float:
        return process_registry().get_sample_value(*sample) or 0.0

    before = [value(sample) for sample in samples]
    action()
    return [value(sample) - was for sample, was in zip(samples, before, strict=True)]


def job(*, succeeded: bool, result: object = None, retry: bool = False) -> JobOutcome:
    return JobOutcome(
        job_id="j",
        payload={},
        succeeded=succeeded,
        result=result,
        error=None if succeeded else "boom",
        processing_seconds=0.02,
        attempts_made=1,
        attempts_remaining=4 if retry else 0,
        retry_scheduled=retry,
        enqueued_at=None,
        ended_at=START,
    )


class TestTheObserver:
    observer = PrometheusObserver(job_queue=QUEUE)

    def test_job_runs_are_counted_by_outcome_with_their_processing_time(self) -> None:
        def runs() -> None:
            self.observer.job_finished(job(succeeded=True, result={"messageType": "client"}))
            self.observer.job_finished(job(succeeded=True, result={"status": "rejected"}))
            self.observer.job_finished(job(succeeded=False, retry=True))
            self.observer.job_finished(job(succeeded=False))

        jobs = "livesell_jobs_total"
        assert [1, 1, 1, 1, 4] == moved(
            runs,
            *(
                (jobs, {"queue": QUEUE, "outcome": o})
                for o in ("processed", "rejected", "retried", "failed")
            ),
            ("livesell_job_processing_seconds_count", {"queue": QUEUE}),
        )

    def test_provider_calls_are_counted_by_outcome_and_provider_code(self, shop: World) -> None:
        message = shop.outbox(shop.queue())

        def calls() -> None:
            self.observer.message_sent(Attempt(message, SendReceipt("SM0001")), 0.2)
            self.observer.message_sent(Attempt(message, permanent("21211")), 0.3)
            self.observer.message_sent(Attempt(message, transient("30001")), 0.4)

        sends = "livesell_outbox_sends_total"
        assert [1, 1, 1, 3] == moved(
            calls,
            (sends, {"outcome": "accepted", "code": ""}),
            (sends, {"outcome": "permanent_failure", "code": "21211"}),
            (sends, {"outcome": "transient_failure", "code": "30001"}),
            ("livesell_outbox_send_seconds_count", {}),
        )

    def test_recorded_outcomes_and_closed_sessions_are_counted(self, shop: World) -> None:
        shop.message_from(SELLER_PHONE)
        shop.advance(minutes=50)
        report = shop.close_inactive()

        def events() -> None:
            self.observer.outcomes_recorded(
                BatchReport(claimed=5, sent=2, retried=1, dead=0, lost=1, expired=1)
            )
            self.observer.sessions_closed(report)

        outcomes = "livesell_outbox_outcomes_total"
        assert [2, 1, 0, 1, 1, 1] == moved(
            events,
            *((outcomes, {"outcome": o}) for o in ("sent", "retried", "dead", "lost", "expired")),
            ("livesell_sessions_closed_total", {"reason": "inactivity"}),
        )

    def test_a_metric_that_cannot_be_recorded_is_logged_and_the_work_goes_on(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        impossible = BatchReport(claimed=1, sent=-1, retried=0, dead=0, lost=0)

        with caplog.at_level(logging.ERROR, logger="livesell.metrics"):
            self.observer.outcomes_recorded(impossible)

        assert ["Could not record a metric"] == [r.getMessage() for r in caplog.records]
