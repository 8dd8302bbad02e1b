"""The customer-service window on the real Postgres (ADR 0021): the production sender
(``OutboxSender.run_once``) reads when each customer last wrote from ``inbound_messages`` (one
grouped read per batch, served by ``inbound_messages_tenant_id_from_e164_received_at_idx``) and
applies each tenant's policy, under a fixed clock.

WhatsApp refuses a free-form message more than 24 hours after the user's last inbound message
(Twilio error 63016: https://www.twilio.com/docs/api/errors/63016)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from adapters.memory.clock import FixedClock, SequentialIds
from adapters.memory.waiting import VirtualWaiter
from adapters.sqlalchemy.tables import dead_letter_jobs, messages_out
from adapters.system.executor import InlineExecutor
from application.inbound import Processed, process_inbound_message
from application.outbox import DEFAULT_LEASE, queue_outbound_message
from application.outbox_sender import OutboxSender
from application.tenants import add_tenant
from domain.live_sessions import InactivityWindow
from domain.retry import RetryPolicy
from domain.service_window import OUTSIDE_WINDOW_CODE, WindowPolicy
from ports.messaging import SendReceipt, SendRequest
from ports.unit_of_work import UnitOfWorkFactory

pytestmark = pytest.mark.timeout(120)

START = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)
TEMPLATE_SID = "HX" + "0123456789abcdef" * 2
WROTE = "+33612345678"
SILENT = "+33698765432"
NEW_FORM = "+5592981723241"
"""A Brazilian mobile as written today; it wrote from its WhatsApp ID without the ninth digit."""
OLD_FORM = "+559281723241"


class RecordingProvider:
    def __init__(self) -> None:
        self.requests: list[SendRequest] = []

    def sender_key(self, request: SendRequest) -> str:
        return request.from_phone or "+15005550006"

    def send(self, request: SendRequest) -> SendReceipt:
        self.requests.append(request)
        return SendReceipt(f"SM{len(self.requests):032d}")


def a_customer_writes(
    uow_factory: UnitOfWorkFactory, clock: FixedClock, ids: SequentialIds, tenant: str, sender: str
) -> None:
    payload = {
        "tenantId": tenant,
        "providerMessageId": f"SM{ids.new_id()}",
        "from": f"whatsapp:{sender}",
        "body": "I'll take the blue one",
        "correlationId": f"corr-{ids.new_id()}",
    }
    outcome = process_inbound_message(
        payload, uow_factory=uow_factory, clock=clock, ids=ids, window=InactivityWindow(45)
    )
    assert isinstance(outcome, Processed), outcome


def rows(engine: Engine) -> dict[tuple[str, str], tuple[str, str | None]]:
    with engine.connect() as connection:
        found = connection.execute(
            sa.select(
                messages_out.c.tenant_id,
                messages_out.c.to_phone,
                messages_out.c.status,
                messages_out.c.last_error_code,
            )
        )
        return {(t, p): (s, c) for t, p, s, c in found}


def test_each_tenant_s_policy_applies_to_its_customers_outside_the_window_only(
    pg_uow_factory: UnitOfWorkFactory, pg_engine: Engine
) -> None:
    clock, ids = FixedClock(START), SequentialIds("id")
    policies = {"shop-send": WindowPolicy.SEND, "shop-template": WindowPolicy.TEMPLATE}
    policies["shop-drop"] = WindowPolicy.DROP
    for tenant, policy in policies.items():
        add_tenant(
            uow_factory=pg_uow_factory,
            clock=clock,
            tenant_id=tenant,
            name=tenant,
            window_policy=policy,
            fallback_content_sid=TEMPLATE_SID,
        )
    for tenant in policies:
        a_customer_writes(pg_uow_factory, clock, ids, tenant, WROTE)
    clock.advance(timedelta(hours=24, minutes=1))
    a_customer_writes(pg_uow_factory, clock, ids, "shop-drop", OLD_FORM)
    clock.advance(timedelta(hours=23, minutes=59))
    a_customer_writes(pg_uow_factory, clock, ids, "shop-template", WROTE)
    for tenant in policies:
        for to in (WROTE, SILENT, NEW_FORM):
            queue_outbound_message(
                uow_factory=pg_uow_factory,
                tenant_id=tenant,
                to=to,
                body=f"{tenant} to {to}",
                correlation_id=f"corr-{ids.new_id()}",
                clock=clock,
                ids=ids,
            )
    provider = RecordingProvider()
    sender = OutboxSender(
        uow_factory=pg_uow_factory,
        provider=provider,
        clock=clock,
        ids=ids,
        policy=RetryPolicy(),
        lease=DEFAULT_LEASE,
        batch_size=20,
        concurrency=20,
        poll_interval=5.0,
        executor=InlineExecutor(),
        waiter=VirtualWaiter(clock),
    )

    report = sender.run_once()

    sent = {r.body: (r.content_sid, r.content_variables) for r in provider.requests}
    template = (TEMPLATE_SID, {"1": f"shop-template to {SILENT}"})
    assert (9, 7, 2) == (report.claimed, report.sent, report.dead)
    assert {
        f"shop-send to {WROTE}": (None, None),  # 48 h since it wrote: sent as written anyway
        f"shop-send to {SILENT}": (None, None),
        f"shop-send to {NEW_FORM}": (None, None),
        f"shop-template to {WROTE}": (None, None),  # wrote again just now: inside
        f"shop-template to {SILENT}": template,
        f"shop-template to {NEW_FORM}": (TEMPLATE_SID, {"1": f"shop-template to {NEW_FORM}"}),
        f"shop-drop to {NEW_FORM}": (None, None),  # wrote 23 h 59 min ago, in its older form
    } == sent
    stored = rows(pg_engine)
    assert ("dead", OUTSIDE_WINDOW_CODE) == stored[("shop-drop", WROTE)]
    assert ("dead", OUTSIDE_WINDOW_CODE) == stored[("shop-drop", SILENT)]
    with pg_engine.connect() as connection:
        codes = connection.execute(sa.select(dead_letter_jobs.c.error_code)).scalars().all()
    assert [OUTSIDE_WINDOW_CODE] * 2 == codes


def test_the_last_inbound_read_is_served_by_the_index(
    pg_uow_factory: UnitOfWorkFactory, pg_engine: Engine
) -> None:
    with pg_engine.connect() as connection:
        connection.execute(sa.text("SET enable_seqscan = off"))
        plan = connection.execute(
            sa.text(
                "EXPLAIN SELECT tenant_id, from_e164, max(received_at) FROM inbound_messages"
                " WHERE tenant_id IN ('shop-a') AND from_e164 IN ('+33612345678')"
                " GROUP BY tenant_id, from_e164"
            )
        ).scalars()
        text = "\n".join(plan)

    assert "inbound_messages_tenant_id_from_e164_received_at_idx" in text
