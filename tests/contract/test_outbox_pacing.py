"""OutboxRepository contract: optional per-recipient pacing (ADR 0025).

WhatsApp limits how often one business number may message one user (the "pair rate limit",
about one message every 6 seconds after a burst; Meta error 131056, "pair rate limit hit":
https://developers.facebook.com/docs/whatsapp/cloud-api/overview#pair-rate-limits and
https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes).
With ``recipient_gap`` above 0 a message is not claimed until that long after the last message
sent to its ``(tenant, to_phone)``; other recipients are never held back; 0 (the default) changes
nothing. Under the fixed clock of the builders (``at``)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from domain.outbox import OutboxMessage
from ports.unit_of_work import UnitOfWorkFactory
from tests.contract.builders import at, outbox, seed

LEASE = timedelta(seconds=60)
GAP = timedelta(seconds=6)
OTHER = "+33610009999"


@pytest.fixture
def shops(uow_factory: UnitOfWorkFactory) -> UnitOfWorkFactory:
    seed(uow_factory, "shop-a", "shop-b")
    return uow_factory


def write(uow_factory: UnitOfWorkFactory, *messages: OutboxMessage) -> None:
    with uow_factory() as uow:
        for message in messages:
            uow.outbox.add(message)
        uow.commit()


def claim(uow_factory: UnitOfWorkFactory, now: datetime, gap: timedelta | None = GAP) -> list[str]:
    with uow_factory() as uow:
        if gap is None:  # the port's default
            claimed = uow.outbox.claim_due(now, LEASE, 10)
        else:
            claimed = uow.outbox.claim_due(now, LEASE, 10, gap)
        uow.commit()
    return sorted(m.id for m in claimed)


def send_first(uow_factory: UnitOfWorkFactory, now: datetime, gap: timedelta | None) -> None:
    """Claim the head of shop-a's customer and record it sent at ``now``."""
    with uow_factory() as uow:
        (first,) = uow.outbox.claim_due(now, LEASE, 1, gap or timedelta(0))
        uow.commit()
    first.mark_sent(f"SM-{first.id}", now)
    with uow_factory() as uow:
        assert uow.outbox.save_outcome(first)
        uow.commit()


class TestRecipientPacing:
    def test_the_next_message_waits_until_the_gap_has_passed_since_the_last_send(
        self, shops: UnitOfWorkFactory
    ) -> None:
        write(shops, outbox("shop-a", "m1", now=at(0)), outbox("shop-a", "m2", now=at(1)))
        send_first(shops, at(10), GAP)

        assert [] == claim(shops, at(10) + GAP - timedelta(seconds=1))
        assert ["m2"] == claim(shops, at(10) + GAP)

    def test_other_recipients_are_not_held_back(self, shops: UnitOfWorkFactory) -> None:
        write(shops, outbox("shop-a", "m1", now=at(0)), outbox("shop-a", "m2", now=at(1)))
        write(shops, outbox("shop-a", "o1", now=at(2), to=OTHER))
        write(shops, outbox("shop-b", "b1", now=at(3)))  # the same number in another tenant
        send_first(shops, at(10), GAP)

        assert ["b1", "o1"] == claim(shops, at(11))

    def test_a_recipient_never_sent_anything_is_claimed_at_once(
        self, shops: UnitOfWorkFactory
    ) -> None:
        write(shops, outbox("shop-a", "m1", now=at(0)))

        assert ["m1"] == claim(shops, at(0))

    def test_a_send_older_than_the_gap_holds_nothing_back(self, shops: UnitOfWorkFactory) -> None:
        write(shops, outbox("shop-a", "m1", now=at(0)))
        send_first(shops, at(10), GAP)
        write(shops, outbox("shop-a", "m2", now=at(100)))

        assert ["m2"] == claim(shops, at(100))

    @pytest.mark.parametrize("gap", [None, timedelta(0)], ids=["default", "zero"])
    def test_no_gap_releases_the_next_message_as_soon_as_the_first_is_sent(
        self, shops: UnitOfWorkFactory, gap: timedelta | None
    ) -> None:
        write(shops, outbox("shop-a", "m1", now=at(0)), outbox("shop-a", "m2", now=at(1)))
        send_first(shops, at(10), gap)

        assert ["m2"] == claim(shops, at(10), gap)
