"""Delivery reports (ADR 0011): the rule, on every order of every report sequence, and the use case
that matches a report to its message, by the ids in the URL or by MessageSid, on the in-memory
adapters.

Statuses and their lifecycle order come from Twilio's "Outbound Message Status in Status
Callbacks" (https://www.twilio.com/docs/messaging/guides/outbound-message-status-in-status-callbacks)
and the Message resource's status values (https://www.twilio.com/docs/sms/api/message-resource):
``queued`` (no Messaging Service) or ``accepted``/``scheduled`` (with one) first, ``canceled`` for a
canceled scheduled message, ``read`` for WhatsApp read receipts; ``receiving``/``received`` are
inbound. Error codes are Twilio's: 30008 (unknown error), 63016 (outside the 24-hour window),
63024 (invalid message recipient).
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from application.inbox import DeliveryIgnored, DeliveryRecorded, record_delivery_report
from domain.delivery import DeliveryReport, DeliveryStatus
from tests.unit.builders import START, World

S = DeliveryStatus
SHOP_A_NUMBER = "+14155238886"
SHOP_B_NUMBER = "+14155230000"
LEASE = timedelta(seconds=60)
# Twilio's lifecycle, written out here rather than read from the domain; a delivered or read
# report last: it proves the customer got the message, whatever a device reported before.
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
REPORT = st.tuples(st.sampled_from(list(S)), st.sampled_from([None, "30008", "63016", "63024"]))


def fold(reports: tuple[tuple[DeliveryStatus, str | None], ...]) -> list[DeliveryReport | None]:
    """The stored report after each report of ``reports`` arrives, in that order."""
    stored: DeliveryReport | None = None
    seen = []
    for n, (status, code) in enumerate(reports):
        merged = DeliveryReport.of(status, START + timedelta(seconds=n), code).merged_into(stored)
        stored = merged if merged is not None else stored
        seen.append(stored)
    return seen


class TestTheRule:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("queued", S.QUEUED),
            ("accepted", S.ACCEPTED),
            ("scheduled", S.SCHEDULED),
            ("canceled", S.CANCELED),
            ("partially_delivered", S.PARTIALLY_DELIVERED),
            (" READ ", S.READ),
            ("undelivered", S.UNDELIVERED),
            ("receiving", None),
            ("received", None),
            ("bogus", None),
        ],
    )
    def test_twilios_statuses_are_understood_and_inbound_ones_are_not_ours(
        self, raw: str, expected: S | None
    ) -> None:
        assert expected == S.from_provider(raw)

    def test_every_outbound_status_of_twilios_enum_is_known(self) -> None:
        twilio = {
            "queued", "sending", "sent", "failed", "delivered", "undelivered", "accepted",
            "scheduled", "read", "partially_delivered", "canceled",
        }  # fmt: skip

        assert twilio == {s.value for s in S}

    def test_an_error_code_is_kept_only_with_a_failure(self) -> None:
        assert (None, "63016", "30008") == (
            DeliveryReport.of(S.READ, START, "63016").error_code,
            DeliveryReport.of(S.UNDELIVERED, START, " 63016 ").error_code,
            DeliveryReport.of(S.FAILED, START, "30008").error_code,
        )

    def test_read_after_undelivered_wins_and_keeps_the_code(self) -> None:
        final = fold(((S.SENT, None), (S.UNDELIVERED, "63016"), (S.READ, None)))[-1]

        assert (S.READ, "63016") == (final.status, final.error_code)  # type: ignore[union-attr]

    def test_a_repeated_report_changes_nothing(self) -> None:
        stored = DeliveryReport.of(S.DELIVERED, START)

        assert DeliveryReport.of(S.DELIVERED, START + LEASE).merged_into(stored) is None

    @given(st.lists(REPORT, min_size=1, max_size=5))
    def test_every_order_of_a_report_sequence_ends_in_the_same_state(
        self, reports: list[tuple[DeliveryStatus, str | None]]
    ) -> None:
        codes = [code for status, code in reports if code is not None and status.is_failure]
        expected = (
            max((status for status, _ in reports), key=LIFECYCLE.index),
            max(codes, key=int) if codes else None,
        )

        finals = set()
        for order in itertools.permutations(reports):
            final = fold(order)[-1]
            assert final is not None
            finals.add((final.status, final.error_code))

        assert {expected} == finals

    @given(st.lists(REPORT, min_size=1, max_size=8))
    def test_nothing_ever_moves_back(
        self, reports: list[tuple[DeliveryStatus, str | None]]
    ) -> None:
        seen = [s for s in fold(tuple(reports)) if s is not None]

        for before, after in itertools.pairwise(seen):
            assert LIFECYCLE.index(before.status) <= LIFECYCLE.index(after.status)
            assert before.error_code is None or after.error_code is not None


@pytest.fixture
def shops(world: World) -> World:
    world.tenant("shop-a", whatsapp_number=SHOP_A_NUMBER)
    world.tenant("shop-b", whatsapp_number=SHOP_B_NUMBER)
    return world


def sent(world: World, tenant_id: str, sid: str) -> str:
    """A message of ``tenant_id`` that Twilio accepted as ``sid``."""
    outbox_id = world.queue(tenant_id=tenant_id)
    with world.uow_factory() as uow:
        (claimed,) = uow.outbox.claim_due(world.clock.now(), LEASE, 1)
        claimed.mark_sent(sid, world.clock.now())
        assert uow.outbox.save_outcome(claimed)
        uow.commit()
    return outbox_id


def by_sid(world: World, sid: str, status: str, sender: str | None = SHOP_A_NUMBER) -> object:
    return record_delivery_report(
        status=status,
        error_code=None,
        uow_factory=world.uow_factory,
        clock=world.clock,
        provider_message_id=sid,
        sender=f"whatsapp:{sender}" if sender else None,
    )


class TestAReportWithoutIds:
    def test_is_matched_by_message_sid_in_the_tenant_of_its_from_number(self, shops: World) -> None:
        outbox_id = sent(shops, "shop-a", "SM" + "a" * 32)

        outcome = by_sid(shops, "SM" + "a" * 32, "delivered")

        assert DeliveryRecorded(tenant_id="shop-a", outbox_id=outbox_id, status=S.DELIVERED) == (
            outcome
        )

    def test_without_a_known_from_number_is_matched_by_the_row_and_its_tenant(
        self, shops: World
    ) -> None:
        outbox_id = sent(shops, "shop-b", "SM" + "b" * 32)

        outcome = by_sid(shops, "SM" + "b" * 32, "read", sender=None)

        assert DeliveryRecorded(tenant_id="shop-b", outbox_id=outbox_id, status=S.READ) == outcome
        assert S.READ == shops.store.deliveries[outbox_id].status

    def test_never_writes_another_tenants_row_than_the_one_holding_the_sid(
        self, shops: World
    ) -> None:
        a = sent(shops, "shop-a", "SM" + "c" * 32)
        b = sent(shops, "shop-b", "SM" + "d" * 32)

        by_sid(shops, "SM" + "c" * 32, "read", sender=SHOP_B_NUMBER)

        assert (S.READ, None) == (
            shops.store.deliveries[a].status,
            shops.store.deliveries.get(b),
        )

    def test_an_unknown_sid_is_ignored_and_says_so(self, shops: World) -> None:
        sent(shops, "shop-a", "SM" + "e" * 32)

        assert DeliveryIgnored(reason="unknown_message") == by_sid(shops, "SM" + "f" * 32, "read")
