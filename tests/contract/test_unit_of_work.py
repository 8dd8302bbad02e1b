"""The UnitOfWork contract: ``with uow:`` rolls back unless ``commit()``; events land with the
change that recorded them."""

from __future__ import annotations

import pytest

from ports.unit_of_work import UnitOfWorkFactory
from tests.contract.builders import T0, outbox, seed, session, tenant


class TestRollbackUnlessCommit:
    def test_leaving_without_commit_stores_nothing(self, uow_factory: UnitOfWorkFactory) -> None:
        with uow_factory() as uow:
            uow.tenants.add(tenant("shop-a"))

        with uow_factory() as uow:
            assert uow.tenants.get("shop-a") is None

    def test_commit_makes_the_writes_durable(self, uow_factory: UnitOfWorkFactory) -> None:
        with uow_factory() as uow:
            uow.tenants.add(tenant("shop-a"))
            uow.commit()

        with uow_factory() as uow:
            assert tenant("shop-a") == uow.tenants.get("shop-a")

    def test_an_exception_rolls_everything_back(self, uow_factory: UnitOfWorkFactory) -> None:
        seed(uow_factory, "shop-a")

        def fail_half_way() -> None:
            with uow_factory() as uow:
                uow.sessions.add(session("shop-a"))
                uow.outbox.add(outbox("shop-a"))
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            fail_half_way()

        with uow_factory() as uow:
            assert uow.sessions.get_active("shop-a") is None
            assert uow.outbox.get("shop-a", "out-shop-a") is None
            assert [] == uow.events.list(tenant_id="shop-a")

    def test_explicit_rollback_discards_and_the_unit_goes_on(
        self, uow_factory: UnitOfWorkFactory
    ) -> None:
        with uow_factory() as uow:
            uow.tenants.add(tenant("shop-a"))
            uow.rollback()
            uow.tenants.add(tenant("shop-b"))
            uow.commit()

        with uow_factory() as uow:
            assert uow.tenants.get("shop-a") is None
            assert uow.tenants.get("shop-b") is not None

    def test_work_after_a_commit_needs_its_own_commit(self, uow_factory: UnitOfWorkFactory) -> None:
        with uow_factory() as uow:
            uow.tenants.add(tenant("shop-a"))
            uow.commit()
            uow.tenants.add(tenant("shop-b"))

        with uow_factory() as uow:
            assert uow.tenants.get("shop-a") is not None
            assert uow.tenants.get("shop-b") is None

    def test_a_unit_of_work_can_be_used_again(self, uow_factory: UnitOfWorkFactory) -> None:
        uow = uow_factory()
        with uow:
            uow.tenants.add(tenant("shop-a"))
            uow.commit()
        with uow:
            assert uow.tenants.get("shop-a") is not None


class TestEventsLandWithTheirChange:
    def test_events_of_a_stored_aggregate_are_committed_with_it(
        self, uow_factory: UnitOfWorkFactory
    ) -> None:
        seed(uow_factory, "shop-a")

        with uow_factory() as uow:
            uow.sessions.add(session("shop-a"))
            uow.commit()

        with uow_factory() as uow:
            assert [
                (
                    "live_session.opened",
                    "shop-a",
                    "session-shop-a",
                    {"startedAt": T0.isoformat()},
                    "corr-shop-a",
                )
            ] == list(uow.events.list(tenant_id="shop-a"))

    def test_events_of_a_rolled_back_change_are_not_stored(
        self, uow_factory: UnitOfWorkFactory
    ) -> None:
        seed(uow_factory, "shop-a")

        with uow_factory() as uow:
            uow.sessions.add(session("shop-a"))

        with uow_factory() as uow:
            assert [] == uow.events.list(tenant_id="shop-a")

    def test_events_are_visible_inside_their_own_transaction(
        self, uow_factory: UnitOfWorkFactory
    ) -> None:
        seed(uow_factory, "shop-a")

        with uow_factory() as uow:
            uow.sessions.add(session("shop-a"))
            seen = [e[0] for e in uow.events.list(tenant_id="shop-a")]

        assert ["live_session.opened"] == seen
