"""The reads and writes behind the customer-service window (ADR 0021), on memory, SQLite and
Postgres: each tenant's window policy, and when each customer last wrote to a tenant."""

from __future__ import annotations

from datetime import datetime

import attrs
import pytest

from domain.inbound import InboundRecord
from domain.senders import SenderType
from domain.service_window import WindowPolicy
from ports.unit_of_work import UnitOfWorkFactory
from tests.contract.builders import CLIENT_PHONE, T0, at, inbound, seed, tenant

TEMPLATE_SID = "HX" + "0123456789abcdef" * 2
# Brazil: a mobile whose WhatsApp ID predates the ninth digit, and the number written today
# (ADR 0012, domain.phones.phone_key).
BR_OLD = "+559281723241"
BR_NEW = "+5592981723241"


def processed(
    tenant_id: str, provider_message_id: str, sender: str, received_at: datetime
) -> InboundRecord:
    """A processed record of a message ``sender`` wrote to the tenant at ``received_at``."""
    record = inbound(tenant_id, provider_message_id, received_at=received_at)
    message = attrs.evolve(record.message, from_address=f"whatsapp:{sender}")
    record = attrs.evolve(record, message=message)
    record.mark_processed(
        from_e164=sender, sender=SenderType.CLIENT, live_session_id=None, now=received_at
    )
    return record


def receive(uow_factory: UnitOfWorkFactory, *records: InboundRecord) -> None:
    with uow_factory() as uow:
        for record in records:
            uow.inbound.add(record)
        uow.commit()


class TestWindowPolicy:
    def test_a_tenant_s_policy_and_fallback_template_read_back_whole(
        self, uow_factory: UnitOfWorkFactory
    ) -> None:
        stored = attrs.evolve(
            tenant("shop-a"),
            window_policy=WindowPolicy.TEMPLATE,
            fallback_content_sid=TEMPLATE_SID,
            fallback_variable="2",
        )
        with uow_factory() as uow:
            uow.tenants.add(stored)
            uow.tenants.add(tenant("shop-b"))
            uow.commit()

        with uow_factory() as uow:
            assert stored == uow.tenants.get("shop-a")
            assert tenant("shop-b") == uow.tenants.get("shop-b")
        assert WindowPolicy.SEND is tenant("shop-b").window_policy

    def test_a_changed_policy_is_stored_and_nothing_else_changes(
        self, uow_factory: UnitOfWorkFactory
    ) -> None:
        seed(uow_factory, "shop-a")
        with uow_factory() as uow:
            before = uow.tenants.get("shop-a")
            assert before is not None
            changed = before.with_window_policy(WindowPolicy.DROP)
            assert uow.tenants.update_window_policy(changed)
            uow.commit()

        with uow_factory() as uow:
            assert changed == uow.tenants.get("shop-a")

    def test_the_policy_of_an_unknown_tenant_is_not_stored(
        self, uow_factory: UnitOfWorkFactory
    ) -> None:
        with uow_factory() as uow:
            assert not uow.tenants.update_window_policy(tenant("nope"))

    def test_tenants_are_read_many_at_once_unknown_ids_left_out(
        self, uow_factory: UnitOfWorkFactory
    ) -> None:
        seed(uow_factory, "shop-a", "shop-b", "shop-c")

        with uow_factory() as uow:
            found = uow.tenants.get_many({"shop-a", "shop-c", "nope"})
            assert {} == uow.tenants.get_many(set())
        assert {"shop-a", "shop-c"} == set(found)
        assert tenant("shop-c") == found["shop-c"]


class TestLastReceivedFrom:
    @pytest.fixture
    def shops(self, uow_factory: UnitOfWorkFactory) -> UnitOfWorkFactory:
        seed(uow_factory, "shop-a", "shop-b")
        return uow_factory

    def test_the_latest_message_of_each_customer_is_read_per_tenant(
        self, shops: UnitOfWorkFactory
    ) -> None:
        other = "+33611223344"
        receive(
            shops,
            processed("shop-a", "SM1", CLIENT_PHONE, at(minutes=1)),
            processed("shop-a", "SM2", CLIENT_PHONE, at(minutes=5)),
            processed("shop-a", "SM3", other, at(minutes=2)),
            processed("shop-b", "SM4", CLIENT_PHONE, at(minutes=9)),
        )

        with shops() as uow:
            last = uow.inbound.last_received_from(
                {("shop-a", CLIENT_PHONE), ("shop-a", other), ("shop-b", other)}
            )

        assert {
            ("shop-a", CLIENT_PHONE): at(minutes=5),
            ("shop-a", other): at(minutes=2),
        } == last

    def test_a_customer_who_never_wrote_is_left_out(self, shops: UnitOfWorkFactory) -> None:
        with shops() as uow:
            assert {} == uow.inbound.last_received_from({("shop-a", CLIENT_PHONE)})
            assert {} == uow.inbound.last_received_from(set())

    def test_a_message_from_another_form_of_the_number_counts(
        self, shops: UnitOfWorkFactory
    ) -> None:
        receive(shops, processed("shop-a", "SM1", BR_OLD, at(minutes=3)))

        with shops() as uow:
            last = uow.inbound.last_received_from({("shop-a", BR_NEW), ("shop-a", BR_OLD)})

        assert {("shop-a", BR_NEW): at(minutes=3), ("shop-a", BR_OLD): at(minutes=3)} == last

    def test_the_time_reads_back_as_aware_utc(self, shops: UnitOfWorkFactory) -> None:
        receive(shops, processed("shop-a", "SM1", CLIENT_PHONE, T0))

        with shops() as uow:
            [when] = uow.inbound.last_received_from({("shop-a", CLIENT_PHONE)}).values()

        assert (T0, T0.tzinfo) == (when, when.tzinfo)
