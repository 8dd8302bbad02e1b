"""OutboxRepository contract for templates, media and expiry (issue 15 §2, §4, §6): each field
reads back as written, through a claim too, on memory, SQLite and Postgres; ``expired`` is a
stored, counted, terminal status."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.outbox import DeliveryFailure, OutboxMessage, OutboxStatus
from domain.retry import RetryPolicy
from ports.unit_of_work import UnitOfWorkFactory
from tests.contract.builders import CLIENT_PHONE, T0, at, seed

LEASE = timedelta(seconds=60)
TEMPLATE = "HX" + "b" * 32
PHOTO = "https://shop.example/robe.jpg"


@pytest.fixture
def shop(uow_factory: UnitOfWorkFactory) -> UnitOfWorkFactory:
    seed(uow_factory, "shop-a")
    return uow_factory


_RECIPIENTS: dict[str, str] = {}


def recipient(message_id: str) -> str:
    """A recipient of its own per message id: one claim then holds every message (a recipient's
    messages are claimed one at a time, ADR 0020)."""
    return _RECIPIENTS.setdefault(message_id, f"{CLIENT_PHONE[:-3]}{len(_RECIPIENTS):03d}")


def message(message_id: str, body: str = "", **content: object) -> OutboxMessage:
    return OutboxMessage.new(
        id=message_id,
        tenant_id="shop-a",
        to_phone=recipient(message_id),
        body=body,
        correlation_id=f"corr-{message_id}",
        now=T0,
        from_phone="+14155238886",
        **content,  # type: ignore[arg-type]
    )


def write(uow_factory: UnitOfWorkFactory, *messages: OutboxMessage) -> None:
    with uow_factory() as uow:
        for m in messages:
            uow.outbox.add(m)
        uow.commit()


def get(uow_factory: UnitOfWorkFactory, message_id: str) -> OutboxMessage:
    with uow_factory() as uow:
        stored = uow.outbox.get("shop-a", message_id)
    assert stored is not None
    return stored


def claim(uow_factory: UnitOfWorkFactory) -> list[OutboxMessage]:
    with uow_factory() as uow:
        claimed = list(uow.outbox.claim_due(at(1), LEASE, 10))
        uow.commit()
    return claimed


class TestContentReadsBackAsWritten:
    def test_a_template_and_its_variables(self, shop: UnitOfWorkFactory) -> None:
        written = message(
            "m1", content_sid=TEMPLATE, content_variables={"1": "Robe", "2": "39 €, réservé"}
        )
        write(shop, written)

        stored = get(shop, "m1")

        assert written == stored
        assert (TEMPLATE, {"1": "Robe", "2": "39 €, réservé"}, "") == (
            stored.content_sid,
            stored.content_variables,
            stored.body,
        )

    def test_media_urls(self, shop: UnitOfWorkFactory) -> None:
        write(shop, message("m1", "La robe", media_urls=[PHOTO]))

        assert (PHOTO,) == get(shop, "m1").media_urls

    def test_no_media_reads_back_as_none(self, shop: UnitOfWorkFactory) -> None:
        write(shop, message("m1", "Bonjour"))

        stored = get(shop, "m1")
        assert ((), None, None, None) == (
            stored.media_urls,
            stored.content_sid,
            stored.content_variables,
            stored.expires_at,
        )

    def test_the_expiry(self, shop: UnitOfWorkFactory) -> None:
        write(shop, message("m1", "Réservé 10 min", expires_at=T0 + timedelta(minutes=10)))

        assert T0 + timedelta(minutes=10) == get(shop, "m1").expires_at

    def test_a_claim_carries_every_field(self, shop: UnitOfWorkFactory) -> None:
        write(
            shop,
            message(
                "m1",
                content_sid=TEMPLATE,
                content_variables={"1": "Robe"},
                expires_at=at(600),
            ),
            message("m2", "La robe", media_urls=[PHOTO]),
        )

        claimed = {m.id: m for m in claim(shop)}

        assert (TEMPLATE, {"1": "Robe"}, at(600)) == (
            claimed["m1"].content_sid,
            claimed["m1"].content_variables,
            claimed["m1"].expires_at,
        )
        assert (PHOTO,) == claimed["m2"].media_urls


class TestExpiredIsStored:
    def test_an_expired_claim_is_stored_expired_counted_and_never_claimed_again(
        self, shop: UnitOfWorkFactory
    ) -> None:
        write(shop, message("m1", "x", expires_at=at(1)), message("m2", "y"))
        (first, _) = sorted(claim(shop), key=lambda m: m.id)
        first.expire(at(2))
        with shop() as uow:
            assert [True] == uow.outbox.save_outcomes([first])
            uow.commit()

        with shop() as uow:
            counts = uow.outbox.count_by_status()
            again = list(uow.outbox.claim_due(at(3600), LEASE, 10))
        stored = get(shop, "m1")
        assert (OutboxStatus.EXPIRED, "expired", None) == (
            stored.status,
            stored.last_error_code,
            stored.locked_until,
        )
        assert (1, 1) == (counts[OutboxStatus.EXPIRED], counts[OutboxStatus.SENDING])
        assert ["m2"] == [m.id for m in again]  # its lease passed; m1 stays expired

    def test_the_expiry_event_is_stored_with_the_outcome(self, shop: UnitOfWorkFactory) -> None:
        write(shop, message("m1", "x", expires_at=at(1)))
        (claimed,) = claim(shop)
        claimed.expire(at(2))
        with shop() as uow:
            assert uow.outbox.save_outcome(claimed)
            uow.commit()

        with shop() as uow:
            events = uow.events.list(tenant_id="shop-a")
        assert [
            (
                "message.expired",
                "shop-a",
                "m1",
                {"attempts": 1, "expiresAt": at(1).isoformat()},
                "corr-m1",
            )
        ] == list(events)


class TestAClaimTypesEveryColumnByName:
    def test_a_rate_limited_message_keeps_when_its_rate_limit_began_through_a_claim(
        self, shop: UnitOfWorkFactory
    ) -> None:
        write(shop, message("m1", "x"))
        (claimed,) = claim(shop)
        limited = DeliveryFailure(transient=True, message="429", code="20429", rate_limited=True)
        claimed.record_failure(limited, at(1), RetryPolicy(), "dl-1")
        with shop() as uow:
            assert uow.outbox.save_outcome(claimed)
            uow.commit()

        with shop() as uow:
            (again,) = uow.outbox.claim_due(at(3600), LEASE, 10)
            uow.commit()

        assert at(1) == again.rate_limited_since
