# ruff: noqa: F811 - pytest fixtures imported from tests.support.webhook are parameters here
"""The Twilio webhook app in-process (Starlette's TestClient) on the real Postgres and Redis:
signatures computed as Twilio computes them, the durable inbox, bad input, status callbacks and
health. End state is read from the database and from RQ's queue."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from rq import Queue

from adapters.rq.spec import QUEUE_NAME
from adapters.rq.spool import PENDING_KEY
from adapters.sqlalchemy.engine import build_engine
from adapters.sqlalchemy.unit_of_work import SqlUnitOfWorkFactory
from application.outbox import queue_outbound_message
from application.tenants import add_tenant
from entrypoints.container import Container
from entrypoints.settings import ConfigError
from entrypoints.webhook_app import MESSAGES_PATH, STATUS_PATH, create_app
from ports.unit_of_work import UnitOfWorkFactory
from tests.support.redis_db import RedisTestDb
from tests.support.tcp_proxy import TcpProxy
from tests.support.testclient import TestClient
from tests.support.twilio_webhook import (
    BASE,
    CLIENT,
    FORM,
    SHOP_NUMBER,
    TOKEN,
    sign,
    twilio_form,
)
from tests.support.webhook import (  # noqa: F401 - fixtures
    container_on,
    count,
    redis_db,
    redis_test_db,
    rows,
    webhook_settings,
)

OTHER_SHOP_NUMBER = "+14155230000"


# -- helpers -----------------------------------------------------------------------------------


def post_signed(
    client: TestClient,
    path: str,
    params: Mapping[str, str],
    *,
    signed_url: str | None = None,
    signed_params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Any:
    """POST ``params`` as a form, signed over ``signed_url`` (default: the URL posted to)."""
    url = signed_url or BASE + path
    signature = sign(url, signed_params if signed_params is not None else params)
    return client.post(
        path,
        content=urlencode(params),
        headers={"Content-Type": FORM, "X-Twilio-Signature": signature, **(headers or {})},
    )


def inbound_rows(engine: sa.Engine) -> list[Any]:
    return rows(engine, "SELECT * FROM inbound_messages ORDER BY received_at")


def queued_payloads(redis_db: RedisTestDb) -> list[dict[str, Any]]:
    queue = Queue(QUEUE_NAME, connection=redis_db.client)
    return [job.args[0] for job in queue.get_jobs()]


def seed_shops(uow_factory: UnitOfWorkFactory, container: Container) -> None:
    for tenant_id, number in (("shop-a", SHOP_NUMBER), ("shop-b", OTHER_SHOP_NUMBER)):
        add_tenant(
            uow_factory=uow_factory,
            clock=container.clock(),
            tenant_id=tenant_id,
            name=tenant_id,
            whatsapp_number=number,
        )


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def make_container(
    postgres_url: str, pg_uow_factory: UnitOfWorkFactory, redis_db: RedisTestDb
) -> Iterator[Any]:
    """Containers on the test database (emptied) and the run's Redis database; shops seeded."""
    made: list[Container] = []

    def make(
        redis_url: str | None = None,
        uow_factory: UnitOfWorkFactory | None = None,
        **env: str,
    ) -> Container:
        env = {"TWILIO_AUTH_TOKEN": TOKEN, **env}
        settings = webhook_settings(postgres_url, redis_url or redis_db.url, **env)
        container = container_on(settings, uow_factory or pg_uow_factory)
        container.store.override("sql")
        made.append(container)
        return container

    first = make()
    seed_shops(pg_uow_factory, first)
    yield make
    for container in made:
        container.engine().dispose()


@pytest.fixture
def container(make_container: Any) -> Container:
    made: Container = make_container()
    return made


@pytest.fixture
def client(container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(container), base_url=BASE) as test_client:
        yield test_client


# -- tests -------------------------------------------------------------------------------------


