# ruff: noqa: F811 - pytest fixtures imported from tests.support.webhook are parameters here
"""The durable spool on the real Postgres and Redis (ADR 0013): Postgres cut off through a TCP
proxy while signed Twilio requests keep coming, and while a job exhausts its retries.

Twilio retries a messaging webhook that failed only on the connection overrides in its URL, and
by default only on a connection failure, once (https://www.twilio.com/docs/usage/webhooks/
webhooks-connection-overrides): a 503 answered while Postgres is down is a message Twilio does
not send again. So the webhook spools the verified request in Redis and answers 200, and the
spool drainer records it when Postgres answers. Requests are signed as Twilio signs them
(``RequestValidator``, https://www.twilio.com/docs/usage/webhooks/webhooks-security), with the
parameter set of Twilio's inbound WhatsApp webhook
(https://www.twilio.com/docs/messaging/guides/webhook-request). RQ's retries are the ones the
worker runs (``Retry(max=4, interval=[1, 2, 4, 8])``,
https://python-rq.org/docs/exceptions/#retrying-failed-jobs).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from adapters.rq.connection import redis_connection
from adapters.rq.queue import RqInboundQueue
from adapters.rq.spec import JobSpec
from adapters.rq.spool import PENDING_KEY
from adapters.sqlalchemy.engine import build_engine
from adapters.sqlalchemy.unit_of_work import SqlUnitOfWorkFactory
from application.tenants import add_tenant
from entrypoints import cli
from entrypoints.container import Container
from entrypoints.webhook_app import MESSAGES_PATH, create_app
from tests.support.redis_db import RedisTestDb
from tests.support.tcp_proxy import TcpProxy
from tests.support.testclient import TestClient
from tests.support.twilio_webhook import BASE, FORM, SHOP_NUMBER, TOKEN, sign, twilio_form
from tests.support.webhook import (  # noqa: F401 - fixtures
    RqState,
    RunningWorker,
    client_phone,
    container_on,
    count,
    payload,
    redis_db,
    redis_test_db,
    rows,
    rq_state,
    wait_until,
    webhook_settings,
)

pytestmark = pytest.mark.slow

TENANT = "shop-a"
CUT_SECONDS = 20.0
REQUESTS_PER_SECOND = 10


class PartThread:
    """A worker part (the spool drainer, the inbox reconciler) in a thread, as the runner runs
    it."""

    def __init__(self, part: Any) -> None:
        self.part = part
        self.stop = threading.Event()
        self.thread = threading.Thread(target=part.run, args=(self.stop,), daemon=True)

    def __enter__(self) -> PartThread:
        self.part.start()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive(), f"{self.part.name} did not stop"


@pytest.fixture
def db_proxy(postgres_url: str) -> Iterator[TcpProxy]:
    url = sa.make_url(postgres_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        yield proxy


@pytest.fixture
def proxied(
    postgres_url: str, pg_reset: None, db_proxy: TcpProxy, redis_db: RedisTestDb
) -> Iterator[Container]:
    """The production container, every database connection through ``db_proxy``; one tenant
    whose WhatsApp number is the one the requests are sent to."""
    url = sa.make_url(postgres_url).set(host=db_proxy.host, port=db_proxy.port)
    engine = build_engine(url.render_as_string(hide_password=False), pool_size=5)
    settings = webhook_settings(
        url.render_as_string(hide_password=False),
        redis_db.url,
        TWILIO_AUTH_TOKEN=TOKEN,
        INBOX_RECONCILE_AFTER_SECONDS="5",
    )
    container = container_on(settings, SqlUnitOfWorkFactory(engine))
    container.store.override("sql")
    add_tenant(
        uow_factory=container.uow_factory(),
        clock=container.clock(),
        tenant_id=TENANT,
        name=TENANT,
        whatsapp_number=SHOP_NUMBER,
    )
    try:
        yield container
    finally:
        engine.dispose()


def post(client: TestClient, sid: str, n: int) -> int:
    form = twilio_form(sid, From=f"whatsapp:{client_phone(n)}", WaId=client_phone(n)[1:])
    response = client.post(
        MESSAGES_PATH,
        content=urlencode(form),
        headers={"Content-Type": FORM, "X-Twilio-Signature": sign(BASE + MESSAGES_PATH, form)},
    )
    return int(response.status_code)


class TestWebhookDuringADatabaseOutage:
    def test_every_message_of_a_stream_is_recorded_once_after_a_20_second_database_cut(
        self,
        proxied: Container,
        db_proxy: TcpProxy,
        redis_db: RedisTestDb,
        rq_state: RqState,
        pg_engine: sa.Engine,
    ) -> None:
        statuses: list[tuple[str, int, bool]] = []  # (sid, status, during the cut)
        sids: list[str] = []
        with (
            RunningWorker(proxied),
            PartThread(proxied.spool_part()) as drainer,
            PartThread(proxied.reconciler_part()),
            TestClient(create_app(proxied), base_url=BASE) as client,
        ):
            started = time.monotonic()
            cut_at, restore_at = 3.0, 3.0 + CUT_SECONDS
            cut = False
            n = 0
            while time.monotonic() - started < restore_at + 3.0:
                elapsed = time.monotonic() - started
                if not cut and cut_at <= elapsed < restore_at:
                    db_proxy.cut()
                    cut = True
                elif cut and elapsed >= restore_at:
                    db_proxy.restore()
                    cut = False
                if n % 7 == 6:  # a Twilio retry of an earlier message: the same MessageSid
                    sid = sids[n // 2]
                else:
                    sid = f"SM{n:032d}"
                    sids.append(sid)
                statuses.append((sid, post(client, sid, n), cut))
                n += 1
                time.sleep(1 / REQUESTS_PER_SECOND)
            wait_until(
                lambda: (
                    count(
                        pg_engine,
                        "SELECT count(*) FROM inbound_messages WHERE status = 'processed'",
                    )
                    >= len(sids)
                    and redis_db.client.llen(PENDING_KEY) == 0
                    and rq_state.idle()
                ),
                timeout=60,
            )
            drained = drainer.part.drained

        during = [status for _, status, in_cut in statuses if in_cut]
        assert len(during) >= CUT_SECONDS * REQUESTS_PER_SECOND * 0.5, "requests during the cut"
        assert {200} == {status for _, status, _ in statuses}, "no request refused"
        assert drained >= len(during) * 0.9, "the requests of the cut went through the spool"
        recorded = rows(
            pg_engine,
            "SELECT provider_message_id, count(*) AS n, min(status) AS status"
            " FROM inbound_messages GROUP BY provider_message_id",
        )
        assert sorted(sids) == sorted(r["provider_message_id"] for r in recorded)
        assert {(1, "processed")} == {(r["n"], r["status"]) for r in recorded}
        assert len(sids) == count(
            pg_engine, "SELECT count(*) FROM event_logs WHERE event_type = 'message.classified'"
        )
        # A job taken just before the cut exhausts its 15 s of retries during it: its dead letter
        # is written after the outage, and the reconciler has the still-received message
        # processed anyway. Nothing else is dead-lettered.
        dead = rows(pg_engine, "SELECT error_code, source_id FROM dead_letter_jobs")
        assert {"retries_exhausted"} >= {d["error_code"] for d in dead}
        assert len(dead) <= 3


class TestDeadLetterDuringADatabaseOutage:
    def test_a_job_exhausted_by_the_outage_gets_its_dead_letter_once_after_recovery(
        self,
        proxied: Container,
        db_proxy: TcpProxy,
        redis_db: RedisTestDb,
        rq_state: RqState,
        pg_engine: sa.Engine,
        postgres_url: str,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        queue = RqInboundQueue(
            redis_connection(redis_db.url), JobSpec.webhook_processing(proxied.retry_policy())
        )
        job_payload = payload(TENANT, client_phone(1), message_id="SM-exhausted")
        with RunningWorker(proxied) as worker, PartThread(proxied.spool_part()):
            db_proxy.cut()
            started = time.monotonic()
            queue.enqueue(job_payload)
            # 5 attempts, 1 + 2 + 4 + 8 s apart: exhausted while the database is still cut.
            wait_until(lambda: rq_state.failed() == 1, timeout=30)
            exhausted_after = time.monotonic() - started
            wait_until(lambda: worker.part.metrics.failed == 5, timeout=5)
            assert 1 == redis_db.client.llen(PENDING_KEY), "the dead letter is parked"
            time.sleep(max(0.0, 17.0 - exhausted_after))
            db_proxy.restore()
            wait_until(
                lambda: (
                    count(pg_engine, "SELECT count(*) FROM dead_letter_jobs") == 1
                    and redis_db.client.llen(PENDING_KEY) == 0
                ),
                timeout=30,
            )
            time.sleep(2)  # a second write would show now

        # RQ scores a scheduled retry in whole seconds and compares it with the current whole
        # second (rq/registry.py ScheduledJobRegistry.schedule / get_jobs_to_schedule, rq 2.12.0):
        # each of the 4 retries may run up to 1 s before its interval is over, so 15 - 4.
        assert exhausted_after >= 11
        [dead] = rows(pg_engine, "SELECT * FROM dead_letter_jobs")
        assert (dead["source"], dead["error_code"], dead["attempts"], dead["source_id"]) == (
            "webhook-processing",
            "retries_exhausted",
            5,
            "SM-exhausted",
        )
        assert (TENANT, job_payload) == (dead["tenant_id"], dead["payload"])
        assert 1 == count(
            pg_engine, "SELECT count(*) FROM event_logs WHERE event_type = 'inbound.rejected'"
        )
        monkeypatch.setenv("DATABASE_URL", postgres_url)
        monkeypatch.setenv("REDIS_URL", redis_db.url)
        capsys.readouterr()
        code = cli.main(["dlq", "list"])
        out = capsys.readouterr().out
        assert 0 == code
        assert dead["id"] in out
        assert "1 dead letter(s)" in out
