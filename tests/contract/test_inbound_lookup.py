"""InboundLookup contract: ``inbound_facts`` answers what ``inbound.get``,
``sellers.find_by_key`` and ``sessions.get_active`` answer, in one call (ADR 0022), and only for
the tenant it names."""

from __future__ import annotations

from domain.live_sessions import CloseReason
from domain.phones import phone_key
from ports.repositories import InboundFacts
from ports.unit_of_work import UnitOfWorkFactory
from tests.contract.builders import (
    CLIENT_PHONE,
    SELLER_PHONE,
    at,
    inbound,
    seed,
    seller,
    session,
)


def facts(uow_factory: UnitOfWorkFactory, tenant_id: str, phone: str) -> InboundFacts:
    with uow_factory() as uow:
        return uow.lookups.inbound_facts(tenant_id, "SM1", phone_key(phone))


class TestInboundFacts:
    def test_nothing_stored_yet_gives_three_nones(self, uow_factory: UnitOfWorkFactory) -> None:
        seed(uow_factory, "shop-a")

        assert InboundFacts(None, None, None) == facts(uow_factory, "shop-a", SELLER_PHONE)

    def test_the_record_the_seller_and_the_active_session_are_those_the_lookups_read(
        self, uow_factory: UnitOfWorkFactory
    ) -> None:
        seed(uow_factory, "shop-a")
        with uow_factory() as uow:
            uow.sellers.add(seller("shop-a", SELLER_PHONE))
            uow.sessions.add(session("shop-a", "live-1"))
            uow.inbound.add(inbound("shop-a", "SM1"))
            uow.commit()

        with uow_factory() as uow:
            expected = InboundFacts(
                uow.inbound.get("shop-a", "SM1"),
                uow.sellers.find_by_key("shop-a", phone_key(SELLER_PHONE)),
                uow.sessions.get_active("shop-a"),
            )
        got = facts(uow_factory, "shop-a", SELLER_PHONE)

        assert expected == got
        assert None not in got
        assert facts(uow_factory, "shop-a", CLIENT_PHONE).seller is None

    def test_another_tenants_rows_are_never_read(self, uow_factory: UnitOfWorkFactory) -> None:
        seed(uow_factory, "shop-a", "shop-b")
        with uow_factory() as uow:
            uow.sellers.add(seller("shop-b", SELLER_PHONE))
            uow.sessions.add(session("shop-b", "live-b"))
            uow.inbound.add(inbound("shop-b", "SM1"))
            uow.commit()

        assert InboundFacts(None, None, None) == facts(uow_factory, "shop-a", SELLER_PHONE)

    def test_a_closed_session_is_not_the_active_one(self, uow_factory: UnitOfWorkFactory) -> None:
        seed(uow_factory, "shop-a")
        with uow_factory() as uow:
            uow.sessions.add(session("shop-a", "live-1"))
            uow.commit()
        with uow_factory() as uow:
            active = uow.sessions.get_active("shop-a")
            assert active is not None
            active.close(at(minutes=60), CloseReason.INACTIVITY, "run")
            assert uow.sessions.close(active)
            uow.commit()

        assert facts(uow_factory, "shop-a", SELLER_PHONE).active_session is None
