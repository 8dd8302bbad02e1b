"""SellerDirectory contract: the sender-classification lookup."""

from __future__ import annotations

import pytest

from ports.repositories import AlreadyExists
from ports.unit_of_work import UnitOfWorkFactory
from tests.contract.builders import CLIENT_PHONE, SELLER_PHONE, seed, seller


class TestSellers:
    def test_a_seller_is_found_by_tenant_and_phone(self, uow_factory: UnitOfWorkFactory) -> None:
        seed(uow_factory, "shop-a")
        with uow_factory() as uow:
            uow.sellers.add(seller("shop-a", SELLER_PHONE))
            uow.commit()

        with uow_factory() as uow:
            assert seller("shop-a", SELLER_PHONE) == uow.sellers.find("shop-a", SELLER_PHONE)
            assert uow.sellers.find("shop-a", CLIENT_PHONE) is None

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

    def test_a_seller_of_an_unknown_tenant_is_refused(self, uow_factory: UnitOfWorkFactory) -> None:
        with uow_factory() as uow, pytest.raises(AlreadyExists, match="does not exist"):
            uow.sellers.add(seller("nope", SELLER_PHONE))


class TestTenantIsolation:
    def test_another_tenants_seller_is_invisible(self, uow_factory: UnitOfWorkFactory) -> None:
        seed(uow_factory, "shop-a", "shop-b")
        with uow_factory() as uow:
            uow.sellers.add(seller("shop-b", SELLER_PHONE))
            uow.commit()

        with uow_factory() as uow:
            assert uow.sellers.find("shop-a", SELLER_PHONE) is None
            assert [] == list(uow.sellers.list("shop-a"))

    def test_the_same_phone_may_sell_for_two_tenants(self, uow_factory: UnitOfWorkFactory) -> None:
        seed(uow_factory, "shop-a", "shop-b")
        with uow_factory() as uow:
            uow.sellers.add(seller("shop-b", SELLER_PHONE))
            uow.sellers.add(seller("shop-a", SELLER_PHONE))
            uow.commit()

        with uow_factory() as uow:
            assert "shop-a" == uow.sellers.find("shop-a", SELLER_PHONE).tenant_id  # type: ignore[union-attr]
            assert "shop-b" == uow.sellers.find("shop-b", SELLER_PHONE).tenant_id  # type: ignore[union-attr]
