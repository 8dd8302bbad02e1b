# ruff: noqa: F811 - pytest fixtures imported from tests.support.webhook are parameters here
"""Status callbacks as Twilio sends them for WhatsApp, in-process on the real Postgres (ADR 0011).

The parameter set is the one of Twilio's WhatsApp status callback example in "Track the Message
Status of Outbound Messages" (https://www.twilio.com/docs/messaging/guides/track-outbound-message-status):
``ChannelPrefix``, ``ApiVersion``, ``MessageStatus``, ``SmsSid``, ``SmsStatus``,
``ChannelInstallSid``, ``To``, ``From``, ``MessageSid``, ``StructuredMessage``, ``AccountSid``,
``ChannelToAddress``, plus ``ErrorCode`` with a failure and ``MessagingServiceSid`` when the
message was sent through a Messaging Service, whose status callback is one URL set on the service,
with no ids of ours in it. The statuses are those of "Outbound Message Status in Status Callbacks"
(https://www.twilio.com/docs/messaging/guides/outbound-message-status-in-status-callbacks).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from application.outbox import queue_outbound_message
from application.tenants import add_tenant
from entrypoints.container import Container
from entrypoints.webhook_app import STATUS_PATH, create_app
from ports.unit_of_work import UnitOfWorkFactory
from tests.support.redis_db import RedisTestDb
from tests.support.testclient import TestClient
from tests.support.twilio_webhook import BASE, CLIENT, SHOP_NUMBER, TOKEN, signed_headers
from tests.support.webhook import (  # noqa: F401 - fixtures
    container_on,
    redis_db,
    redis_test_db,
    rows,
    webhook_settings,
)

OTHER_SHOP_NUMBER = "+14155230000"
SERVICE_SID = "MG" + "9" * 32
LEASE = timedelta(seconds=60)


@pytest.fixture
def container(
    postgres_url: str, pg_uow_factory: UnitOfWorkFactory, redis_db: RedisTestDb
) -> Iterator[Container]:
    settings = webhook_settings(postgres_url, redis_db.url, TWILIO_AUTH_TOKEN=TOKEN)
    made = container_on(settings, pg_uow_factory)
    made.store.override("sql")
    for tenant_id, number in (("shop-a", SHOP_NUMBER), ("shop-b", OTHER_SHOP_NUMBER)):
        add_tenant(
            uow_factory=pg_uow_factory,
            clock=made.clock(),
            tenant_id=tenant_id,
            name=tenant_id,
            whatsapp_number=number,
        )
    yield made
    made.engine().dispose()


@pytest.fixture
def client(container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(container), base_url=BASE) as test_client:
        yield test_client


def sent_message(
    uow_factory: UnitOfWorkFactory, container: Container, tenant_id: str, sid: str
) -> str:
    """An outbound message the sender handed to Twilio, which answered with ``sid``."""
    outbox_id = queue_outbound_message(
        uow_factory=uow_factory,
        tenant_id=tenant_id,
        to=CLIENT,
        body="Votre commande est prête",
        correlation_id="corr-out",
        clock=container.clock(),
        ids=container.ids(),
    )
    with uow_factory() as uow:
        (claimed,) = uow.outbox.claim_due(container.clock().now(), LEASE, 1)
        claimed.mark_sent(sid, container.clock().now())
        assert uow.outbox.save_outcome(claimed)
        uow.commit()
    return outbox_id


def whatsapp_status(
    sid: str, status: str, sender: str = SHOP_NUMBER, **fields: str
) -> dict[str, str]:
    """A WhatsApp status callback form as Twilio posts it."""
    return {
        "ChannelPrefix": "whatsapp",
        "ApiVersion": "2010-04-01",
        "MessageStatus": status,
        "SmsSid": sid,
        "SmsStatus": status,
        "ChannelInstallSid": "XE" + "5" * 32,
        "To": f"whatsapp:{CLIENT}",
        "From": f"whatsapp:{sender}",
        "MessageSid": sid,
        "StructuredMessage": "false",
        "AccountSid": "AC" + "1" * 32,
        "ChannelToAddress": CLIENT,
        "MessagingServiceSid": SERVICE_SID,
        **fields,
    }


def post(client: TestClient, path: str, form: Mapping[str, str]) -> Any:
    return client.post(path, content=urlencode(form), headers=signed_headers(BASE + path, form))


def delivery(engine: sa.Engine, outbox_id: str) -> tuple[Any, ...]:
    (row,) = rows(
        engine,
        "SELECT tenant_id, delivery_status, delivery_error_code FROM messages_out WHERE id = :id",
        {"id": outbox_id},
    )
    return (row.tenant_id, row.delivery_status, row.delivery_error_code)


class TestAMessagingServiceCallbackWithoutIds:
    def test_reports_are_matched_by_message_sid_in_the_tenant_of_the_from_number(
        self,
        client: TestClient,
        container: Container,
        pg_uow_factory: UnitOfWorkFactory,
        pg_engine: sa.Engine,
    ) -> None:
        sid = "SM" + "c" * 32
        outbox_id = sent_message(pg_uow_factory, container, "shop-a", sid)

        answers = [
            post(client, STATUS_PATH, whatsapp_status(sid, s)).status_code
            for s in ("sent", "read", "delivered")
        ]

        assert [200, 200, 200] == answers
        assert ("shop-a", "read", None) == delivery(pg_engine, outbox_id)

    def test_a_from_number_no_tenant_has_finds_the_tenant_by_the_row(
        self,
        client: TestClient,
        container: Container,
        pg_uow_factory: UnitOfWorkFactory,
        pg_engine: sa.Engine,
    ) -> None:
        sid = "SM" + "d" * 32
        outbox_id = sent_message(pg_uow_factory, container, "shop-b", sid)

        answer = post(client, STATUS_PATH, whatsapp_status(sid, "delivered", "+14155550100"))

        assert 200 == answer.status_code
        assert ("shop-b", "delivered", None) == delivery(pg_engine, outbox_id)

    def test_an_unknown_sid_is_answered_and_changes_nothing(
        self,
        client: TestClient,
        container: Container,
        pg_uow_factory: UnitOfWorkFactory,
        pg_engine: sa.Engine,
    ) -> None:
        outbox_id = sent_message(pg_uow_factory, container, "shop-a", "SM" + "e" * 32)

        answer = post(client, STATUS_PATH, whatsapp_status("SM" + "f" * 32, "read"))

        assert 200 == answer.status_code
        assert ("shop-a", None, None) == delivery(pg_engine, outbox_id)

    def test_read_after_undelivered_wins_and_the_error_code_stays(
        self,
        client: TestClient,
        container: Container,
        pg_uow_factory: UnitOfWorkFactory,
        pg_engine: sa.Engine,
    ) -> None:
        sid = "SM" + "1" * 32
        outbox_id = sent_message(pg_uow_factory, container, "shop-a", sid)

        post(client, STATUS_PATH, whatsapp_status(sid, "undelivered", ErrorCode="63016"))
        post(client, STATUS_PATH, whatsapp_status(sid, "read"))

        assert ("shop-a", "read", "63016") == delivery(pg_engine, outbox_id)

    @pytest.mark.parametrize("status", ["canceled", "accepted", "scheduled", "partially_delivered"])
    def test_every_messaging_service_status_is_understood(
        self,
        client: TestClient,
        container: Container,
        pg_uow_factory: UnitOfWorkFactory,
        pg_engine: sa.Engine,
        status: str,
    ) -> None:
        sid = "SM" + "2" * 32
        outbox_id = sent_message(pg_uow_factory, container, "shop-a", sid)

        post(client, STATUS_PATH, whatsapp_status(sid, status))

        assert ("shop-a", status, None) == delivery(pg_engine, outbox_id)


class TestTheConsoleUrl:
    def test_a_trailing_slash_is_served_not_redirected(
        self,
        client: TestClient,
        container: Container,
        pg_uow_factory: UnitOfWorkFactory,
        pg_engine: sa.Engine,
    ) -> None:
        sid = "SM" + "3" * 32
        outbox_id = sent_message(pg_uow_factory, container, "shop-a", sid)

        answer = client.post(
            STATUS_PATH + "/",
            content=urlencode(whatsapp_status(sid, "delivered")),
            headers=signed_headers(BASE + STATUS_PATH + "/", whatsapp_status(sid, "delivered")),
            follow_redirects=False,
        )

        assert 200 == answer.status_code
        assert ("shop-a", "delivered", None) == delivery(pg_engine, outbox_id)
