"""TenantRepository contract."""

from __future__ import annotations

import pytest

from ports.repositories import AlreadyExists
from ports.unit_of_work import UnitOfWorkFactory
from tests.contract.builders import tenant


class TestTenants:
    def test_a_stored_tenant_reads_back_whole(self, uow_factory: UnitOfWorkFactory) -> None:
        stored = tenant("shop-a", whatsapp_number="+14155238886")
        with uow_factory() as uow:
            uow.tenants.add(stored)
            uow.commit()

        with uow_factory() as uow:
            assert stored == uow.tenants.get("shop-a")
            assert stored == uow.tenants.find_by_whatsapp_number("+14155238886")

    def test_an_unknown_tenant_is_none(self, uow_factory: UnitOfWorkFactory) -> None:
        with uow_factory() as uow:
            assert uow.tenants.get("nope") is None
            assert uow.tenants.find_by_whatsapp_number("+14155238886") is None

    def test_a_taken_id_already_exists_and_the_unit_stays_usable(
        self, uow_factory: UnitOfWorkFactory
    ) -> None:
        with uow_factory() as uow:
            uow.tenants.add(tenant("shop-a"))
            uow.commit()

        with uow_factory() as uow:
            with pytest.raises(AlreadyExists, match="already exists"):
                uow.tenants.add(tenant("shop-a"))
            uow.tenants.add(tenant("shop-b"))
            uow.commit()

        with uow_factory() as uow:
            assert uow.tenants.get("shop-b") is not None

    def test_a_taken_whatsapp_number_already_exists(self, uow_factory: UnitOfWorkFactory) -> None:
        with uow_factory() as uow:
            uow.tenants.add(tenant("shop-a", whatsapp_number="+14155238886"))
            uow.commit()

        with uow_factory() as uow, pytest.raises(AlreadyExists, match="WhatsApp number"):
            uow.tenants.add(tenant("shop-b", whatsapp_number="+14155238886"))

    def test_several_tenants_may_have_no_whatsapp_number(
        self, uow_factory: UnitOfWorkFactory
    ) -> None:
        with uow_factory() as uow:
            uow.tenants.add(tenant("shop-a"))
            uow.tenants.add(tenant("shop-b"))
            uow.commit()

        with uow_factory() as uow:
            assert uow.tenants.get("shop-a") is not None
            assert uow.tenants.get("shop-b") is not None

    def test_tenants_are_listed_by_id(self, uow_factory: UnitOfWorkFactory) -> None:
        with uow_factory() as uow:
            uow.tenants.add(tenant("shop-b"))
            uow.tenants.add(tenant("shop-a"))
            uow.commit()

        with uow_factory() as uow:
            assert ["shop-a", "shop-b"] == [t.id for t in uow.tenants.list()]


class TestTenantsOnMeta:
    def test_a_meta_tenant_reads_back_whole_and_is_found_by_its_phone_number_id(
        self, uow_factory: UnitOfWorkFactory
    ) -> None:
        stored = tenant("shop-m", "+15550001111", meta_phone_number_id="106540352242922")
        with uow_factory() as uow:
            uow.tenants.add(stored)
            uow.tenants.add(tenant("shop-t", "+14155238886"))
            uow.commit()

        with uow_factory() as uow:
            assert stored == uow.tenants.get("shop-m")
            assert stored == uow.tenants.find_by_meta_phone_number_id("106540352242922")
            assert "twilio" == uow.tenants.get("shop-t").provider  # type: ignore[union-attr]
            assert uow.tenants.find_by_meta_phone_number_id("999") is None

    def test_a_taken_meta_phone_number_id_already_exists(
        self, uow_factory: UnitOfWorkFactory
    ) -> None:
        with uow_factory() as uow:
            uow.tenants.add(tenant("shop-a", meta_phone_number_id="106540352242922"))
            uow.commit()

        with uow_factory() as uow, pytest.raises(AlreadyExists, match="Meta phone-number id"):
            uow.tenants.add(tenant("shop-b", meta_phone_number_id="106540352242922"))

    def test_several_tenants_may_have_no_meta_phone_number_id(
        self, uow_factory: UnitOfWorkFactory
    ) -> None:
        with uow_factory() as uow:
            uow.tenants.add(tenant("shop-a"))
            uow.tenants.add(tenant("shop-b"))
            uow.tenants.add(tenant("shop-c", meta_phone_number_id="123"))
            uow.commit()

        with uow_factory() as uow:
            assert 3 == len(uow.tenants.list())