class TestSignatures:
    def test_a_request_signed_as_twilio_signs_it_is_recorded_and_enqueued(
        self, client: TestClient, pg_engine: sa.Engine, redis_db: RedisTestDb
    ) -> None:
        response = post_signed(client, MESSAGES_PATH, twilio_form())

        assert 200 == response.status_code
        assert "text/xml" in response.headers["content-type"]
        assert "<Response/>" in response.text
        ((stored),) = inbound_rows(pg_engine)
        assert ("shop-a", "SM" + "a" * 32, "received") == (
            stored.tenant_id,
            stored.provider_message_id,
            stored.status,
        )
        assert ["SM" + "a" * 32] == [p["providerMessageId"] for p in queued_payloads(redis_db)]

    @pytest.mark.parametrize(
        "tamper",
        [
            pytest.param({"signed_params": twilio_form(Body="something else")}, id="tampered-body"),
            pytest.param({"signed_url": BASE + "/webhooks/twilio/other"}, id="wrong-url"),
            pytest.param(
                {"signed_url": "https://evil.example.com" + MESSAGES_PATH}, id="wrong-host"
            ),
            pytest.param({"headers": {"X-Twilio-Signature": sign(BASE, {}, "x" * 32)}}, id="bad"),
        ],
    )
    def test_a_request_with_a_wrong_signature_is_refused_and_nothing_is_recorded(
        self,
        client: TestClient,
        pg_engine: sa.Engine,
        redis_db: RedisTestDb,
        tamper: dict[str, Any],
    ) -> None:
        response = post_signed(client, MESSAGES_PATH, twilio_form(), **tamper)

        assert 403 == response.status_code
        assert [] == inbound_rows(pg_engine)
        assert [] == queued_payloads(redis_db)

    def test_a_request_without_a_signature_is_refused_and_nothing_is_recorded(
        self, client: TestClient, pg_engine: sa.Engine, redis_db: RedisTestDb
    ) -> None:
        response = client.post(
            MESSAGES_PATH, content=urlencode(twilio_form()), headers={"Content-Type": FORM}
        )

        assert (403, "missing X-Twilio-Signature") == (response.status_code, response.text)
        assert [] == inbound_rows(pg_engine)
        assert [] == queued_payloads(redis_db)

    def test_a_request_signed_with_another_token_is_refused(
        self, client: TestClient, pg_engine: sa.Engine
    ) -> None:
        form = twilio_form()
        signature = sign(BASE + MESSAGES_PATH, form, token="0" * 32)

        response = client.post(
            MESSAGES_PATH,
            content=urlencode(form),
            headers={"Content-Type": FORM, "X-Twilio-Signature": signature},
        )

        assert 403 == response.status_code
        assert [] == inbound_rows(pg_engine)

    def test_behind_a_proxy_the_public_url_is_what_twilio_signed(
        self, make_container: Any, pg_engine: sa.Engine
    ) -> None:
        public = "https://livesell-webhook.up.railway.app"
        container = make_container(WEBHOOK_PUBLIC_BASE_URL=public)
        with TestClient(create_app(container), base_url="http://10.0.0.7:8080") as internal:
            signed_internal = post_signed(
                internal, MESSAGES_PATH, twilio_form("SM1"), signed_url="http://10.0.0.7:8080"
            )
            signed_public = post_signed(
                internal, MESSAGES_PATH, twilio_form("SM2"), signed_url=public + MESSAGES_PATH
            )

        assert (403, 200) == (signed_internal.status_code, signed_public.status_code)
        assert ["SM2"] == [r.provider_message_id for r in inbound_rows(pg_engine)]

    def test_the_webhook_refuses_to_start_without_an_auth_token(self, make_container: Any) -> None:
        container = make_container(TWILIO_AUTH_TOKEN="")

        with pytest.raises(ConfigError, match="TWILIO_AUTH_TOKEN"):
            create_app(container)

    def test_the_insecure_development_mode_accepts_unsigned_requests(
        self, make_container: Any, pg_engine: sa.Engine
    ) -> None:
        container = make_container(TWILIO_AUTH_TOKEN="")
        with TestClient(create_app(container, verify_signatures=False), base_url=BASE) as dev:
            response = dev.post(
                MESSAGES_PATH, content=urlencode(twilio_form()), headers={"Content-Type": FORM}
            )

        assert 200 == response.status_code
        assert 1 == len(inbound_rows(pg_engine))


