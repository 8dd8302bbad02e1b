"""SellerDirectory contract: the sender-classification lookup, by the canonical key of the number
(``domain.phones.phone_key``, ADR 0012), unique per tenant."""

from __future__ import annotations

import pytest

from domain.errors import UnknownTenant
from domain.phones import phone_key
from ports.repositories import AlreadyExists
from ports.unit_of_work import UnitOfWorkFactory
from tests.contract.builders import CLIENT_PHONE, SELLER_PHONE, seed, seller


class TestSellers:
    def test_a_seller_is_found_by_tenant_and_key(self, uow_factory: UnitOfWorkFactory) -> None:
        seed(uow_factory, "shop-a")
        with uow_factory() as uow:
            uow.sellers.add(seller("shop-a", SELLER_PHONE))
            uow.commit()

        with uow_factory() as uow:
            assert seller("shop-a", SELLER_PHONE) == uow.sellers.find_by_key("shop-a", SELLER_PHONE)
            assert uow.sellers.find_by_key("shop-a", CLIENT_PHONE) is None

    def test_a_tenants_sellers_are_listed(self, uow_factory: UnitOfWorkFactory) -> None:
        seed(uow_factory, "shop-a")
        with uow_factory() as uow:
            uow.sellers.add(seller("shop-a", SELLER_PHONE))
            uow.sellers.add(seller("shop-a", CLIENT_PHONE))
            uow.commit()

        with uow_factory() as uow:
            phones = sorted(s.phone_e164 for s in uow.sellers.list("shop-a"))

        assert sorted([SELLER_PHONE, CLIENT_PHONE]) == phones

    def test_the_same_phone_twice_already_exists_and_the_unit_stays_usable(
        self, uow_factory: UnitOfWorkFactory
    ) -> None:
        seed(uow_factory, "shop-a")
        with uow_factory() as uow:
            uow.sellers.add(seller("shop-a", SELLER_PHONE))
            uow.commit()

        with uow_factory() as uow:
            with pytest.raises(AlreadyExists):
                uow.sellers.add(seller("shop-a", SELLER_PHONE, seller_id="other"))
            uow.sellers.add(seller("shop-a", CLIENT_PHONE))
            uow.commit()

        with uow_factory() as uow:
            assert 2 == len(uow.sellers.list("shop-a"))

    def test_a_seller_of_an_unknown_tenant_is_refused_naming_the_tenant(
        self, uow_factory: UnitOfWorkFactory
    ) -> None:
        seed(uow_factory, "shop-a")
        with uow_factory() as uow:
            with pytest.raises(UnknownTenant) as refused:
                uow.sellers.add(seller("nope", SELLER_PHONE))
            uow.sellers.add(seller("shop-a", SELLER_PHONE))
            uow.commit()

        assert "nope" == refused.value.tenant_id
        assert not isinstance(refused.value, AlreadyExists)
        with uow_factory() as uow:
            assert ["shop-a"] == [s.tenant_id for s in uow.sellers.list("shop-a")]


MEXICAN_WHATSAPP_FORM = "+5215512345678"
MEXICAN_NUMBER = "+525512345678"


class TestTheCanonicalKey:
    def test_the_key_is_stored_and_read_back(self, uow_factory: UnitOfWorkFactory) -> None:
        seed(uow_factory, "shop-a")
        with uow_factory() as uow:
            uow.sellers.add(seller("shop-a", MEXICAN_WHATSAPP_FORM))
            uow.commit()

        with uow_factory() as uow:
            [stored] = uow.sellers.list("shop-a")

        assert (MEXICAN_WHATSAPP_FORM, MEXICAN_NUMBER) == (stored.phone_e164, stored.phone_key)

    def test_a_seller_is_found_by_the_key_of_any_form_of_the_number(
        self, uow_factory: UnitOfWorkFactory
    ) -> None:
        seed(uow_factory, "shop-a")
        with uow_factory() as uow:
            uow.sellers.add(seller("shop-a", MEXICAN_NUMBER))
            uow.commit()

        with uow_factory() as uow:
            found = uow.sellers.find_by_key("shop-a", phone_key(MEXICAN_WHATSAPP_FORM))

        assert seller("shop-a", MEXICAN_NUMBER) == found

    def test_another_form_of_a_registered_number_already_exists(
        self, uow_factory: UnitOfWorkFactory
    ) -> None:
        seed(uow_factory, "shop-a")
        with uow_factory() as uow:
            uow.sellers.add(seller("shop-a", MEXICAN_NUMBER))
            uow.commit()

        with uow_factory() as uow:
            with pytest.raises(AlreadyExists):
                uow.sellers.add(seller("shop-a", MEXICAN_WHATSAPP_FORM, seller_id="other"))
            uow.sellers.add(seller("shop-a", CLIENT_PHONE))
            uow.commit()

        with uow_factory() as uow:
            assert [CLIENT_PHONE, MEXICAN_NUMBER] == sorted(
                s.phone_e164 for s in uow.sellers.list("shop-a")
            )

    def test_two_tenants_may_each_have_the_number_in_another_form(
        self, uow_factory: UnitOfWorkFactory
    ) -> None:
        seed(uow_factory, "shop-a", "shop-b")
        with uow_factory() as uow:
            uow.sellers.add(seller("shop-a", MEXICAN_NUMBER))
            uow.sellers.add(seller("shop-b", MEXICAN_WHATSAPP_FORM))
            uow.commit()

        with uow_factory() as uow:
            found = [uow.sellers.find_by_key(t, MEXICAN_NUMBER) for t in ("shop-a", "shop-b")]

        assert [MEXICAN_NUMBER, MEXICAN_WHATSAPP_FORM] == [s.phone_e164 for s in found if s]


class TestTenantIsolation:
    def test_another_tenants_seller_is_invisible(self, uow_factory: UnitOfWorkFactory) -> None:
        seed(uow_factory, "shop-a", "shop-b")
        with uow_factory() as uow:
            uow.sellers.add(seller("shop-b", SELLER_PHONE))
            uow.commit()

        with uow_factory() as uow:
            assert uow.sellers.find_by_key("shop-a", SELLER_PHONE) is None
            assert [] == list(uow.sellers.list("shop-a"))

    def test_the_same_phone_may_sell_for_two_tenants(self, uow_factory: UnitOfWorkFactory) -> None:
        seed(uow_factory, "shop-a", "shop-b")
        with uow_factory() as uow:
            uow.sellers.add(seller("shop-b", SELLER_PHONE))
            uow.sellers.add(seller("shop-a", SELLER_PHONE))
            uow.commit()

        with uow_factory() as uow:
            assert "shop-a" == uow.sellers.find_by_key("shop-a", SELLER_PHONE).tenant_id  # type: ignore[union-attr]
            assert "shop-b" == uow.sellers.find_by_key("shop-b", SELLER_PHONE).tenant_id  # type: ignore[union-attr]
