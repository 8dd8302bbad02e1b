"""One dead letter however often, and however concurrently, a rejected job runs (issue 11 §1,
ADR 0010), on the real Postgres: the record's conditional write serialises the rejections of one
message, the losers read the winner's dead letter."""

from __future__ import annotations

from datetime import UTC, datetime

from adapters.memory.clock import FixedClock
from adapters.sqlalchemy.unit_of_work import SqlUnitOfWorkFactory
from adapters.system.clock import TimeOrderedIds
from application.inbound import Rejected, RejectReason, reject_inbound
from domain.inbound import InboundMessage, InboundRecord, InboundStatus
from tests.contract.builders import tenant
from tests.integration.test_persistence_concurrency import run_together

T0 = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)
PAYLOAD = {
    "tenantId": "shop-a",
    "providerMessageId": "SM" + "7" * 32,
    "from": "whatsapp:12",
    "body": "Je prends le 3 !",
    "correlationId": "corr-race",
    "receivedAt": T0.isoformat(),
}


class TestConcurrentRejections:
    def test_eight_concurrent_rejections_of_one_message_write_one_dead_letter(
        self, pg_uow_factory: SqlUnitOfWorkFactory
    ) -> None:
        with pg_uow_factory() as uow:
            uow.tenants.add(tenant("shop-a"))
            uow.inbound.add(
                InboundRecord(id="in-race", message=InboundMessage.from_payload(PAYLOAD, T0))
            )
            uow.commit()
        clock, ids = FixedClock(T0), TimeOrderedIds()

        outcomes = run_together(
            8,
            lambda _: reject_inbound(
                PAYLOAD,
                RejectReason.INVALID_PHONE,
                "invalid phone number",
                uow_factory=pg_uow_factory,
                clock=clock,
                ids=ids,
            ),
        )

        assert all(isinstance(o, Rejected) for o in outcomes), outcomes
        with pg_uow_factory() as uow:
            letters = uow.dead_letters.list(tenant_id="shop-a")
            record = uow.inbound.get("shop-a", PAYLOAD["providerMessageId"])
            events = uow.events.list(tenant_id="shop-a", event_type="inbound.rejected")
        assert 1 == len(letters)
        assert {letters[0].id} == {o.dead_letter_id for o in outcomes}
        assert 7 == sum(o.duplicate for o in outcomes)
        assert record is not None
        assert (InboundStatus.REJECTED, letters[0].id) == (record.status, record.dead_letter_id)
        assert 1 == len(events)