class TestInboundMessages:
    def test_the_form_becomes_the_spec_payload_with_the_callers_request_id(
        self, client: TestClient, pg_engine: sa.Engine, redis_db: RedisTestDb
    ) -> None:
        form = twilio_form(
            "SM-media",
            NumMedia="2",
            MediaUrl1="https://api.twilio.com/m/1",
            MediaUrl0="https://api.twilio.com/m/0",
            MediaContentType0="image/jpeg",
        )

        post_signed(client, MESSAGES_PATH, form, headers={"X-Request-Id": "req-42"})

        (job,) = queued_payloads(redis_db)
        assert {
            "tenantId": "shop-a",
            "providerMessageId": "SM-media",
            "from": f"whatsapp:{CLIENT}",
            "to": f"whatsapp:{SHOP_NUMBER}",
            "body": "Je prends le 3 !",
            "correlationId": "req-42",
            "profileName": "Bob",
            "numMedia": 2,
            "mediaUrls": ["https://api.twilio.com/m/0", "https://api.twilio.com/m/1"],
            "mediaContentTypes": ["image/jpeg", ""],
            "messageKind": "text",
            "waId": CLIENT.lstrip("+"),
            "providerParams": form,
        } == {k: v for k, v in job.items() if k != "receivedAt"}
        (stored,) = inbound_rows(pg_engine)
        assert ("req-42", 2, ["https://api.twilio.com/m/0", "https://api.twilio.com/m/1"]) == (
            stored.correlation_id,
            stored.num_media,
            stored.media_urls,
        )

    def test_without_a_request_id_each_message_gets_a_new_correlation_id(
        self, client: TestClient, pg_engine: sa.Engine
    ) -> None:
        post_signed(client, MESSAGES_PATH, twilio_form("SM1"))
        post_signed(client, MESSAGES_PATH, twilio_form("SM2"))

        ids = [r.correlation_id for r in inbound_rows(pg_engine)]
        assert 2 == len(set(ids))
        assert all(len(i) >= 16 for i in ids)

    def test_a_repeated_message_sid_is_recorded_and_enqueued_once(
        self, client: TestClient, pg_engine: sa.Engine, redis_db: RedisTestDb
    ) -> None:
        answers = [post_signed(client, MESSAGES_PATH, twilio_form("SM-dup")) for _ in range(3)]

        assert [200, 200, 200] == [a.status_code for a in answers]
        assert 1 == len(inbound_rows(pg_engine))
        assert 1 == len(queued_payloads(redis_db))

    def test_the_same_message_sid_for_two_tenants_is_two_messages(
        self, client: TestClient, pg_engine: sa.Engine
    ) -> None:
        post_signed(client, MESSAGES_PATH, twilio_form("SM-x"))
        post_signed(client, MESSAGES_PATH, twilio_form("SM-x", To=f"whatsapp:{OTHER_SHOP_NUMBER}"))

        assert ["shop-a", "shop-b"] == sorted(r.tenant_id for r in inbound_rows(pg_engine))

    def test_a_message_to_a_number_no_tenant_has_is_answered_and_ignored_with_a_warning(
        self,
        client: TestClient,
        pg_engine: sa.Engine,
        redis_db: RedisTestDb,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        with caplog.at_level(logging.WARNING, logger="livesell"):
            response = post_signed(client, MESSAGES_PATH, twilio_form(To="whatsapp:+14155550000"))

        assert 200 == response.status_code
        assert "<Response/>" in response.text
        assert [] == inbound_rows(pg_engine)
        assert [] == queued_payloads(redis_db)
        assert any("no tenant" in r.getMessage() for r in caplog.records)

    def test_when_redis_is_down_the_message_is_answered_and_stays_received(
        self, make_container: Any, pg_engine: sa.Engine, redis_db: RedisTestDb
    ) -> None:
        with TcpProxy("127.0.0.1", 6379) as proxy:
            container = make_container(redis_url=f"redis://127.0.0.1:{proxy.port}/{redis_db.db}")
            proxy.cut()
            with TestClient(create_app(container), base_url=BASE) as client:
                response = post_signed(client, MESSAGES_PATH, twilio_form("SM-down"))

        assert 200 == response.status_code
        assert [("SM-down", "received")] == [
            (r.provider_message_id, r.status) for r in inbound_rows(pg_engine)
        ]
        assert [] == queued_payloads(redis_db)

    def test_when_the_database_is_down_the_message_waits_in_the_spool_and_is_answered_200(
        self, make_container: Any, postgres_url: str, redis_db: RedisTestDb
    ) -> None:
        url = sa.make_url(postgres_url)
        with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
            engine = build_engine(url.set(port=proxy.port).render_as_string(False), pool_size=2)
            container = make_container(uow_factory=SqlUnitOfWorkFactory(engine))
            proxy.cut()
            with TestClient(create_app(container), base_url=BASE) as client:
                response = post_signed(
                    client, MESSAGES_PATH, twilio_form("SM-nodb"), headers={"X-Request-Id": "r-1"}
                )
            engine.dispose()

        assert (200, True) == (response.status_code, "<Response/>" in response.text)
        assert [] == queued_payloads(redis_db)
        [raw] = redis_db.client.lrange(PENDING_KEY, 0, -1)
        spooled = json.loads(raw)
        assert ("inbound", "SM-nodb", "r-1") == (
            spooled["kind"],
            spooled["message"]["provider_message_id"],
            spooled["correlationId"],
        )
        assert ["MessageSid", "SM-nodb"] in spooled["params"]

    def test_when_the_database_and_redis_are_both_down_the_message_is_refused_with_503(
        self, make_container: Any, postgres_url: str, redis_db: RedisTestDb
    ) -> None:
        url = sa.make_url(postgres_url)
        with (
            TcpProxy(url.host or "127.0.0.1", url.port or 5432) as db_proxy,
            TcpProxy("127.0.0.1", 6379) as redis_proxy,
        ):
            engine = build_engine(url.set(port=db_proxy.port).render_as_string(False), pool_size=2)
            container = make_container(
                redis_url=f"redis://127.0.0.1:{redis_proxy.port}/{redis_db.db}",
                uow_factory=SqlUnitOfWorkFactory(engine),
            )
            db_proxy.cut()
            redis_proxy.cut()
            with TestClient(create_app(container), base_url=BASE) as client:
                response = post_signed(client, MESSAGES_PATH, twilio_form("SM-nothing"))
            engine.dispose()

        assert 503 == response.status_code
        assert [] == queued_payloads(redis_db)
        assert 0 == redis_db.client.llen(PENDING_KEY)


class TestBadInput:
    def test_a_body_that_is_not_a_form_is_415(
        self, client: TestClient, pg_engine: sa.Engine
    ) -> None:
        response = client.post(
            MESSAGES_PATH,
            json=twilio_form(),
            headers={"X-Twilio-Signature": sign(BASE + MESSAGES_PATH, {})},
        )

        assert 415 == response.status_code
        assert [] == inbound_rows(pg_engine)

    def test_missing_fields_are_400_naming_them(
        self, client: TestClient, pg_engine: sa.Engine
    ) -> None:
        form = twilio_form()
        del form["MessageSid"], form["To"]

        response = post_signed(client, MESSAGES_PATH, form)

        assert (400, "missing field(s): MessageSid, To") == (response.status_code, response.text)
        assert [] == inbound_rows(pg_engine)

    def test_a_body_over_the_limit_is_413_with_or_without_a_content_length(
        self, client: TestClient, pg_engine: sa.Engine
    ) -> None:
        form = twilio_form(Body="x" * 1_100_000)
        signature = sign(BASE + MESSAGES_PATH, form)
        headers = {"Content-Type": FORM, "X-Twilio-Signature": signature}
        encoded = urlencode(form).encode()

        declared = client.post(MESSAGES_PATH, content=encoded, headers=headers)
        streamed = client.post(
            MESSAGES_PATH,
            content=(encoded[i : i + 8192] for i in range(0, len(encoded), 8192)),
            headers=headers,
        )

        assert (413, 413) == (declared.status_code, streamed.status_code)
        assert [] == inbound_rows(pg_engine)

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param(b"MessageSid=SM1&Body=caf\xe9", id="raw-latin-1"),
            pytest.param(b"MessageSid=SM1&Body=caf%E9", id="percent-encoded-latin-1"),
        ],
    )
    def test_a_form_that_is_not_utf_8_is_400(
        self, client: TestClient, pg_engine: sa.Engine, body: bytes
    ) -> None:
        response = client.post(
            MESSAGES_PATH,
            content=body,
            headers={"Content-Type": FORM, "X-Twilio-Signature": "x"},
        )

        assert (400, "the form is not valid UTF-8") == (response.status_code, response.text)
        assert [] == inbound_rows(pg_engine)

    def test_a_form_in_another_charset_is_415(self, client: TestClient) -> None:
        response = client.post(
            MESSAGES_PATH,
            content=b"MessageSid=SM1",
            headers={"Content-Type": f"{FORM}; charset=iso-8859-1", "X-Twilio-Signature": "x"},
        )

        assert 415 == response.status_code

    def test_an_unreadable_media_count_is_recorded_with_a_flag(
        self, client: TestClient, pg_engine: sa.Engine
    ) -> None:
        response = post_signed(client, MESSAGES_PATH, twilio_form(NumMedia="lots"))

        assert 200 == response.status_code
        (stored,) = inbound_rows(pg_engine)
        assert (0, ["num_media_unreadable"]) == (stored.num_media, stored.input_flags)

    def test_a_message_that_breaks_the_payload_contract_is_400_and_kept_as_a_dead_letter(
        self, client: TestClient, pg_engine: sa.Engine, redis_db: RedisTestDb
    ) -> None:
        response = post_signed(client, MESSAGES_PATH, twilio_form("SM" + "9" * 130))

        assert 400 == response.status_code
        assert "providerMessageId" in response.text
        assert [] == inbound_rows(pg_engine)
        assert [] == queued_payloads(redis_db)
        assert [("shop-a", "invalid_payload")] == [
            (r.tenant_id, r.error_code)
            for r in rows(pg_engine, "SELECT tenant_id, error_code FROM dead_letter_jobs")
        ]


