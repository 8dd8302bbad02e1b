"""Messages still waiting keep their live session open (ADR 0012): the inbox query
``InboundMessageRepository.has_waiting`` and the stale scan ``LiveSessionRepository.claim_stale``,
which leaves out every session with a record of its tenant still ``received`` inside its window
``[started_at, last_activity_at + W]``. On memory, SQLite and Postgres."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from domain.live_sessions import LiveSession
from domain.senders import SenderType
from ports.unit_of_work import UnitOfWorkFactory
from tests.contract.builders import at, inbound, seed, session

W = timedelta(minutes=30)
SCAN_CUTOFF = at(minutes=90)
"""A scan at ``at(120)``: a session opened at ``at(10)`` and idle since is stale."""


@pytest.fixture
def shops(uow_factory: UnitOfWorkFactory) -> UnitOfWorkFactory:
    seed(uow_factory, "shop-a", "shop-b")
    return uow_factory


def receive(uow_factory: UnitOfWorkFactory, tenant_id: str, sid: str, when: datetime) -> None:
    with uow_factory() as uow:
        uow.inbound.add(inbound(tenant_id, sid, received_at=when))
        uow.commit()


def process(uow_factory: UnitOfWorkFactory, tenant_id: str, sid: str) -> None:
    with uow_factory() as uow:
        record = uow.inbound.get(tenant_id, sid)
        assert record is not None
        record.mark_processed(
            from_e164="+33698765432", sender=SenderType.CLIENT, live_session_id=None, now=at(100)
        )
        assert uow.inbound.save(record)
        uow.commit()


def open_session(uow_factory: UnitOfWorkFactory, tenant_id: str = "shop-a") -> LiveSession:
    opened = session(tenant_id, f"live-{tenant_id}", now=at(minutes=10))
    with uow_factory() as uow:
        uow.sessions.add(opened)
        uow.commit()
    return opened


def claimed(uow_factory: UnitOfWorkFactory) -> list[str]:
    with uow_factory() as uow:
        return [s.id for s in uow.sessions.claim_stale(SCAN_CUTOFF, limit=10, window=W)]


class TestHasWaiting:
    def test_a_received_record_inside_the_range_is_waiting(self, shops: UnitOfWorkFactory) -> None:
        receive(shops, "shop-a", "SM1", at(minutes=20))

        with shops() as uow:
            assert uow.inbound.has_waiting("shop-a", at(minutes=10), at(minutes=40))

    @pytest.mark.parametrize("minutes", [10, 40])
    def test_both_ends_of_the_range_are_inside(
        self, shops: UnitOfWorkFactory, minutes: int
    ) -> None:
        receive(shops, "shop-a", "SM1", at(minutes=minutes))

        with shops() as uow:
            assert uow.inbound.has_waiting("shop-a", at(minutes=10), at(minutes=40))

    @pytest.mark.parametrize("minutes", [9.99, 40.01])
    def test_a_record_outside_the_range_is_not(
        self, shops: UnitOfWorkFactory, minutes: float
    ) -> None:
        receive(shops, "shop-a", "SM1", at(minutes=minutes))

        with shops() as uow:
            assert not uow.inbound.has_waiting("shop-a", at(minutes=10), at(minutes=40))

    def test_a_processed_record_is_not_waiting(self, shops: UnitOfWorkFactory) -> None:
        receive(shops, "shop-a", "SM1", at(minutes=20))
        process(shops, "shop-a", "SM1")

        with shops() as uow:
            assert not uow.inbound.has_waiting("shop-a", at(minutes=10), at(minutes=40))

    def test_another_tenants_record_is_not_waiting_here(self, shops: UnitOfWorkFactory) -> None:
        receive(shops, "shop-b", "SM1", at(minutes=20))

        with shops() as uow:
            assert not uow.inbound.has_waiting("shop-a", at(minutes=10), at(minutes=40))
            assert uow.inbound.has_waiting("shop-b", at(minutes=10), at(minutes=40))


class TestTheStaleScanLeavesWaitingSessionsOpen:
    def test_a_stale_session_with_nothing_waiting_is_claimed(
        self, shops: UnitOfWorkFactory
    ) -> None:
        open_session(shops)

        assert ["live-shop-a"] == claimed(shops)

    @pytest.mark.parametrize("minutes", [10, 25, 39.9])
    def test_a_message_waiting_inside_the_window_keeps_it_out_of_the_scan(
        self, shops: UnitOfWorkFactory, minutes: float
    ) -> None:
        open_session(shops)
        receive(shops, "shop-a", "SM1", at(minutes=minutes))

        assert [] == claimed(shops)

    @pytest.mark.parametrize("minutes", [9.9, 40.1])
    def test_a_message_waiting_outside_the_window_does_not(
        self, shops: UnitOfWorkFactory, minutes: float
    ) -> None:
        open_session(shops)
        receive(shops, "shop-a", "SM1", at(minutes=minutes))

        assert ["live-shop-a"] == claimed(shops)

    def test_once_the_message_is_processed_the_session_is_claimed(
        self, shops: UnitOfWorkFactory
    ) -> None:
        open_session(shops)
        receive(shops, "shop-a", "SM1", at(minutes=25))
        assert [] == claimed(shops)

        process(shops, "shop-a", "SM1")

        assert ["live-shop-a"] == claimed(shops)

    def test_the_window_follows_the_last_activity(self, shops: UnitOfWorkFactory) -> None:
        open_session(shops)
        with shops() as uow:
            assert uow.sessions.touch("shop-a", "live-shop-a", at(minutes=30), SenderType.CLIENT)
            uow.commit()
        receive(shops, "shop-a", "SM1", at(minutes=55))

        with shops() as uow:
            assert [] == list(uow.sessions.claim_stale(at(minutes=60), limit=10, window=W))

    def test_another_tenants_waiting_message_does_not_hold_this_session(
        self, shops: UnitOfWorkFactory
    ) -> None:
        open_session(shops, "shop-a")
        open_session(shops, "shop-b")
        receive(shops, "shop-b", "SM1", at(minutes=25))

        assert ["live-shop-a"] == claimed(shops)


class TestTouchAtTheReceivedInstant:
    def test_an_earlier_instant_moves_the_start_back_and_never_the_last_activity(
        self, shops: UnitOfWorkFactory
    ) -> None:
        open_session(shops)

        with shops() as uow:
            touched = uow.sessions.touch("shop-a", "live-shop-a", at(minutes=5), SenderType.SELLER)
            uow.commit()

        assert touched is not None
        assert (at(minutes=5), at(minutes=10), 1) == (
            touched.started_at,
            touched.last_activity_at,
            touched.seller_message_count,
        )
