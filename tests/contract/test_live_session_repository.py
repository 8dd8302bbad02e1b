"""LiveSessionRepository contract: one active session per tenant, conditional touch and close."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.live_sessions import CloseReason, SessionStatus
from domain.senders import SenderType
from ports.repositories import ActiveSessionExists
from ports.unit_of_work import UnitOfWorkFactory
from tests.contract.builders import T0, at, seed, session

W = timedelta(minutes=30)
"""The window of the stale scans below: a cutoff of ``at(minutes=30)`` is a scan at ``at(60)``."""


@pytest.fixture
def shops(uow_factory: UnitOfWorkFactory) -> UnitOfWorkFactory:
    seed(uow_factory, "shop-a", "shop-b")
    return uow_factory


def store(uow_factory: UnitOfWorkFactory, *sessions: object) -> None:
    with uow_factory() as uow:
        for item in sessions:
            uow.sessions.add(item)  # type: ignore[arg-type]
        uow.commit()


class TestOneActiveSessionPerTenant:
    def test_a_stored_session_reads_back_whole(self, shops: UnitOfWorkFactory) -> None:
        opened = session("shop-a")
        opened.touch(at(5), SenderType.SELLER)
        store(shops, opened)

        with shops() as uow:
            assert opened == uow.sessions.get("shop-a", "session-shop-a")
            assert opened == uow.sessions.get_active("shop-a")

    def test_a_second_active_session_is_refused_and_the_winner_can_be_read(
        self, shops: UnitOfWorkFactory
    ) -> None:
        store(shops, session("shop-a", "winner"))

        with shops() as uow:
            loser = session("shop-a", "loser")
            with pytest.raises(ActiveSessionExists):
                uow.sessions.add(loser)
            assert "winner" == uow.sessions.get_active("shop-a").id  # type: ignore[union-attr]
            uow.commit()

        with shops() as uow:
            assert uow.sessions.get("shop-a", "loser") is None
            assert ["live_session.opened"] == [e[0] for e in uow.events.list(tenant_id="shop-a")]

    def test_a_new_session_may_open_once_the_active_one_is_closed(
        self, shops: UnitOfWorkFactory
    ) -> None:
        store(shops, session("shop-a", "first"))
        with shops() as uow:
            first = uow.sessions.get_active("shop-a")
            assert first is not None
            first.close(at(60), CloseReason.INACTIVITY, "run-1")
            assert uow.sessions.close(first)
            uow.sessions.add(session("shop-a", "second", now=at(61)))
            uow.commit()

        with shops() as uow:
            assert "second" == uow.sessions.get_active("shop-a").id  # type: ignore[union-attr]
            assert SessionStatus.CLOSED == uow.sessions.get("shop-a", "first").status  # type: ignore[union-attr]

    def test_active_sessions_are_counted_per_tenant(self, shops: UnitOfWorkFactory) -> None:
        store(shops, session("shop-a"), session("shop-b"))

        with shops() as uow:
            assert {"shop-a": 1, "shop-b": 1} == uow.sessions.count_active()


class TestTouch:
    def test_touch_moves_last_activity_forward_and_counts_the_sender(
        self, shops: UnitOfWorkFactory
    ) -> None:
        store(shops, session("shop-a"))

        with shops() as uow:
            touched = uow.sessions.touch("shop-a", "session-shop-a", at(30), SenderType.CLIENT)
            uow.sessions.touch("shop-a", "session-shop-a", at(40), SenderType.SELLER)
            uow.commit()

        with shops() as uow:
            stored = uow.sessions.get("shop-a", "session-shop-a")
        assert touched is not None
        assert (at(30), 0, 1) == (
            touched.last_activity_at,
            touched.seller_message_count,
            touched.client_message_count,
        )
        assert stored is not None
        assert (at(40), 1, 1) == (
            stored.last_activity_at,
            stored.seller_message_count,
            stored.client_message_count,
        )

    def test_a_late_message_never_moves_last_activity_back(self, shops: UnitOfWorkFactory) -> None:
        store(shops, session("shop-a", now=at(100)))

        with shops() as uow:
            touched = uow.sessions.touch("shop-a", "session-shop-a", at(50), SenderType.CLIENT)

        assert touched is not None
        assert at(100) == touched.last_activity_at
        assert 1 == touched.client_message_count

    def test_touch_after_close_returns_none_and_never_reopens(
        self, shops: UnitOfWorkFactory
    ) -> None:
        store(shops, session("shop-a"))
        with shops() as uow:
            active = uow.sessions.get_active("shop-a")
            assert active is not None
            active.close(at(60), CloseReason.INACTIVITY, "run-1")
            uow.sessions.close(active)
            uow.commit()

        with shops() as uow:
            touched = uow.sessions.touch("shop-a", "session-shop-a", at(70), SenderType.SELLER)
            uow.commit()

        with shops() as uow:
            stored = uow.sessions.get("shop-a", "session-shop-a")
        assert touched is None
        assert stored is not None
        assert (SessionStatus.CLOSED, T0, 0) == (
            stored.status,
            stored.last_activity_at,
            stored.seller_message_count,
        )

    def test_touching_an_unknown_session_returns_none(self, shops: UnitOfWorkFactory) -> None:
        with shops() as uow:
            assert uow.sessions.touch("shop-a", "nope", at(1), SenderType.SELLER) is None


class TestClose:
    def test_close_stores_the_closure_and_its_event(self, shops: UnitOfWorkFactory) -> None:
        store(shops, session("shop-a"))
        with shops() as uow:
            active = uow.sessions.get_active("shop-a")
            assert active is not None
            active.close(at(minutes=50), CloseReason.INACTIVITY, "run-1")
            assert uow.sessions.close(active)
            uow.commit()

        with shops() as uow:
            stored = uow.sessions.get("shop-a", "session-shop-a")
            events = [e[0] for e in uow.events.list(tenant_id="shop-a")]
            assert uow.sessions.get_active("shop-a") is None
        assert stored is not None
        assert (SessionStatus.CLOSED, at(minutes=50), CloseReason.INACTIVITY) == (
            stored.status,
            stored.closed_at,
            stored.close_reason,
        )
        assert ["live_session.opened", "live_session.closed"] == events

    def test_close_after_a_touch_returns_false_and_stores_nothing(
        self, shops: UnitOfWorkFactory
    ) -> None:
        store(shops, session("shop-a"))
        with shops() as uow:
            read = uow.sessions.get_active("shop-a")
        with shops() as uow:
            uow.sessions.touch("shop-a", "session-shop-a", at(10), SenderType.CLIENT)
            uow.commit()

        assert read is not None
        read.close(at(minutes=50), CloseReason.INACTIVITY, "run-1")
        with shops() as uow:
            assert not uow.sessions.close(read)
            uow.commit()

        with shops() as uow:
            stored = uow.sessions.get_active("shop-a")
            events = [e[0] for e in uow.events.list(tenant_id="shop-a")]
        assert stored is not None
        assert ["live_session.opened"] == events

    def test_closing_twice_stores_one_closure(self, shops: UnitOfWorkFactory) -> None:
        store(shops, session("shop-a"))
        with shops() as uow:
            first = uow.sessions.get_active("shop-a")
        with shops() as uow:
            second = uow.sessions.get_active("shop-a")
        assert first is not None
        assert second is not None
        first.close(at(60), CloseReason.INACTIVITY, "run-1")
        second.close(at(61), CloseReason.INACTIVITY, "run-2")

        with shops() as uow:
            results = [uow.sessions.close(first), uow.sessions.close(second)]
            uow.commit()

        with shops() as uow:
            closed = uow.events.list(tenant_id="shop-a", event_type="live_session.closed")
        assert [True, False] == results
        assert 1 == len(closed)


class TestClaimStale:
    def test_only_active_sessions_idle_since_before_the_cutoff_are_claimed_oldest_first(
        self, shops: UnitOfWorkFactory
    ) -> None:
        seed(shops, "shop-c")
        store(
            shops,
            session("shop-a", "a", now=at(minutes=10)),
            session("shop-b", "b", now=at(minutes=0)),
            session("shop-c", "c", now=at(minutes=40)),
        )

        with shops() as uow:
            stale = uow.sessions.claim_stale(at(minutes=30), limit=10, window=W)

        assert ["b", "a"] == [s.id for s in stale]

    def test_the_claim_takes_at_most_the_limit(self, shops: UnitOfWorkFactory) -> None:
        store(shops, session("shop-a", "a"), session("shop-b", "b", now=at(1)))

        with shops() as uow:
            assert ["a"] == [
                s.id for s in uow.sessions.claim_stale(at(minutes=30), limit=1, window=W)
            ]

    def test_closed_sessions_are_never_claimed(self, shops: UnitOfWorkFactory) -> None:
        store(shops, session("shop-a"))
        with shops() as uow:
            active = uow.sessions.get_active("shop-a")
            assert active is not None
            active.close(at(1), CloseReason.INACTIVITY, "run-1")
            uow.sessions.close(active)
            uow.commit()

        with shops() as uow:
            assert [] == list(uow.sessions.claim_stale(at(minutes=60), limit=10, window=W))


class TestTenantIsolation:
    """Tenant B's session is invisible to, and unchanged by, every call made for tenant A."""

    def test_another_tenants_session_is_invisible(self, shops: UnitOfWorkFactory) -> None:
        store(shops, session("shop-b", "b"))

        with shops() as uow:
            assert uow.sessions.get("shop-a", "b") is None
            assert uow.sessions.get_active("shop-a") is None

    def test_touch_for_another_tenant_changes_nothing(self, shops: UnitOfWorkFactory) -> None:
        store(shops, session("shop-b", "b"))

        with shops() as uow:
            assert uow.sessions.touch("shop-a", "b", at(30), SenderType.SELLER) is None
            uow.commit()

        with shops() as uow:
            assert session("shop-b", "b") == uow.sessions.get("shop-b", "b")

    def test_close_under_another_tenant_changes_nothing(self, shops: UnitOfWorkFactory) -> None:
        store(shops, session("shop-b", "b"))
        with shops() as uow:
            forged = uow.sessions.get("shop-b", "b")
        assert forged is not None
        forged.tenant_id = "shop-a"
        forged.close(at(60), CloseReason.INACTIVITY, "run-1")

        with shops() as uow:
            assert not uow.sessions.close(forged)
            uow.commit()

        with shops() as uow:
            assert session("shop-b", "b") == uow.sessions.get("shop-b", "b")
            assert [] == list(uow.events.list(tenant_id="shop-a"))

    def test_one_tenants_active_session_does_not_block_anothers(
        self, shops: UnitOfWorkFactory
    ) -> None:
        store(shops, session("shop-b", "b"))
        store(shops, session("shop-a", "a"))

        with shops() as uow:
            assert "a" == uow.sessions.get_active("shop-a").id  # type: ignore[union-attr]
            assert "b" == uow.sessions.get_active("shop-b").id  # type: ignore[union-attr]
