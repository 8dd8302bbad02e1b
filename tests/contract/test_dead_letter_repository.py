"""DeadLetterRepository contract: every rejected job kept whole, replayed once."""

from __future__ import annotations

import pytest

from domain.dead_letters import DeadLetterSource, as_json_payload
from ports.unit_of_work import UnitOfWorkFactory
from tests.contract.builders import at, dead_letter, seed


@pytest.fixture
def shops(uow_factory: UnitOfWorkFactory) -> UnitOfWorkFactory:
    seed(uow_factory, "shop-a", "shop-b")
    return uow_factory


def keep(uow_factory: UnitOfWorkFactory, *dead_letters: object) -> None:
    with uow_factory() as uow:
        for item in dead_letters:
            uow.dead_letters.add(item)  # type: ignore[arg-type]
        uow.commit()


class TestDeadLetters:
    def test_a_dead_letter_reads_back_whole_with_its_json_payload(
        self, shops: UnitOfWorkFactory
    ) -> None:
        keep(shops, dead_letter("shop-a", "dl-1"))

        with shops() as uow:
            assert dead_letter("shop-a", "dl-1") == uow.dead_letters.get("dl-1")

    def test_a_dead_letter_may_name_no_tenant(self, shops: UnitOfWorkFactory) -> None:
        keep(shops, dead_letter(None, "dl-1"), dead_letter("ghost-tenant", "dl-2"))

        with shops() as uow:
            assert dead_letter(None, "dl-1") == uow.dead_letters.get("dl-1")
            assert dead_letter("ghost-tenant", "dl-2") == uow.dead_letters.get("dl-2")

    def test_the_listing_is_newest_first_and_filtered(self, shops: UnitOfWorkFactory) -> None:
        outbox_letter = dead_letter("shop-a", "dl-3", created_at=at(30))
        outbox_letter.source = DeadLetterSource.MESSAGES_OUT
        keep(
            shops,
            dead_letter("shop-a", "dl-1", created_at=at(10)),
            dead_letter("shop-b", "dl-2", created_at=at(20)),
            outbox_letter,
            dead_letter(None, "dl-4", created_at=at(40)),
        )

        with shops() as uow:
            every = [d.id for d in uow.dead_letters.list()]
            shop_a = [d.id for d in uow.dead_letters.list(tenant_id="shop-a")]
            webhook = [
                d.id for d in uow.dead_letters.list(source=DeadLetterSource.WEBHOOK_PROCESSING)
            ]
            recent = [d.id for d in uow.dead_letters.list(since=at(20), limit=2)]

        assert ["dl-4", "dl-3", "dl-2", "dl-1"] == every
        assert ["dl-3", "dl-1"] == shop_a
        assert ["dl-4", "dl-2", "dl-1"] == webhook
        assert ["dl-4", "dl-3"] == recent

    def test_a_dead_letter_is_marked_replayed_once(self, shops: UnitOfWorkFactory) -> None:
        keep(shops, dead_letter("shop-a", "dl-1"))
        with shops() as uow:
            first = uow.dead_letters.get("dl-1")
        with shops() as uow:
            second = uow.dead_letters.get("dl-1")
        assert first is not None
        assert second is not None
        first.mark_replayed(at(60))
        second.mark_replayed(at(61))

        with shops() as uow:
            results = [
                uow.dead_letters.mark_replayed(first),
                uow.dead_letters.mark_replayed(second),
            ]
            uow.commit()

        with shops() as uow:
            stored = uow.dead_letters.get("dl-1")
        assert [True, False] == results
        assert stored is not None
        assert at(60) == stored.replayed_at

    def test_a_dead_letter_not_marked_by_the_caller_is_not_stored_as_replayed(
        self, shops: UnitOfWorkFactory
    ) -> None:
        keep(shops, dead_letter("shop-a", "dl-1"))

        with shops() as uow:
            assert not uow.dead_letters.mark_replayed(dead_letter("shop-a", "dl-1"))


class TestTenantIsolation:
    def test_a_tenants_listing_shows_no_other_tenants_dead_letters(
        self, shops: UnitOfWorkFactory
    ) -> None:
        keep(shops, dead_letter("shop-b", "dl-b"), dead_letter(None, "dl-none"))

        with shops() as uow:
            assert [] == list(uow.dead_letters.list(tenant_id="shop-a"))


class TestOpenDeadLetter:
    def test_the_newest_dead_letter_not_replayed_of_a_message_is_found(
        self, shops: UnitOfWorkFactory
    ) -> None:
        old = dead_letter("shop-a", "dl-old", created_at=at(1))
        new = dead_letter("shop-a", "dl-new", created_at=at(2))
        replayed = dead_letter("shop-a", "dl-replayed", created_at=at(3))
        replayed.mark_replayed(at(4))
        without_tenant = dead_letter(None, "dl-none", created_at=at(5))
        with shops() as uow:
            for item in (old, new, replayed, without_tenant):
                uow.dead_letters.add(item)
            uow.commit()

        source = DeadLetterSource.WEBHOOK_PROCESSING
        with shops() as uow:
            found = uow.dead_letters.find_open(source, "shop-a", "SM1")
            untenanted = uow.dead_letters.find_open(source, None, "SM1")
            other_tenant = uow.dead_letters.find_open(source, "shop-b", "SM1")
            other_message = uow.dead_letters.find_open(source, "shop-a", "SM2")
            other_source = uow.dead_letters.find_open(
                DeadLetterSource.MESSAGES_OUT, "shop-a", "SM1"
            )

        assert ("dl-new", "dl-none") == (
            getattr(found, "id", None),
            getattr(untenanted, "id", None),
        )
        assert (None, None, None) == (other_tenant, other_message, other_source)

    def test_a_payload_holding_nul_is_kept_with_nul_made_storable(
        self, shops: UnitOfWorkFactory
    ) -> None:
        item = dead_letter("shop-a", "dl-nul")
        item.payload = as_json_payload({"body": "a\x00b", "list": ["\x00"]})
        with shops() as uow:
            uow.dead_letters.add(item)
            uow.commit()

        with shops() as uow:
            stored = uow.dead_letters.get("dl-nul")
        assert stored is not None
        assert {"body": "a\ufffdb", "list": ["\ufffd"]} == stored.payload
