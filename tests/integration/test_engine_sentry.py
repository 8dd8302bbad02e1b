# ruff: noqa: F811 - pytest fixtures imported from tests.support.webhook are parameters here
"""Sentry from the threaded engine and from the outbox sender, and RQ's job features the engine
honours or refuses loudly (issue 12 §6, ADR 0014).

Events are caught by a capturing transport: ``sentry_sdk.init(transport=...)`` takes a
``Transport`` subclass whose ``capture_envelope`` receives every envelope
(https://docs.sentry.io/platforms/python/configuration/options/#transport). Stock RQ with
sentry-sdk's ``RqIntegration`` reports a job's exception once, when no retry is left
(``sentry_sdk/integrations/rq.py``, ``sentry_patched_handle_exception``); the engine does the same,
with the job's queue, id, correlationId and tenant as tags. RQ's ``on_success`` / ``on_failure``
callbacks and job webhooks (https://python-rq.org/docs/jobs/#callbacks,
https://python-rq.org/docs/jobs/#webhooks) are honoured; a job returning ``rq.Retry``
(https://python-rq.org/docs/exceptions/#retrying-failed-jobs) is failed with ``RetryReturned``.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
import sqlalchemy as sa
from dependency_injector import providers
from redis import Redis
from rq import Queue
from rq.job import Callback, Job, Retry
from rq.webhook import Webhook
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from adapters.rq.connection import redis_connection
from adapters.rq.spec import FAILURE_CALLBACK, JOB_FUNCTION, QUEUE_NAME, JobSpec
from adapters.rq.worker import ThreadedRqWorker
from entrypoints.container import Container, build
from entrypoints.observability import init_sentry
from entrypoints.settings import Settings
from ports.messaging import SendReceipt, SendRequest
from tests.integration.test_outbox_sender import add_tenant, queue
from tests.support.redis_db import RedisTestDb
from tests.support.webhook import (  # noqa: F401 - fixtures
    RqState,
    RunningWorker,
    client_phone,
    payload,
    redis_db,
    redis_test_db,
    rq_state,
    seed_tenant,
    wait_until,
    webhook_container,
)

TENANT = "boutique-sentry"
TEST_QUEUE = "livesell-test-features"


class CapturingTransport(Transport):
    envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        CapturingTransport.envelopes.append(envelope)


def events() -> list[dict[str, Any]]:
    found = []
    for envelope in CapturingTransport.envelopes:
        event = envelope.get_event()
        if event is not None:
            found.append(event)
    return found


def exception_values(event: dict[str, Any]) -> list[str]:
    return [str(v.get("value")) for v in event.get("exception", {}).get("values", [])]


@pytest.fixture
def sentry_events() -> Iterator[None]:
    CapturingTransport.envelopes = []
    settings = Settings(database_url="sqlite://", sentry_dsn="https://public@sentry.invalid/1")
    assert init_sentry(settings, component="worker", transport=CapturingTransport)
    yield
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)
    assert not sentry_sdk.get_client().is_active(), "Sentry is off again for the other tests"


@pytest.fixture
def failing_inserts(pg_engine: sa.Engine) -> Iterator[None]:
    """Recording a message whose id starts with SM-BOOM fails in Postgres (a job that raises)."""
    with pg_engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE OR REPLACE FUNCTION livesell_test_boom() RETURNS trigger AS $$"
            " BEGIN IF NEW.provider_message_id LIKE 'SM-BOOM%%' THEN"
            " RAISE EXCEPTION 'boom: the disk is full'; END IF; RETURN NEW; END $$"
            " LANGUAGE plpgsql"
        )
        connection.exec_driver_sql(
            "CREATE TRIGGER livesell_test_boom BEFORE INSERT ON inbound_messages"
            " FOR EACH ROW EXECUTE FUNCTION livesell_test_boom()"
        )
    try:
        yield
    finally:
        with pg_engine.begin() as connection:
            connection.exec_driver_sql(
                "DROP TRIGGER IF EXISTS livesell_test_boom ON inbound_messages"
            )
            connection.exec_driver_sql("DROP FUNCTION IF EXISTS livesell_test_boom()")


class TestSentryFromTheEngine:
    def test_a_job_that_fails_for_good_reaches_sentry_once_with_the_jobs_tags(
        self,
        sentry_events: None,
        failing_inserts: None,
        webhook_container: Container,
        rq_state: RqState,
        redis_db: RedisTestDb,
    ) -> None:
        seed_tenant(webhook_container, TENANT)
        message = payload(TENANT, client_phone(1), message_id="SM-BOOM-1")
        job = Queue(QUEUE_NAME, connection=redis_connection(redis_db.url)).enqueue_call(
            JOB_FUNCTION,
            args=(message,),
            retry=Retry(max=1, interval=[1]),
            on_failure=Callback(FAILURE_CALLBACK),
        )

        with RunningWorker(webhook_container):
            wait_until(lambda: rq_state.failed() == 1, timeout=30)
            sentry_sdk.flush(timeout=5)

        reported = [e for e in events() if any("boom" in v for v in exception_values(e))]
        assert 1 == len(reported), "once, after the last attempt, as stock RQ reports it"
        assert {
            "queue": QUEUE_NAME,
            "job_id": job.id,
            "correlationId": message["correlationId"],
            "tenant": TENANT,
        }.items() <= reported[0]["tags"].items()
        assert [] == [e for e in events() if e.get("logentry", {}).get("message") == "Job failed"]


class _OutboxProviderBug:
    """A provider with a bug: it raises something no adapter translated."""

    def sender_key(self, request: SendRequest) -> str:
        return "+15005550006"

    def send(self, request: SendRequest) -> SendReceipt:
        raise RuntimeError("provider bug: unexpected response shape")


class TestSentryFromTheOutboxSender:
    def test_an_untranslated_provider_error_reaches_sentry_with_the_messages_tags(
        self, sentry_events: None
    ) -> None:
        settings = Settings(
            database_url="sqlite://",
            outbox_poll_interval_seconds=0.2,
            outbox_rate_limit_per_second=1000.0,
        )
        container = build(settings, store="memory")
        container.messaging_provider.override(providers.Object(_OutboxProviderBug()))
        uow_factory = container.uow_factory()
        add_tenant(uow_factory)
        message_id = queue(uow_factory, body="sentry")
        sender = container.outbox_part()
        sender.start()
        stop = threading.Event()
        thread = threading.Thread(target=sender.run, args=(stop,), daemon=True)
        thread.start()
        try:
            wait_until(
                lambda: any("provider bug" in v for e in events() for v in exception_values(e)),
                timeout=20,
            )
        finally:
            stop.set()
            thread.join(timeout=30)

        event = next(e for e in events() if any("provider bug" in v for v in exception_values(e)))
        assert {
            "queue": "messages_out",
            "job_id": message_id,
            "correlationId": "corr-sentry",
            "tenant": "shop",
        }.items() <= event["tags"].items()


# -- RQ job features in the engine --------------------------------------------------------------

calls: list[str] = []


def returns_retry() -> Retry:
    return Retry(max=3)


def succeeds() -> str:
    return "done"


def fails() -> None:
    raise ValueError("the job failed")


def on_success(job: Job, connection: Redis, result: object) -> None:
    calls.append(f"success {job.id} {result}")


def on_failure(job: Job, connection: Redis, exc_type: type, exc: BaseException, tb: Any) -> None:
    calls.append(f"failure {job.id} {exc}")


class _Hooks(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Hooks.received.append(json.loads(body or b"{}"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def hook_server() -> Iterator[str]:
    _Hooks.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hooks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def run_engine(connection: Redis, function: str, until: Any) -> None:
    spec = JobSpec(
        queue=TEST_QUEUE,
        function=function,
        failure_callback=f"{__name__}.on_failure",
        retry_intervals=(),
    )
    engine = ThreadedRqWorker(connection, spec, concurrency=1)
    engine.start()
    stop = threading.Event()
    thread = threading.Thread(target=engine.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_until(until, timeout=20)
    finally:
        stop.set()
        thread.join(timeout=30)


class TestRqJobFeatures:
    def test_a_job_returning_retry_is_failed_loudly_rather_than_silently_finished(
        self, redis_db: RedisTestDb
    ) -> None:
        connection = redis_connection(redis_db.url)
        job = Queue(TEST_QUEUE, connection=connection).enqueue_call(f"{__name__}.returns_retry")

        run_engine(
            connection,
            f"{__name__}.returns_retry",
            lambda: job.get_status(refresh=True) == "failed",
        )

        result = job.latest_result()
        assert result is not None
        assert "RetryReturned" in (result.exc_string or "")

    def test_success_and_failure_callbacks_and_webhooks_are_honoured(
        self, redis_db: RedisTestDb, hook_server: str
    ) -> None:
        calls.clear()
        connection = redis_connection(redis_db.url)
        rq_queue = Queue(TEST_QUEUE, connection=connection)
        good = rq_queue.enqueue_call(
            f"{__name__}.succeeds",
            on_success=Callback(f"{__name__}.on_success"),
            webhooks=[Webhook(hook_server, "finished", method="POST")],
        )

        run_engine(connection, f"{__name__}.succeeds", lambda: len(_Hooks.received) == 1)

        assert [f"success {good.id} done"] == calls
        assert (good.id, "finished") == (_Hooks.received[0]["job_id"], _Hooks.received[0]["status"])

        calls.clear()
        bad = rq_queue.enqueue_call(
            f"{__name__}.fails",
            on_failure=Callback(f"{__name__}.on_failure"),
            webhooks=[Webhook(hook_server, "failed", method="POST")],
        )

        run_engine(connection, f"{__name__}.fails", lambda: len(_Hooks.received) == 2)

        assert [f"failure {bad.id} the job failed"] == calls
        assert (bad.id, "failed") == (_Hooks.received[1]["job_id"], _Hooks.received[1]["status"])
        assert "ValueError: the job failed" in _Hooks.received[1]["exc_info"]
