"""OutboxRepository delivery reports: forward only, the same whatever the arrival order, a later
``delivered``/``read`` winning over a failure whose code stays recorded, scoped to the tenant, and
never touching what the sender owns; the lookup by MessageSid. Runs on memory, SQLite and Postgres.

The statuses and their order come from Twilio's "Outbound Message Status in Status Callbacks"
(https://www.twilio.com/docs/messaging/guides/outbound-message-status-in-status-callbacks) and
the Message resource's status values (https://www.twilio.com/docs/sms/api/message-resource):
``scheduled`` and ``accepted`` are a Messaging Service's first statuses, ``canceled`` a canceled
scheduled message; the error codes are Twilio's (30008 unknown error, 63016 outside the 24-hour
window, 63024 invalid recipient).
"""

from __future__ import annotations

import itertools
import threading
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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

    def test_a_failure_keeps_the_providers_error_code_and_no_earlier_step_undoes_it(
        self, shops: UnitOfWorkFactory
    ) -> None:
        report(shops, S.SENT, 1)

        failed = report(shops, S.UNDELIVERED, 2, code="63016")
        later = [report(shops, s, 3) for s in (S.SENT, S.QUEUED, S.SENDING, S.FAILED)]

        assert failed
        assert [False, False, False, False] == later
        assert DeliveryReport(status=S.UNDELIVERED, updated_at=at(2), error_code="63016") == (
            stored(shops)
        )

    def test_a_read_after_a_failure_wins_and_the_code_stays_recorded(
        self, shops: UnitOfWorkFactory
    ) -> None:
        report(shops, S.FAILED, 1, code="63016")

        assert report(shops, S.READ, 2)
        assert DeliveryReport(status=S.READ, updated_at=at(2), error_code="63016") == (
            stored(shops)
        )

    def test_a_failure_after_a_read_records_its_code_and_keeps_the_read(
        self, shops: UnitOfWorkFactory
    ) -> None:
        report(shops, S.READ, 1)

        assert report(shops, S.UNDELIVERED, 2, code="30008")
        assert DeliveryReport(status=S.READ, updated_at=at(2), error_code="30008") == (
            stored(shops)
        )

    def test_of_two_codes_the_greater_is_kept_in_either_order(
        self, shops: UnitOfWorkFactory
    ) -> None:
        report(shops, S.FAILED, 1, code="63016")

        assert not report(shops, S.FAILED, 2, code="30008")
        assert report(shops, S.FAILED, 3, code="130001")
        assert "130001" == stored(shops).error_code  # type: ignore[union-attr]

    def test_messaging_service_statuses_are_stored_in_their_order(
        self, shops: UnitOfWorkFactory
    ) -> None:
        order = (S.SCHEDULED, S.ACCEPTED, S.QUEUED, S.SENT, S.PARTIALLY_DELIVERED)
        applied = [report(shops, s, n) for n, s in enumerate(order)]

        assert [True] * len(order) == applied
        assert not report(shops, S.SCHEDULED, 9)
        assert S.PARTIALLY_DELIVERED == stored(shops).status  # type: ignore[union-attr]

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


class TestFindingAMessageByItsSid:
    def test_a_sent_message_is_found_by_its_sid_within_its_tenant(
        self, shops: UnitOfWorkFactory
    ) -> None:
        mark_sent(shops, "SM" + "a" * 32)

        with shops() as uow:
            found = (
                uow.outbox.find_by_provider_message_id("shop-a", "SM" + "a" * 32),
                uow.outbox.find_by_provider_message_id("shop-b", "SM" + "a" * 32),
                uow.outbox.find_by_provider_message_id("shop-a", "SM" + "b" * 32),
            )

        assert ("m1", None, None) == found

    def test_the_system_lookup_names_the_tenant_and_the_message(
        self, shops: UnitOfWorkFactory
    ) -> None:
        mark_sent(shops, "SM" + "a" * 32)

        with shops() as uow:
            found = uow.outbox.locate_provider_message("SM" + "a" * 32)
            missing = uow.outbox.locate_provider_message("SM" + "b" * 32)

        assert (("shop-a", "m1"), None) == (found, missing)

    def test_a_message_not_yet_sent_has_no_sid_to_be_found_by(
        self, shops: UnitOfWorkFactory
    ) -> None:
        with shops() as uow:
            assert uow.outbox.locate_provider_message("") is None


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


REPORTS = st.tuples(st.sampled_from(list(S)), st.sampled_from([None, "30008", "63016", "63024"]))
_examples = itertools.count()
# Twilio's lifecycle, a delivered or read report last (it proves the customer got the message).
LIFECYCLE = [
    S.SCHEDULED,
    S.ACCEPTED,
    S.QUEUED,
    S.SENDING,
    S.SENT,
    S.PARTIALLY_DELIVERED,
    S.CANCELED,
    S.FAILED,
    S.UNDELIVERED,
    S.DELIVERED,
    S.READ,
]


class TestAnyArrivalOrder:
    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        st.lists(REPORTS, min_size=1, max_size=6).flatmap(
            lambda r: st.tuples(st.just(r), st.permutations(r))
        )
    )
    def test_every_order_of_the_same_reports_stores_the_same_status_and_code(
        self,
        shops: UnitOfWorkFactory,
        orders: tuple[
            list[tuple[DeliveryStatus, str | None]], list[tuple[DeliveryStatus, str | None]]
        ],
    ) -> None:
        finals = []
        for order in orders:
            message_id = f"p{next(_examples)}"
            with shops() as uow:
                uow.outbox.add(outbox("shop-a", message_id))
                uow.commit()
            for n, (status, code) in enumerate(order):
                report(shops, status, n, code=code, message_id=message_id)
            final = stored(shops, message_id=message_id)
            assert final is not None
            finals.append((final.status, final.error_code))

        reports = orders[0]
        codes = [c for s, c in reports if c is not None and s.is_failure]
        expected = (
            max((s for s, _ in reports), key=LIFECYCLE.index),
            max(codes, key=int) if codes else None,
        )
        assert [expected, expected] == finals


def mark_sent(uow_factory: UnitOfWorkFactory, sid: str) -> None:
    with uow_factory() as uow:
        (claimed,) = uow.outbox.claim_due(at(1), LEASE, 1)
        claimed.mark_sent(sid, at(2))
        assert uow.outbox.save_outcome(claimed)
        uow.commit()


def get(uow_factory: UnitOfWorkFactory) -> OutboxMessage:
    with uow_factory() as uow:
        message = uow.outbox.get("shop-a", "m1")
    assert message is not None
    return message
