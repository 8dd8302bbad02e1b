# ruff: noqa: F811 - pytest fixtures imported from tests.support.webhook are parameters here
"""Phones as WhatsApp sends them and time as received (ADR 0012), on the real Redis and Postgres:
jobs run by the worker part as ``livesell worker`` runs it.

The sender forms are Twilio's ``From`` (https://www.twilio.com/docs/messaging/guides/webhook-request):
``whatsapp:+491511234567`` is the sender of a real Twilio capture (issue 11); Mexico's ``+52 1`` and
Argentina's ``+54 9`` mobile forms are documented at
https://support.whapi.cloud/help-desk/faq/specifics-of-sending-messages-to-numbers-of-different-countries
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from adapters.rq.queue import RqInboundQueue
from domain.live_sessions import LiveSession
from entrypoints.container import Container
from tests.support.webhook import (  # noqa: F401 - fixtures
    RqState,
    RunningWorker,
    count,
    inbound_queue,
    payload,
    redis_db,
    redis_test_db,
    rows,
    rq_state,
    seed_tenant,
    wait_until,
    webhook_container,
)

TENANT = "tienda-sol"
ARGENTINE_SELLER = "+54 11 2345 6789"
MEXICAN_SELLER = "+52 55 1234 5678"


def processed(engine: sa.Engine) -> int:
    return count(engine, "SELECT count(*) FROM inbound_messages WHERE status = 'processed'")


class TestSendersAsWhatsAppSendsThem:
    def test_sellers_match_in_whatsapps_form_and_metadata_invalid_clients_are_recorded(
        self,
        webhook_container: Container,
        inbound_queue: RqInboundQueue,
        rq_state: RqState,
        pg_engine: sa.Engine,
    ) -> None:
        seed_tenant(webhook_container, TENANT, sellers=(ARGENTINE_SELLER, MEXICAN_SELLER))
        sent = {
            "SM-ar": "+5491123456789",
            "SM-mx": "+5215512345678",
            "SM-de": "+491511234567",
            "SM-br": "+559281723241",
        }
        for message_id, sender in sent.items():
            inbound_queue.enqueue(payload(TENANT, sender, message_id=message_id))

        with RunningWorker(webhook_container):
            wait_until(lambda: processed(pg_engine) == len(sent) and rq_state.idle())

        recorded = rows(
            pg_engine,
            "SELECT provider_message_id, from_e164, message_type FROM inbound_messages"
            " ORDER BY provider_message_id",
        )
        assert [
            ("SM-ar", "+5491123456789", "seller"),
            ("SM-br", "+559281723241", "client"),
            ("SM-de", "+491511234567", "client"),
            ("SM-mx", "+5215512345678", "seller"),
        ] == [tuple(r.values()) for r in recorded]
        assert 0 == count(pg_engine, "SELECT count(*) FROM dead_letter_jobs")


class TestTimeAsReceived:
    def test_a_client_message_from_a_backlog_joins_the_live_of_its_time(
        self,
        webhook_container: Container,
        inbound_queue: RqInboundQueue,
        rq_state: RqState,
        pg_engine: sa.Engine,
    ) -> None:
        seed_tenant(webhook_container, TENANT, sellers=(ARGENTINE_SELLER,))
        now = webhook_container.clock().now()
        window = webhook_container.window().length
        started = now - window - timedelta(minutes=10)  # stale now, current 10 minutes later
        with webhook_container.uow_factory()() as uow:
            uow.sessions.add(
                LiveSession.open(id="live-1", tenant_id=TENANT, now=started, correlation_id="c")
            )
            uow.commit()
        late = payload(
            TENANT,
            "+5491198765432",
            message_id="SM-late",
            receivedAt=(started + timedelta(minutes=5)).isoformat(),
        )

        inbound_queue.enqueue(late)
        with RunningWorker(webhook_container):
            wait_until(lambda: processed(pg_engine) == 1 and rq_state.idle())

        [message] = rows(pg_engine, "SELECT live_session_id FROM inbound_messages")
        [session] = rows(pg_engine, "SELECT status, last_activity_at FROM live_sessions")
        assert "live-1" == message["live_session_id"]
        assert ("active", started + timedelta(minutes=5)) == (
            session["status"],
            session["last_activity_at"],
        )
