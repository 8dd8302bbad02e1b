"""OutboxRepository delivery reports: forward only, final states final, scoped to the tenant, and
never touching what the sender owns. Runs on memory, SQLite and Postgres."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from domain.delivery import DeliveryReport, DeliveryStatus
from domain.outbox import OutboxMessage, OutboxStatus
from ports.unit_of_work import UnitOfWorkFactory
from tests.contract.builders import T0, at, outbox, seed

S = DeliveryStatus
LEASE = timedelta(seconds=60)


@pytest.fixture
def shops(uow_factory: UnitOfWorkFactory) -> UnitOfWorkFactory:
    seed(uow_factory, "shop-a", "shop-b")
    with uow_factory() as uow:
        uow.outbox.add(outbox("shop-a", "m1"))
        uow.commit()
    return uow_factory


def report(
    uow_factory: UnitOfWorkFactory,
    status: DeliveryStatus,
    seconds: float = 1,
    *,
    code: str | None = None,
    tenant_id: str = "shop-a",
    message_id: str = "m1",
) -> bool:
    with uow_factory() as uow:
        applied = uow.outbox.record_delivery_status(
            tenant_id, message_id, DeliveryReport.of(status, at(seconds), code)
        )
        uow.commit()
    return applied


def stored(
    uow_factory: UnitOfWorkFactory, tenant_id: str = "shop-a", message_id: str = "m1"
) -> DeliveryReport | None:
    with uow_factory() as uow:
        return uow.outbox.delivery_report(tenant_id, message_id)


class TestDeliveryReports:
    def test_a_message_has_no_report_until_the_first_callback(
        self, shops: UnitOfWorkFactory
    ) -> None:
        assert stored(shops) is None

    def test_a_report_is_stored_with_its_time(self, shops: UnitOfWorkFactory) -> None:
        applied = report(shops, S.SENT, 3)

        assert applied
        assert DeliveryReport(status=S.SENT, updated_at=at(3)) == stored(shops)

    def test_the_status_moves_forward_through_each_step(self, shops: UnitOfWorkFactory) -> None:
        applied = [report(shops, s, n) for n, s in enumerate((S.QUEUED, S.SENT, S.DELIVERED))]
        applied.append(report(shops, S.READ, 9))

        assert [True, True, True, True] == applied
        assert DeliveryReport(status=S.READ, updated_at=at(9)) == stored(shops)

    def test_a_late_report_of_an_earlier_status_changes_nothing(
        self, shops: UnitOfWorkFactory
    ) -> None:
        report(shops, S.READ, 5)

        applied = [report(shops, s, 6) for s in (S.DELIVERED, S.SENT, S.QUEUED, S.SENDING)]

        assert [False, False, False, False] == applied
        assert DeliveryReport(status=S.READ, updated_at=at(5)) == stored(shops)

    def test_a_repeated_report_changes_nothing(self, shops: UnitOfWorkFactory) -> None:
        report(shops, S.DELIVERED, 2)

        assert not report(shops, S.DELIVERED, 8)
        assert at(2) == stored(shops).updated_at  # type: ignore[union-attr]

    def test_a_failure_is_final_and_keeps_the_providers_error_code(
        self, shops: UnitOfWorkFactory
    ) -> None:
        report(shops, S.SENT, 1)

        failed = report(shops, S.UNDELIVERED, 2, code="63016")
        later = [report(shops, s, 3, code="30008") for s in (S.DELIVERED, S.READ, S.FAILED)]

        assert failed
        assert [False, False, False] == later
        assert DeliveryReport(status=S.UNDELIVERED, updated_at=at(2), error_code="63016") == (
            stored(shops)
        )

    def test_a_report_for_another_tenants_message_changes_nothing(
        self, shops: UnitOfWorkFactory
    ) -> None:
        applied = report(shops, S.DELIVERED, tenant_id="shop-b")

        assert not applied
        assert stored(shops) is None
        assert stored(shops, tenant_id="shop-b") is None

    def test_a_report_for_an_unknown_message_changes_nothing(
        self, shops: UnitOfWorkFactory
    ) -> None:
        assert not report(shops, S.DELIVERED, message_id="nope")
        assert stored(shops, message_id="nope") is None

    def test_a_report_rolled_back_is_not_stored(self, shops: UnitOfWorkFactory) -> None:
        with shops() as uow:
            uow.outbox.record_delivery_status("shop-a", "m1", DeliveryReport.of(S.SENT, T0))

        assert stored(shops) is None


class TestReportsAndTheSender:
    def test_a_report_leaves_the_senders_columns_alone(self, shops: UnitOfWorkFactory) -> None:
        before = get(shops)

        report(shops, S.DELIVERED)

        assert before == get(shops)

    def test_the_senders_outcome_keeps_a_report_that_arrived_during_the_send(
        self, shops: UnitOfWorkFactory
    ) -> None:
        with shops() as uow:
            (claimed,) = uow.outbox.claim_due(at(1), LEASE, 1)
            uow.commit()
        report(shops, S.DELIVERED, 2)
        claimed.mark_sent("SM123", at(3))

        with shops() as uow:
            saved = uow.outbox.save_outcome(claimed)
            uow.commit()

        assert saved
        assert OutboxStatus.SENT == get(shops).status
        assert DeliveryReport(status=S.DELIVERED, updated_at=at(2)) == stored(shops)


class TestConcurrentReports:
    def test_racing_reports_end_at_the_furthest_status(self, shops: UnitOfWorkFactory) -> None:
        order = [S.READ, S.SENT, S.DELIVERED, S.QUEUED, S.SENDING, S.SENT, S.READ, S.DELIVERED]
        start = threading.Barrier(len(order))
        errors: list[BaseException] = []

        def send(status: DeliveryStatus) -> None:
            try:
                start.wait(5)
                report(shops, status, 1)
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=send, args=(s,)) for s in order]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)

        assert [] == errors
        assert S.READ == stored(shops).status  # type: ignore[union-attr]


def get(uow_factory: UnitOfWorkFactory) -> OutboxMessage:
    with uow_factory() as uow:
        message = uow.outbox.get("shop-a", "m1")
    assert message is not None
    return message
