# ruff: noqa: F811 - pytest fixtures imported from tests.support.webhook are parameters here
"""Meta wired in (issue 17 §2 §3, ADR 0019), on real Postgres and Redis: a signed Meta webhook
POST to the running app becomes an inbound message the webhook worker classifies; a tenant on
Meta gets its outbox messages through a local Graph API fake (``META_GRAPH_BASE_URL``), and the
status Meta then posts is recorded on the message.

Payloads and signature are Meta's documented ones (``tests.support.meta_webhook``: the messages
and status webhook references, and "Validating Payloads" of
https://developers.facebook.com/docs/graph-api/webhooks/getting-started); the fake answers as
the "Text messages" page shows.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from application.outbox import queue_outbound_message
from application.tenants import add_seller, add_tenant
from entrypoints.container import Container
from entrypoints.meta_routes import META_PATH
from entrypoints.webhook_app import create_app
from ports.unit_of_work import UnitOfWorkFactory
from tests.support.graph_api import GraphApiFake
from tests.support.meta_webhook import (
    APP_SECRET,
    OTHER_DISPLAY_NUMBER,
    OTHER_PHONE_NUMBER_ID,
    PHONE_NUMBER_ID,
    USER,
    body_of,
    change,
    contact,
    inbound,
    message,
    metadata,
    notification,
    sign,
    status,
    statuses,
)
from tests.support.redis_db import RedisTestDb
from tests.support.testclient import TestClient
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

VERIFY_TOKEN = "verify-token-of-the-test-app"
ACCESS_TOKEN = "EAAJB-test-access-token"
SELLER = "+33699000001"
BASE = "https://livesell.example"


@pytest.fixture
def graph() -> Iterator[GraphApiFake]:
    with GraphApiFake() as fake:
        yield fake


@pytest.fixture
def container(
    postgres_url: str, pg_uow_factory: UnitOfWorkFactory, redis_db: RedisTestDb, graph: GraphApiFake
) -> Container:
    """A deployment whose tenants are on Meta (Twilio's token verifies its own route only):
    its webhook, worker and sender."""
    settings = webhook_settings(
        postgres_url,
        f"redis://127.0.0.1:6379/{redis_db.db}",
        TWILIO_AUTH_TOKEN="twilio-token",
        META_ACCESS_TOKEN=ACCESS_TOKEN,
        META_APP_SECRET=APP_SECRET,
        META_VERIFY_TOKEN=VERIFY_TOKEN,
        META_GRAPH_BASE_URL=graph.base_url,
        OUTBOX_POLL_INTERVAL_SECONDS="0.1",
    )
    made = container_on(settings, pg_uow_factory)
    clock, ids = made.clock(), made.ids()
    for tenant_id, phone_number_id in (
        ("shop-m", PHONE_NUMBER_ID),
        ("shop-n", OTHER_PHONE_NUMBER_ID),
    ):
        add_tenant(
            uow_factory=pg_uow_factory,
            clock=clock,
            tenant_id=tenant_id,
            name=f"Shop {tenant_id}",
            provider="meta",
            meta_phone_number_id=phone_number_id,
        )
    add_seller(uow_factory=pg_uow_factory, clock=clock, ids=ids, tenant_id="shop-m", phone=SELLER)
    return made


@pytest.fixture
def signed_client(container: Container) -> Iterator[TestClient]:
    """The app as ``livesell webhook`` serves it, every signature verified."""
    with TestClient(create_app(container), base_url=BASE) as test:
        yield test


def post(client: TestClient, payload: dict[str, Any], signature: str | None = "sign") -> Any:
    body = body_of(payload)
    headers = {"Content-Type": "application/json"}
    if signature == "sign":
        headers["X-Hub-Signature-256"] = sign(body)
    elif signature is not None:
        headers["X-Hub-Signature-256"] = signature
    return client.post(META_PATH, content=body, headers=headers)


def inbox(engine: sa.Engine) -> dict[str, tuple[str, str, str | None]]:
    found = rows(
        engine,
        "SELECT tenant_id, provider_message_id, status, message_type FROM inbound_messages",
    )
    return {r.provider_message_id: (r.tenant_id, r.status, r.message_type) for r in found}


def dead_letters(engine: sa.Engine) -> list[tuple[str | None, str]]:
    found = rows(engine, "SELECT tenant_id, error_code FROM dead_letter_jobs ORDER BY id")
    return [(r.tenant_id, r.error_code) for r in found]


def seller_message(wamid: str) -> dict[str, Any]:
    return message("text", {"body": "Je prends le 3"}, id=wamid, **{"from": SELLER[1:]})


class TestVerification:
    def test_the_challenge_is_answered_as_plain_text_to_our_verify_token(
        self, signed_client: TestClient
    ) -> None:
        query = {"hub.mode": "subscribe", "hub.challenge": "1158201444"}

        ours = signed_client.get(META_PATH, params={**query, "hub.verify_token": VERIFY_TOKEN})
        other = signed_client.get(META_PATH, params={**query, "hub.verify_token": "guess"})
        unsubscribe = signed_client.get(
            META_PATH, params={**query, "hub.mode": "x", "hub.verify_token": VERIFY_TOKEN}
        )

        assert (200, "1158201444", "text/plain") == (
            ours.status_code,
            ours.text,
            ours.headers["content-type"].split(";")[0],
        )
        assert [403, 403] == [other.status_code, unsubscribe.status_code]


class TestADeploymentOnMetaAlone:
    def test_starts_without_twilios_token_and_its_twilio_routes_refuse_everything(
        self,
        postgres_url: str,
        pg_uow_factory: UnitOfWorkFactory,
        redis_db: RedisTestDb,
        pg_engine: sa.Engine,
    ) -> None:
        settings = webhook_settings(
            postgres_url,
            f"redis://127.0.0.1:6379/{redis_db.db}",
            META_ACCESS_TOKEN=ACCESS_TOKEN,
            META_APP_SECRET=APP_SECRET,
            META_VERIFY_TOKEN=VERIFY_TOKEN,
        )
        form = {"MessageSid": "SM1", "From": "whatsapp:+33612345678", "To": "whatsapp:+1415"}

        app = create_app(container_on(settings, pg_uow_factory))
        with TestClient(app, base_url=BASE) as meta_only:
            twilio = [
                meta_only.post(path, data=form).status_code
                for path in ("/webhooks/twilio/messages", "/webhooks/twilio/status")
            ]

        assert [403, 403] == twilio
        assert ({}, []) == (inbox(pg_engine), dead_letters(pg_engine))


class TestTheSignature:
    @pytest.mark.parametrize("signature", [None, "sha256=" + "0" * 64, sign(b"other body")])
    def test_a_missing_or_wrong_signature_is_403_and_nothing_is_recorded(
        self, signed_client: TestClient, pg_engine: sa.Engine, signature: str | None
    ) -> None:
        answer = post(signed_client, inbound(message("text", {"body": "hi"})), signature)

        assert 403 == answer.status_code
        assert ({}, []) == (inbox(pg_engine), dead_letters(pg_engine))

    def test_a_signature_with_another_app_secret_is_refused(
        self, signed_client: TestClient, pg_engine: sa.Engine
    ) -> None:
        body = body_of(inbound(message("text", {"body": "hi"})))

        answer = signed_client.post(
            META_PATH, content=body, headers={"X-Hub-Signature-256": sign(body, "not-ours")}
        )

        assert (403, {}) == (answer.status_code, inbox(pg_engine))


class TestMessages:
    def test_a_signed_post_becomes_a_classified_inbound_message(
        self,
        signed_client: TestClient,
        container: Container,
        pg_engine: sa.Engine,
        rq_state: RqState,
    ) -> None:
        with RunningWorker(container):
            answers = [
                post(
                    signed_client,
                    inbound(seller_message("wamid.SELLER1"), contacts=[contact(SELLER[1:])]),
                ),
                post(
                    signed_client,
                    inbound(message("text", {"body": "Combien ?"}, id="wamid.CLIENT1")),
                ),
            ]
            wait_until(lambda: len(inbox(pg_engine)) == 2 and rq_state.idle())
            wait_until(lambda: all(s == "processed" for _, s, _ in inbox(pg_engine).values()))

        assert [(200, "")] * 2 == [(a.status_code, a.text) for a in answers]
        assert {
            "wamid.SELLER1": ("shop-m", "processed", "seller"),
            "wamid.CLIENT1": ("shop-m", "processed", "client"),
        } == inbox(pg_engine)

    def test_one_post_for_two_business_numbers_records_each_under_its_tenant_once(
        self, signed_client: TestClient, pg_engine: sa.Engine
    ) -> None:
        payload = notification(
            change(
                {
                    "metadata": metadata(),
                    "contacts": [contact()],
                    "messages": [
                        message("text", {"body": "un"}, id="wamid.A1"),
                        message("text", {"body": "deux"}, id="wamid.A2"),
                    ],
                }
            ),
            change(
                {
                    "metadata": metadata(OTHER_DISPLAY_NUMBER, OTHER_PHONE_NUMBER_ID),
                    "contacts": [contact()],
                    "messages": [message("text", {"body": "trois"}, id="wamid.B1")],
                }
            ),
        )

        answers = [post(signed_client, payload), post(signed_client, payload)]  # Meta retries

        assert [200, 200] == [a.status_code for a in answers]
        assert {"wamid.A1": "shop-m", "wamid.A2": "shop-m", "wamid.B1": "shop-n"} == {
            wamid: tenant for wamid, (tenant, _, _) in inbox(pg_engine).items()
        }

    def test_a_long_wamid_is_recorded(
        self, signed_client: TestClient, pg_engine: sa.Engine
    ) -> None:
        wamid = "wamid.HBgNNTUxNjk5MjMxODIyMhUCABIYFDNBQURGODQ0MTM0N0U4NTcxQzEwAA=="

        answer = post(signed_client, inbound(message("text", {"body": "oi"}, id=wamid)))

        assert (200, [wamid]) == (answer.status_code, list(inbox(pg_engine)))

    def test_a_phone_number_id_no_tenant_has_leaves_a_dead_letter(
        self, signed_client: TestClient, pg_engine: sa.Engine
    ) -> None:
        payload = notification(
            change(
                {
                    "metadata": metadata("15550000000", "999999999"),
                    "contacts": [contact()],
                    "messages": [message("text", {"body": "hi"}, id="wamid.NOBODY")],
                }
            )
        )

        answer = post(signed_client, payload)

        assert (200, {}) == (answer.status_code, inbox(pg_engine))
        assert [(None, "unknown_number")] == dead_letters(pg_engine)

    def test_a_message_without_a_sender_leaves_a_dead_letter_under_its_tenant(
        self, signed_client: TestClient, pg_engine: sa.Engine
    ) -> None:
        item = message("text", {"body": "hi"}, id="wamid.NOFROM")
        del item["from"]

        answer = post(signed_client, inbound(item))

        assert (200, {}) == (answer.status_code, inbox(pg_engine))
        assert [("shop-m", "missing_fields")] == dead_letters(pg_engine)

    def test_a_signed_body_that_is_no_notification_leaves_a_dead_letter(
        self, signed_client: TestClient, pg_engine: sa.Engine
    ) -> None:
        answer = post(signed_client, {"object": "page", "entry": []})

        assert 400 == answer.status_code
        assert [(None, "invalid_payload")] == dead_letters(pg_engine)


class TestOutboundThroughTheGraphApi:
    def test_a_tenant_on_meta_receives_its_outbox_messages_through_the_graph_api(
        self,
        container: Container,
        signed_client: TestClient,
        pg_uow_factory: UnitOfWorkFactory,
        pg_engine: sa.Engine,
        graph: GraphApiFake,
    ) -> None:
        outbox_id = queue_outbound_message(
            uow_factory=pg_uow_factory,
            tenant_id="shop-m",
            to="+33612345678",
            body="Article réservé 10 minutes",
            correlation_id="corr-1",
            clock=container.clock(),
            ids=container.ids(),
        )
        part = container.outbox_part()
        part.start()
        stop = threading.Event()
        thread = threading.Thread(target=part.run, args=(stop,), daemon=True)
        thread.start()
        try:
            wait_until(lambda: sent(pg_engine, outbox_id)[0] == "sent")
        finally:
            stop.set()
            thread.join(timeout=30)
        assert not thread.is_alive()

        (request,) = graph.requests
        assert f"/v25.0/{PHONE_NUMBER_ID}/messages" == request.path
        assert f"Bearer {ACCESS_TOKEN}" == request.authorization
        assert {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "+33612345678",
            "type": "text",
            "text": {"body": "Article réservé 10 minutes", "preview_url": False},
            "biz_opaque_callback_data": f"tenantId=shop-m&outboxId={outbox_id}",
        } == request.body
        assert ("sent", "wamid.FAKE0001", None) == sent(pg_engine, outbox_id)

        # Meta then posts the message's statuses, out of order: the join keeps the furthest.
        callback = request.body["biz_opaque_callback_data"]
        answers = [
            post(
                signed_client,
                statuses(status(state, wamid="wamid.FAKE0001", biz_opaque_callback_data=callback)),
            )
            for state in ("delivered", "sent")
        ]
        assert [200, 200] == [a.status_code for a in answers]
        assert ("sent", "wamid.FAKE0001", "delivered") == sent(pg_engine, outbox_id)

    def test_a_status_without_callback_data_is_matched_by_its_wamid(
        self, signed_client: TestClient, pg_uow_factory: UnitOfWorkFactory, pg_engine: sa.Engine
    ) -> None:
        with pg_engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO messages_out (id, tenant_id, to_phone, body, status, attempts,"
                    " next_attempt_at, provider_message_id, correlation_id, created_at,"
                    " updated_at, provider) VALUES ('o-1', 'shop-m', '+16505551234', 'x', 'sent',"
                    " 1, now(), 'wamid.ELSEWHERE', 'c', now(), now(), 'meta')"
                )
            )

        failed = status("failed", wamid="wamid.ELSEWHERE", recipient=USER)
        failed["errors"] = [{"code": 131026, "title": "Message undeliverable"}]
        answer = post(signed_client, statuses(failed))

        assert 200 == answer.status_code
        (row,) = rows(pg_engine, "SELECT delivery_status, delivery_error_code FROM messages_out")
        assert ("failed", "131026") == (row.delivery_status, row.delivery_error_code)

    def test_callback_data_naming_another_tenant_than_the_numbers_is_matched_by_wamid(
        self, signed_client: TestClient, pg_engine: sa.Engine
    ) -> None:
        with pg_engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO messages_out (id, tenant_id, to_phone, body, status, attempts,"
                    " next_attempt_at, provider_message_id, correlation_id, created_at,"
                    " updated_at, provider) VALUES ('o-n', 'shop-n', '+16505551234', 'x', 'sent',"
                    " 1, now(), 'wamid.OFN', 'c', now(), now(), 'meta')"
                )
            )

        # Sent to shop-m's number, claiming shop-n's message: not recorded on it.
        forged = status(
            "read", wamid="wamid.OTHER", biz_opaque_callback_data="tenantId=shop-n&outboxId=o-n"
        )
        answer = post(signed_client, statuses(forged))

        assert 200 == answer.status_code
        (row,) = rows(pg_engine, "SELECT delivery_status FROM messages_out WHERE id = 'o-n'")
        assert row.delivery_status is None


def sent(engine: sa.Engine, outbox_id: str) -> tuple[str, str | None, str | None]:
    (row,) = rows(
        engine,
        "SELECT status, provider_message_id, delivery_status FROM messages_out WHERE id = :id",
        {"id": outbox_id},
    )
    return (row.status, row.provider_message_id, row.delivery_status)
