# ruff: noqa: F811 - pytest fixtures imported from tests.support.webhook are parameters here
"""The durable inbox end to end in one process: the webhook app records and enqueues, the
webhook-processor part (in a thread, as ``livesell worker`` runs it) marks the message processed;
with Redis cut by a TCP proxy the webhook still answers, the message waits ``received``, and the
inbox reconciler part enqueues it once Redis is back. Real Postgres and Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from application.tenants import add_seller, add_tenant
from entrypoints.container import Container
from entrypoints.webhook_app import MESSAGES_PATH, create_app
from ports.unit_of_work import UnitOfWorkFactory
from tests.support.redis_db import RedisTestDb
from tests.support.tcp_proxy import TcpProxy
from tests.support.testclient import TestClient
from tests.support.twilio_webhook import (
    BASE,
    CLIENT,
    SHOP_NUMBER,
    TOKEN,
    signed_headers,
    twilio_form,
)
from tests.support.webhook import (  # noqa: F401 - fixtures
    RqState,
    RunningWorker,
    container_on,
    redis_db,
    redis_test_db,
    rows,
    rq_state,
    wait_until,
    webhook_settings,
)

SELLER = "+33699000001"
RECONCILE_AFTER_SECONDS = 1


@pytest.fixture
def redis_proxy() -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", 6379) as proxy:
        yield proxy


@pytest.fixture
def container(
    postgres_url: str,
    pg_uow_factory: UnitOfWorkFactory,
    redis_db: RedisTestDb,
    redis_proxy: TcpProxy,
) -> Container:
    """Webhook, worker and reconciler on one container whose Redis is behind ``redis_proxy``."""
    settings = webhook_settings(
        postgres_url,
        f"redis://127.0.0.1:{redis_proxy.port}/{redis_db.db}",
        TWILIO_AUTH_TOKEN=TOKEN,
        INBOX_RECONCILE_AFTER_SECONDS=str(RECONCILE_AFTER_SECONDS),
    )
    made = container_on(settings, pg_uow_factory)
    clock, ids = made.clock(), made.ids()
    add_tenant(
        uow_factory=pg_uow_factory,
        clock=clock,
        tenant_id="shop-a",
        name="Shop A",
        whatsapp_number=SHOP_NUMBER,
    )
    add_seller(uow_factory=pg_uow_factory, clock=clock, ids=ids, tenant_id="shop-a", phone=SELLER)
    return made


@pytest.fixture
def client(container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(container), base_url=BASE) as test_client:
        yield test_client


def post(client: TestClient, sid: str, sender: str = CLIENT) -> Any:
    form = twilio_form(sid, From=f"whatsapp:{sender}")
    return client.post(
        MESSAGES_PATH,
        content=urlencode(form),
        headers=signed_headers(BASE + MESSAGES_PATH, form),
    )


def statuses(engine: sa.Engine) -> dict[str, tuple[str, str | None]]:
    found = rows(engine, "SELECT provider_message_id, status, message_type FROM inbound_messages")
    return {r.provider_message_id: (r.status, r.message_type) for r in found}


class TestTheFullPath:
    def test_a_signed_message_is_recorded_enqueued_and_processed_by_the_worker(
        self, client: TestClient, container: Container, pg_engine: sa.Engine, rq_state: RqState
    ) -> None:
        with RunningWorker(container):
            answers = [post(client, "SM-seller", SELLER), post(client, "SM-client")]
            wait_until(lambda: len(statuses(pg_engine)) == 2 and rq_state.idle())
            wait_until(lambda: all(s == "processed" for s, _ in statuses(pg_engine).values()))

        assert [200, 200] == [a.status_code for a in answers]
        assert {
            "SM-seller": ("processed", "seller"),
            "SM-client": ("processed", "client"),
        } == statuses(pg_engine)
        (session_row,) = rows(pg_engine, "SELECT count(*) AS n FROM live_sessions")
        assert 1 == session_row.n


class TestRedisOutage:
    def test_a_message_received_while_redis_is_down_is_processed_after_it_returns(
        self,
        client: TestClient,
        container: Container,
        pg_engine: sa.Engine,
        redis_proxy: TcpProxy,
        rq_state: RqState,
    ) -> None:
        reconciler = container.reconciler_part()
        reconciler.start()

        redis_proxy.cut()
        answer = post(client, "SM-outage")
        repeated = post(client, "SM-outage")
        assert (200, 200) == (answer.status_code, repeated.status_code)
        assert {"SM-outage": ("received", None)} == statuses(pg_engine)
        time.sleep(RECONCILE_AFTER_SECONDS + 0.2)
        during = reconciler.run_once()
        redis_proxy.restore()
        assert 0 == rq_state.waiting(), "nothing reached Redis while it was cut"

        after = reconciler.run_once()
        assert (1, 0, 1, 1) == (during.found, during.enqueued, after.found, after.enqueued)
        assert during.queue_error is not None
        assert 1 == rq_state.waiting()
        with RunningWorker(container):
            wait_until(lambda: statuses(pg_engine)["SM-outage"][0] == "processed")
            wait_until(rq_state.idle)

        assert {"SM-outage": ("processed", "client")} == statuses(pg_engine)
        assert 0 == reconciler.run_once().found

    def test_the_reconciler_leaves_messages_younger_than_the_threshold_alone(
        self, client: TestClient, container: Container, redis_proxy: TcpProxy, rq_state: RqState
    ) -> None:
        reconciler = container.reconciler_part()
        reconciler.start()
        redis_proxy.cut()
        post(client, "SM-young")
        redis_proxy.restore()

        report = reconciler.run_once()

        assert (0, 0) == (report.found, rq_state.waiting())

    def test_a_message_enqueued_again_is_not_enqueued_again_at_every_pass(
        self, client: TestClient, container: Container, redis_proxy: TcpProxy, rq_state: RqState
    ) -> None:
        reconciler = container.reconciler_part()
        reconciler.start()
        redis_proxy.cut()
        post(client, "SM-slow")
        redis_proxy.restore()
        time.sleep(RECONCILE_AFTER_SECONDS + 0.2)

        passes = [reconciler.run_once() for _ in range(3)]

        assert [(1, 1, 0), (1, 0, 1), (1, 0, 1)] == [
            (p.found, p.enqueued, p.deferred) for p in passes
        ]
        assert 1 == rq_state.waiting()