def write_outbound(uow_factory: UnitOfWorkFactory, container: Container, tenant_id: str) -> str:
    return queue_outbound_message(
        uow_factory=uow_factory,
        tenant_id=tenant_id,
        to=CLIENT,
        body="Votre commande est prête",
        correlation_id="corr-out",
        clock=container.clock(),
        ids=container.ids(),
    )


def callback(
    client: TestClient,
    status: str,
    outbox_id: str,
    tenant_id: str = "shop-a",
    **fields: str,
) -> Any:
    path = f"{STATUS_PATH}?{urlencode({'tenantId': tenant_id, 'outboxId': outbox_id})}"
    form = {
        "MessageSid": "SM" + "b" * 32,
        "MessageStatus": status,
        "AccountSid": "AC" + "1" * 32,
        "To": f"whatsapp:{CLIENT}",
        **fields,
    }
    return post_signed(client, path, form)


def delivery(engine: sa.Engine, outbox_id: str) -> tuple[Any, ...]:
    (row,) = rows(
        engine,
        "SELECT status, delivery_status, delivery_error_code FROM messages_out WHERE id = :id",
        {"id": outbox_id},
    )
    return (row.status, row.delivery_status, row.delivery_error_code)


class TestStatusCallbacks:
    def test_callbacks_out_of_order_and_repeated_only_move_the_status_forward(
        self,
        client: TestClient,
        container: Container,
        pg_uow_factory: UnitOfWorkFactory,
        pg_engine: sa.Engine,
    ) -> None:
        outbox_id = write_outbound(pg_uow_factory, container, "shop-a")
        seen = []

        for status in ("sent", "delivered", "sent", "queued", "delivered", "read", "delivered"):
            answer = callback(client, status, outbox_id)
            seen.append((answer.status_code, delivery(pg_engine, outbox_id)[1]))

        assert [
            (200, "sent"),
            (200, "delivered"),
            (200, "delivered"),
            (200, "delivered"),
            (200, "delivered"),
            (200, "read"),
            (200, "read"),
        ] == seen
        assert "pending" == delivery(pg_engine, outbox_id)[0]

    def test_a_delivered_after_a_failure_wins_and_twilios_error_code_stays(
        self,
        client: TestClient,
        container: Container,
        pg_uow_factory: UnitOfWorkFactory,
        pg_engine: sa.Engine,
    ) -> None:
        outbox_id = write_outbound(pg_uow_factory, container, "shop-a")

        callback(client, "sent", outbox_id)
        callback(client, "undelivered", outbox_id, ErrorCode="63016")
        failed = delivery(pg_engine, outbox_id)
        callback(client, "delivered", outbox_id)
        callback(client, "sent", outbox_id)

        assert ("pending", "undelivered", "63016") == failed
        assert ("pending", "delivered", "63016") == delivery(pg_engine, outbox_id)

    def test_a_callback_naming_another_tenant_changes_nothing(
        self,
        client: TestClient,
        container: Container,
        pg_uow_factory: UnitOfWorkFactory,
        pg_engine: sa.Engine,
    ) -> None:
        outbox_id = write_outbound(pg_uow_factory, container, "shop-a")

        answer = callback(client, "delivered", outbox_id, tenant_id="shop-b")

        assert 200 == answer.status_code
        assert ("pending", None, None) == delivery(pg_engine, outbox_id)

    def test_a_callback_for_an_unknown_message_is_answered_and_ignored(
        self, client: TestClient
    ) -> None:
        assert 200 == callback(client, "delivered", "no-such-id").status_code

    def test_ids_in_the_url_are_covered_by_the_signature(
        self,
        client: TestClient,
        container: Container,
        pg_uow_factory: UnitOfWorkFactory,
        pg_engine: sa.Engine,
    ) -> None:
        outbox_id = write_outbound(pg_uow_factory, container, "shop-a")
        form = {"MessageSid": "SM1", "MessageStatus": "failed", "ErrorCode": "1"}
        signed_for = f"{BASE}{STATUS_PATH}?tenantId=shop-a&outboxId=other"

        answer = post_signed(
            client,
            f"{STATUS_PATH}?tenantId=shop-a&outboxId={outbox_id}",
            form,
            signed_url=signed_for,
        )

        assert 403 == answer.status_code
        assert ("pending", None, None) == delivery(pg_engine, outbox_id)

    def test_a_callback_without_its_ids_or_status_is_400_naming_them(
        self, client: TestClient
    ) -> None:
        answer = post_signed(client, f"{STATUS_PATH}?outboxId=x", {"SmsSid": "SM1"})

        assert (
            400,
            "missing field(s): MessageStatus, MessageSid (or tenantId and outboxId in the URL)",
        ) == (answer.status_code, answer.text)


