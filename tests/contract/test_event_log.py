"""EventLog contract: events in insertion order, per tenant, with the tenant-less ones apart."""

from __future__ import annotations

import pytest

from domain.events import InboundRejected, MessageSent
from ports.unit_of_work import UnitOfWorkFactory
from tests.contract.builders import at, seed


def sent(tenant_id: str, subject: str) -> MessageSent:
    return MessageSent(
        tenant_id=tenant_id,
        subject_id=subject,
        correlation_id=f"corr-{subject}",
        occurred_at=at(1),
        provider_message_id=f"SM-{subject}",
        attempts=1,
    )


def rejected(tenant_id: str | None, subject: str) -> InboundRejected:
    return InboundRejected(
        tenant_id=tenant_id,
        subject_id=subject,
        correlation_id=f"corr-{subject}",
        occurred_at=at(2),
        reason="unknown_tenant",
        error="unknown tenant 'ghost'",
        dead_letter_id=f"dl-{subject}",
    )


@pytest.fixture
def shops(uow_factory: UnitOfWorkFactory) -> UnitOfWorkFactory:
    seed(uow_factory, "shop-a", "shop-b")
    return uow_factory


class TestEventLog:
    def test_events_are_listed_in_insertion_order_with_their_payload(
        self, shops: UnitOfWorkFactory
    ) -> None:
        with shops() as uow:
            uow.events.append([sent("shop-a", "m2"), rejected("shop-a", "SM9")])
            uow.events.append([sent("shop-a", "m1")])
            uow.commit()

        with shops() as uow:
            events = list(uow.events.list(tenant_id="shop-a"))

        assert [
            (
                "message.sent",
                "shop-a",
                "m2",
                {"providerMessageId": "SM-m2", "attempts": 1},
                "corr-m2",
            ),
            (
                "inbound.rejected",
                "shop-a",
                "SM9",
                {
                    "reason": "unknown_tenant",
                    "error": "unknown tenant 'ghost'",
                    "deadLetterId": "dl-SM9",
                },
                "corr-SM9",
            ),
            (
                "message.sent",
                "shop-a",
                "m1",
                {"providerMessageId": "SM-m1", "attempts": 1},
                "corr-m1",
            ),
        ] == events

    def test_events_are_filtered_by_type_and_limited(self, shops: UnitOfWorkFactory) -> None:
        with shops() as uow:
            uow.events.append([sent("shop-a", f"m{i}") for i in range(5)])
            uow.events.append([rejected("shop-a", "SM9")])
            uow.commit()

        with shops() as uow:
            first_two = [e[2] for e in uow.events.list(tenant_id="shop-a", limit=2)]
            rejections = [
                e[2] for e in uow.events.list(tenant_id="shop-a", event_type="inbound.rejected")
            ]

        assert ["m0", "m1"] == first_two
        assert ["SM9"] == rejections

    def test_an_event_without_a_tenant_is_listed_apart(self, shops: UnitOfWorkFactory) -> None:
        with shops() as uow:
            uow.events.append([rejected(None, "SM1"), sent("shop-a", "m1")])
            uow.commit()

        with shops() as uow:
            orphans = [e[2] for e in uow.events.list(tenant_id=None)]
            shop_a = [e[2] for e in uow.events.list(tenant_id="shop-a")]

        assert ["SM1"] == orphans
        assert ["m1"] == shop_a


class TestTenantIsolation:
    def test_a_tenant_sees_none_of_another_tenants_events(self, shops: UnitOfWorkFactory) -> None:
        with shops() as uow:
            uow.events.append([sent("shop-b", "m1"), rejected(None, "SM1")])
            uow.commit()

        with shops() as uow:
            assert [] == list(uow.events.list(tenant_id="shop-a"))
