"""DeadLetterRepository contract, operators' part: filter on replay, count for ``livesell stats``.

The same suite runs on memory, SQLite and Postgres (the ``uow_factory`` fixture).
"""

from __future__ import annotations

import pytest

from domain.dead_letters import DeadLetter, DeadLetterSource
from ports.unit_of_work import UnitOfWorkFactory
from tests.contract.builders import at, dead_letter, seed


@pytest.fixture
def shops(uow_factory: UnitOfWorkFactory) -> UnitOfWorkFactory:
    seed(uow_factory, "shop-a", "shop-b")
    return uow_factory


def keep(uow_factory: UnitOfWorkFactory, *dead_letters: DeadLetter) -> None:
    with uow_factory() as uow:
        for item in dead_letters:
            uow.dead_letters.add(item)
        uow.commit()


def replayed(letter: DeadLetter, seconds: float) -> DeadLetter:
    letter.mark_replayed(at(seconds))
    return letter


@pytest.fixture
def four_letters(shops: UnitOfWorkFactory) -> UnitOfWorkFactory:
    """dl-1 (10 s, replayed), dl-2 (20 s), dl-3 (30 s, replayed, no tenant), dl-4 (40 s, outbox)."""
    outbox_letter = dead_letter("shop-b", "dl-4", created_at=at(40))
    outbox_letter.source = DeadLetterSource.MESSAGES_OUT
    keep(
        shops,
        replayed(dead_letter("shop-a", "dl-1", created_at=at(10)), 50),
        dead_letter("shop-a", "dl-2", created_at=at(20)),
        replayed(dead_letter(None, "dl-3", created_at=at(30)), 60),
        outbox_letter,
    )
    return shops


class TestListingByReplay:
    def test_the_listing_keeps_only_dead_letters_not_replayed_when_asked(
        self, four_letters: UnitOfWorkFactory
    ) -> None:
        with four_letters() as uow:
            waiting = [d.id for d in uow.dead_letters.list(replayed=False)]
            done = [d.id for d in uow.dead_letters.list(replayed=True)]
            both = [d.id for d in uow.dead_letters.list()]

        assert ["dl-4", "dl-2"] == waiting
        assert ["dl-3", "dl-1"] == done
        assert ["dl-4", "dl-3", "dl-2", "dl-1"] == both

    def test_the_replay_filter_combines_with_tenant_source_since_and_limit(
        self, four_letters: UnitOfWorkFactory
    ) -> None:
        with four_letters() as uow:
            shop_a = [d.id for d in uow.dead_letters.list(tenant_id="shop-a", replayed=False)]
            webhook = [
                d.id
                for d in uow.dead_letters.list(
                    source=DeadLetterSource.WEBHOOK_PROCESSING, replayed=True
                )
            ]
            recent = [d.id for d in uow.dead_letters.list(since=at(25), replayed=False)]
            newest = [d.id for d in uow.dead_letters.list(replayed=False, limit=1)]

        assert ["dl-2"] == shop_a
        assert ["dl-3", "dl-1"] == webhook
        assert ["dl-4"] == recent
        assert ["dl-4"] == newest

    def test_a_letter_marked_replayed_leaves_the_waiting_list(
        self, four_letters: UnitOfWorkFactory
    ) -> None:
        with four_letters() as uow:
            letter = uow.dead_letters.get("dl-2")
            assert letter is not None
            letter.mark_replayed(at(70))
            uow.dead_letters.mark_replayed(letter)
            uow.commit()

        with four_letters() as uow:
            assert ["dl-4"] == [d.id for d in uow.dead_letters.list(replayed=False)]


class TestCounting:
    def test_counts_every_dead_letter_of_every_tenant(
        self, four_letters: UnitOfWorkFactory
    ) -> None:
        with four_letters() as uow:
            assert 4 == uow.dead_letters.count()

    def test_counts_those_created_at_or_after_a_moment(
        self, four_letters: UnitOfWorkFactory
    ) -> None:
        with four_letters() as uow:
            counts = [uow.dead_letters.count(since=at(s)) for s in (0, 20, 21, 40, 41)]

        assert [4, 3, 2, 1, 0] == counts

    def test_counts_by_replay(self, four_letters: UnitOfWorkFactory) -> None:
        with four_letters() as uow:
            counts = (
                uow.dead_letters.count(replayed=False),
                uow.dead_letters.count(replayed=True),
                uow.dead_letters.count(since=at(15), replayed=False),
            )

        assert (2, 2, 2) == counts

    def test_an_empty_table_counts_zero(self, shops: UnitOfWorkFactory) -> None:
        with shops() as uow:
            assert (0, 0) == (uow.dead_letters.count(), uow.dead_letters.count(since=at(0)))