class TestHealth:
    def test_readyz_names_the_schema_when_the_database_is_not_at_head(
        self, make_container: Any, postgres_url: str
    ) -> None:
        from tests.conftest import create_postgres_database, drop_postgres_database

        empty = create_postgres_database("livesell_unmigrated")
        try:
            container = make_container(DATABASE_URL=empty)
            with TestClient(create_app(container), base_url=BASE) as client:
                response = client.get("/readyz")
            container.engine().dispose()
        finally:
            drop_postgres_database(empty)

        body = response.json()
        assert (503, ["schema"], "ok") == (
            response.status_code,
            body["failed"],
            body["checks"]["postgres"],
        )
        assert "run `livesell migrate`" in body["checks"]["schema"]

    def test_healthz_answers_while_the_process_is_up(self, client: TestClient) -> None:
        assert (200, {"status": "ok"}) == (
            client.get("/healthz").status_code,
            client.get("/healthz").json(),
        )

    def test_readyz_is_ready_when_postgres_and_redis_answer(self, client: TestClient) -> None:
        response = client.get("/readyz")

        assert (200, {"postgres": "ok", "redis": "ok", "schema": "ok"}) == (
            response.status_code,
            response.json()["checks"],
        )

    def test_readyz_names_redis_when_redis_is_unreachable(
        self, make_container: Any, redis_db: RedisTestDb
    ) -> None:
        with TcpProxy("127.0.0.1", 6379) as proxy:
            container = make_container(redis_url=f"redis://127.0.0.1:{proxy.port}/{redis_db.db}")
            proxy.cut()
            with TestClient(create_app(container), base_url=BASE) as client:
                response = client.get("/readyz")

        assert (503, ["redis"], "ok") == (
            response.status_code,
            response.json()["failed"],
            response.json()["checks"]["postgres"],
        )

    def test_readyz_names_postgres_when_postgres_is_unreachable(
        self, make_container: Any, postgres_url: str
    ) -> None:
        url = sa.make_url(postgres_url)
        with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
            container = make_container(
                DATABASE_URL=url.set(port=proxy.port).render_as_string(False)
            )
            proxy.cut()
            with TestClient(create_app(container), base_url=BASE) as client:
                response = client.get("/readyz")

        assert (503, ["postgres", "schema"], "ok") == (
            response.status_code,
            response.json()["failed"],
            response.json()["checks"]["redis"],
        )
