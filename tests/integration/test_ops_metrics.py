# ruff: noqa: F811 - pytest fixtures imported from tests.support.webhook are parameters here
"""The Prometheus endpoint of ``livesell worker`` (``METRICS_PORT``), scraped over HTTP on
127.0.0.1 and parsed with prometheus_client's own parser, while the real parts work against
Postgres and Redis. Counters are process-wide, so tests assert how much they moved.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import textwrap
import threading
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
from dependency_injector import providers
from prometheus_client.parser import text_string_to_metric_families

from adapters.prometheus.observer import job_outcome
from adapters.rq.connection import redis_connection
from adapters.rq.queue import RqInboundQueue
from adapters.rq.spec import JobSpec
from domain.live_sessions import LiveSession
from domain.outbox import DeliveryFailure, OutboxMessage
from domain.retry import RetryPolicy
from entrypoints.closer import SessionCloser
from entrypoints.container import Container, build
from entrypoints.jobs import install_container
from entrypoints.metrics import MetricsServer, start_worker_metrics
from entrypoints.outbox_worker import OutboxSenderPart
from entrypoints.settings import ConfigError, Settings
from ports.messaging import DeliveryFailed, SendReceipt, SendRequest
from ports.unit_of_work import UnitOfWorkFactory
from tests.support.redis_db import RedisTestDb, redis_db, redis_test_db  # noqa: F401 - fixtures
from tests.support.webhook import (  # noqa: F401 - fixtures
    SELLER_PHONE,
    RqState,
    RunningWorker,
    container_on,
    inbound_queue,
    payload,
    seed_tenant,
    wait_until,
    webhook_container,
    webhook_settings,
)

pytestmark = pytest.mark.timeout(120)
CLIENT = "+33698765432"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    """Every sample of ``/metrics``, keyed by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RefuseThenAccept:
    """A provider: the first message is refused for good (21211), every other one accepted."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def send(self, request: SendRequest) -> SendReceipt:
        with self.lock:
            self.calls += 1
            first = self.calls == 1
        if first:
            raise DeliveryFailed(DeliveryFailure(transient=False, code="21211", message="bad To"))
        return SendReceipt(f"SM-{request.outbox_id}")

    def sender_key(self, request: SendRequest) -> str:
        return "+15005550006"


@attrs.define
class Served:
    server: MetricsServer
    container: Container
    uow_factory: UnitOfWorkFactory
    webhook: Any
    sender: OutboxSenderPart
    closer: SessionCloser

    def scrape(self) -> Samples:
        return scrape(self.server.port)


@pytest.fixture
def served(webhook_container: Container, pg_uow_factory: UnitOfWorkFactory) -> Iterator[Served]:
    """``start_worker_metrics`` as ``livesell worker`` calls it, with the three real parts built
    as it builds them."""
    from entrypoints.runner import build_parts

    settings = webhook_container.settings()
    assert settings is not None
    settings = attrs.evolve(settings, metrics_port=free_port(), outbox_poll_interval_seconds=0.2)
    webhook_container.settings.override(providers.Object(settings))
    webhook_container.messaging_provider.override(providers.Object(RefuseThenAccept()))
    seed_tenant(webhook_container, "shop-a")
    parts = build_parts(webhook_container, ["webhook", "outbox", "closer"])
    server = start_worker_metrics(
        settings, webhook_container, parts, addr="127.0.0.1", cache_seconds=0
    )
    assert server is not None
    try:
        yield Served(server, webhook_container, pg_uow_factory, *parts)  # type: ignore[arg-type]
    finally:
        server.close()


class TestTheEndpoint:
    def test_serves_every_query_based_gauge_and_both_sources_up(self, served: Served) -> None:
        samples = served.scrape()

        assert 1 == value(samples, "livesell_metrics_source_up", source="store")
        assert 1 == value(samples, "livesell_metrics_source_up", source="queue")
        assert ("livesell_outbox_lag_seconds", ()) in samples
        assert ("livesell_dead_letters_not_replayed", ()) in samples
        for status in ("pending", "sending", "sent", "failed", "dead"):
            assert ("livesell_outbox_messages", (("status", status),)) in samples
        for state in ("waiting", "started", "scheduled", "failed"):
            assert (
                "livesell_queue_depth",
                (("queue", "webhook-processing"), ("state", state)),
            ) in (samples)
        assert ("process_cpu_seconds_total", ()) in samples

    def test_levels_move_when_work_arrives(
        self, served: Served, inbound_queue: RqInboundQueue
    ) -> None:
        before = served.scrape()
        now = datetime.now(UTC)
        with served.uow_factory() as uow:
            uow.outbox.add(
                OutboxMessage.new(
                    id="m-late",
                    tenant_id="shop-a",
                    to_phone=CLIENT,
                    body="Merci",
                    correlation_id="c",
                    now=now - timedelta(seconds=40),
                )
            )
            uow.sessions.add(
                LiveSession.open(id="s-1", tenant_id="shop-a", now=now, correlation_id="c")
            )
            uow.commit()
        inbound_queue.enqueue(payload("shop-a", CLIENT))
        inbound_queue.enqueue(payload("shop-a", CLIENT))

        after = served.scrape()

        assert (0, 0, 0) == (
            value(before, "livesell_outbox_lag_seconds"),
            value(before, "livesell_outbox_messages", status="pending"),
            value(before, "livesell_queue_depth", queue="webhook-processing", state="waiting"),
        )
        assert 40 <= value(after, "livesell_outbox_lag_seconds") < 60
        assert 1 == value(after, "livesell_outbox_messages", status="pending")
        assert 2 == value(
            after, "livesell_queue_depth", queue="webhook-processing", state="waiting"
        )
        assert 1 == value(after, "livesell_active_sessions", tenant="shop-a")


class TestCountersOfTheParts:
    def test_webhook_jobs_are_counted_by_outcome_with_their_processing_time(
        self, served: Served, inbound_queue: RqInboundQueue, redis_db: RedisTestDb
    ) -> None:
        before = served.scrape()
        inbound_queue.enqueue(payload("shop-a", SELLER_PHONE))
        inbound_queue.enqueue(payload("shop-a", CLIENT))
        inbound_queue.enqueue(payload("ghost", CLIENT))

        with running(served.webhook):
            wait_until(lambda: served.webhook.metrics.completed == 3)

        after = served.scrape()
        moved = {
            outcome: value(
                after, "livesell_jobs_total", queue="webhook-processing", outcome=outcome
            )
            - value(before, "livesell_jobs_total", queue="webhook-processing", outcome=outcome)
            for outcome in ("processed", "rejected", "retried", "failed")
        }
        count = "livesell_job_processing_seconds_count"
        assert {"processed": 2, "rejected": 1, "retried": 0, "failed": 0} == moved
        assert 3 == value(after, count, queue="webhook-processing") - value(
            before, count, queue="webhook-processing"
        )
        assert 1 == value(after, "livesell_active_sessions", tenant="shop-a")

    def test_outbox_sends_are_counted_by_outcome_and_provider_code(self, served: Served) -> None:
        before = served.scrape()
        now = datetime.now(UTC)
        with served.uow_factory() as uow:
            for message_id in ("m-1", "m-2"):
                uow.outbox.add(
                    OutboxMessage.new(
                        id=message_id,
                        tenant_id="shop-a",
                        to_phone=CLIENT,
                        body="Merci",
                        correlation_id=message_id,
                        now=now,
                    )
                )
            uow.commit()

        run_until(
            served.sender, lambda: served.sender.counters.sent + served.sender.counters.dead == 2
        )

        after = served.scrape()

        def moved(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert 1 == moved("livesell_outbox_sends_total", outcome="accepted", code="")
        assert 1 == moved("livesell_outbox_sends_total", outcome="permanent_failure", code="21211")
        assert 2 == moved("livesell_outbox_send_seconds_count")
        assert (1, 1) == (
            moved("livesell_outbox_outcomes_total", outcome="sent"),
            moved("livesell_outbox_outcomes_total", outcome="dead"),
        )
        assert 1 == value(after, "livesell_outbox_messages", status="dead")
        assert 1 == value(after, "livesell_dead_letters_not_replayed")

    def test_sessions_closed_by_the_closing_job_are_counted(self, served: Served) -> None:
        before = served.scrape()
        stale = datetime.now(UTC) - timedelta(hours=2)
        with served.uow_factory() as uow:
            uow.sessions.add(
                LiveSession.open(id="s-old", tenant_id="shop-a", now=stale, correlation_id="c")
            )
            uow.commit()
        served.closer.start()

        served.closer.run_once()

        after = served.scrape()
        closed = "livesell_sessions_closed_total"
        assert 1 == value(after, closed, reason="inactivity") - value(
            before, closed, reason="inactivity"
        )
        assert 0 == value(after, "livesell_active_sessions", tenant="shop-a")


@contextlib.contextmanager
def running(part: Any) -> Iterator[None]:
    """A worker part started and run in a thread, as the runner runs it; stopped on exit."""
    stop = threading.Event()
    part.start()
    thread = threading.Thread(target=part.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(35)
        install_container(None)
    assert not thread.is_alive()


def run_until(sender: OutboxSenderPart, done: Callable[[], bool]) -> None:
    with running(sender):
        wait_until(done)


class TestUnavailableSources:
    def test_redis_down_marks_the_queue_source_down_and_still_serves_the_store(
        self, postgres_url: str, pg_uow_factory: UnitOfWorkFactory
    ) -> None:
        samples = scrape_once(
            webhook_settings(postgres_url, "redis://127.0.0.1:1/0"), pg_uow_factory
        )

        assert (1, 0) == (
            value(samples, "livesell_metrics_source_up", source="store"),
            value(samples, "livesell_metrics_source_up", source="queue"),
        )
        assert ("livesell_outbox_lag_seconds", ()) in samples
        assert not any(name == "livesell_queue_depth" for name, _ in samples)

    def test_the_database_down_marks_the_store_source_down_and_still_serves_the_queue(
        self, redis_db: RedisTestDb
    ) -> None:
        settings = webhook_settings("postgresql://livesell@127.0.0.1:1/livesell", redis_db.url)
        samples = scrape_once(settings, None)

        assert (0, 1) == (
            value(samples, "livesell_metrics_source_up", source="store"),
            value(samples, "livesell_metrics_source_up", source="queue"),
        )
        assert ("livesell_outbox_lag_seconds", ()) not in samples
        assert (
            "livesell_queue_depth",
            (("queue", "webhook-processing"), ("state", "waiting")),
        ) in (samples)


def scrape_once(settings: Settings, uow_factory: UnitOfWorkFactory | None) -> Samples:
    container = build(settings) if uow_factory is None else container_on(settings, uow_factory)
    settings = attrs.evolve(settings, metrics_port=free_port())
    server = start_worker_metrics(settings, container, [], addr="127.0.0.1", cache_seconds=0)
    assert server is not None
    try:
        return scrape(server.port)
    finally:
        server.close()


class TestStartUp:
    def test_no_metrics_port_serves_nothing(self, postgres_url: str, redis_db: RedisTestDb) -> None:
        settings = webhook_settings(postgres_url, redis_db.url)

        assert settings.metrics_port is None
        assert start_worker_metrics(settings, build(settings), []) is None

    def test_a_port_already_taken_is_a_start_up_error_naming_the_variable(
        self, postgres_url: str, pg_uow_factory: UnitOfWorkFactory
    ) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = int(taken.getsockname()[1])
            settings = attrs.evolve(
                webhook_settings(postgres_url, "redis://127.0.0.1:1/0"), metrics_port=port
            )

            with pytest.raises(ConfigError, match=f"METRICS_PORT: cannot listen on {port}"):
                start_worker_metrics(
                    settings, container_on(settings, pg_uow_factory), [], addr="127.0.0.1"
                )


class TestJobOutcomes:
    @pytest.mark.parametrize(
        ("succeeded", "result", "retry_scheduled", "expected"),
        [
            (True, {"messageType": "client"}, False, "processed"),
            (True, {"status": "rejected", "reason": "invalid_payload"}, False, "rejected"),
            (False, None, True, "retried"),
            (False, None, False, "failed"),
        ],
    )
    def test_each_run_is_one_of_four_outcomes(
        self, succeeded: bool, result: object, retry_scheduled: bool, expected: str
    ) -> None:
        from adapters.rq.worker import JobOutcome

        outcome = JobOutcome(
            job_id="j",
            payload={},
            succeeded=succeeded,
            result=result,
            error=None if succeeded else "boom",
            processing_seconds=0.01,
            attempts_made=1,
            attempts_remaining=4 if retry_scheduled else 0,
            retry_scheduled=retry_scheduled,
            enqueued_at=None,
            ended_at=datetime.now(UTC),
        )

        assert expected == job_outcome(outcome)


MULTIPROCESS_SCRIPT = textwrap.dedent(
    """
    import multiprocessing, os, sys
    from datetime import UTC, datetime

    from adapters.prometheus import metrics
    from adapters.rq.worker import JobOutcome
    from entrypoints.container import metrics_observers
    from entrypoints.metrics import serve


    def work(count):
        for _ in range(count):
            metrics_observers(9100)[0].job_finished(JobOutcome(
                job_id="j", payload={}, succeeded=True, result={}, error=None,
                processing_seconds=0.02, attempts_made=1, attempts_remaining=0,
                retry_scheduled=False, enqueued_at=None, ended_at=datetime.now(UTC)))


    if __name__ == "__main__":
        metrics.configure_multiprocess(sys.argv[1])
        server = serve(0, addr="127.0.0.1")
        work(1)
        children = [multiprocessing.get_context("spawn").Process(target=work, args=(n,))
                    for n in (2, 3)]
        for child in children:
            child.start()
        for child in children:
            child.join()
            metrics.mark_process_dead(child.pid)
        print(server.port, flush=True)
        sys.stdin.readline()
    """
)


class TestMultiProcessMode:
    def test_counts_of_every_process_are_summed_and_the_directory_starts_clean(
        self, tmp_path: Path
    ) -> None:
        directory = tmp_path / "prometheus"
        directory.mkdir()
        (directory / "counter_99999.db").write_bytes(b"left over by a previous run")
        script = tmp_path / "multi.py"
        script.write_text(MULTIPROCESS_SCRIPT)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        process = subprocess.Popen(
            [sys.executable, str(script), str(directory)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert process.stdout is not None
            port = int(process.stdout.readline())
            samples = scrape(port)
        finally:
            assert process.stdin is not None
            process.stdin.write("\n")
            process.stdin.close()
            process.wait(30)

        processed = value(
            samples, "livesell_jobs_total", queue="webhook-processing", outcome="processed"
        )
        count = value(samples, "livesell_job_processing_seconds_count", queue="webhook-processing")
        assert (6, 6) == (processed, count)
        assert not (directory / "counter_99999.db").exists()
        assert ("process_cpu_seconds_total", ()) not in samples


WORKER_PROCESSES_SCRIPT = textwrap.dedent(
    """
    import sys, threading

    from entrypoints import metrics
    from entrypoints.container import build
    from entrypoints.settings import Settings

    if __name__ == "__main__":  # the children are spawned: they import this file
        settings = Settings.from_env()
        container = build(settings)
        part = container.webhook_part(processes=2)
        server = metrics.start_worker_metrics(
            settings, container, [part], addr="127.0.0.1", cache_seconds=0
        )
        part.start()
        stop = threading.Event()
        runner = threading.Thread(target=part.run, args=(stop,))
        runner.start()
        print(server.port, metrics.multiprocess_dir(), flush=True)
        sys.stdin.readline()
        stop.set()
        runner.join(40)
        print("stopped", flush=True)
    """
)


class TestAWebhookWorkerWithChildProcesses:
    def test_counts_the_jobs_of_every_process_in_a_private_directory_removed_at_exit(
        self,
        postgres_url: str,
        pg_uow_factory: UnitOfWorkFactory,
        redis_db: RedisTestDb,
        tmp_path: Path,
    ) -> None:
        settings = webhook_settings(postgres_url, redis_db.url)
        container = container_on(settings, pg_uow_factory)
        seed_tenant(container, "shop-a")
        queue = RqInboundQueue(
            redis_connection(redis_db.url), JobSpec.webhook_processing(_policy())
        )
        script = tmp_path / "worker.py"
        script.write_text(WORKER_PROCESSES_SCRIPT)
        env = {
            **os.environ,
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            "DATABASE_URL": postgres_url,
            "REDIS_URL": redis_db.url,
            "METRICS_PORT": str(free_port()),
            "WEBHOOK_WORKER_CONCURRENCY": "4",
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        log = (tmp_path / "worker.log").open("w")
        process = subprocess.Popen(
            [sys.executable, str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )
        try:
            assert process.stdout is not None
            port_text, directory = process.stdout.readline().split()
            port = int(port_text)
            for n in range(40):
                queue.enqueue(payload("shop-a", f"+3361000{n:04d}"))
            wait_until(lambda: RqState(redis_db.url).idle() and processed(port) == 40, 60)
            pids = {p.stem.rsplit("_", 1)[1] for p in Path(directory).glob("counter_*.db")}
        finally:
            assert process.stdin is not None
            process.stdin.write("\n")
            process.stdin.close()
            assert process.stdout is not None
            stopped = process.stdout.readline().strip()
            process.wait(60)
            log.close()

        assert "stopped" == stopped
        assert 0 == process.returncode
        assert len(pids) >= 2, pids
        assert not Path(directory).exists()


def processed(port: int) -> float:
    return value(
        scrape(port), "livesell_jobs_total", queue="webhook-processing", outcome="processed"
    )


def _policy() -> RetryPolicy:
    return RetryPolicy()
