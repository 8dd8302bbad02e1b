"""InboundLookup contract: ``inbound_facts`` answers what ``inbound.get``,
``sellers.find_by_key`` and ``sessions.get_active`` answer, in one call (ADR 0022), and only for
the tenant it names."""

from __future__ import annotations

from domain.inbound import InboundRecord
from domain.live_sessions import CloseReason, SessionStatus
from domain.phones import phone_key
from domain.senders import SenderType
from domain.tenants import Tenant
from ports.repositories import InboundFacts, TouchedWrite
from ports.unit_of_work import UnitOfWorkFactory
from tests.contract.builders import (
    CLIENT_PHONE,
    SELLER_PHONE,
    at,
    inbound,
    seed,
    seller,
    session,
)


def facts(uow_factory: UnitOfWorkFactory, tenant_id: str, phone: str) -> InboundFacts:
    with uow_factory() as uow:
        return uow.lookups.inbound_facts(tenant_id, "SM1", phone_key(phone))


class TestInboundFacts:
    def test_nothing_stored_yet_gives_three_nones(self, uow_factory: UnitOfWorkFactory) -> None:
        seed(uow_factory, "shop-a")

        assert InboundFacts(None, None, None) == facts(uow_factory, "shop-a", SELLER_PHONE)

    def test_the_record_the_seller_and_the_active_session_are_those_the_lookups_read(
        self, uow_factory: UnitOfWorkFactory
    ) -> None:
        seed(uow_factory, "shop-a")
        with uow_factory() as uow:
            uow.sellers.add(seller("shop-a", SELLER_PHONE))
            uow.sessions.add(session("shop-a", "live-1"))
            uow.inbound.add(inbound("shop-a", "SM1"))
            uow.commit()

        with uow_factory() as uow:
            expected = InboundFacts(
                uow.inbound.get("shop-a", "SM1"),
                uow.sellers.find_by_key("shop-a", phone_key(SELLER_PHONE)),
                uow.sessions.get_active("shop-a"),
            )
        got = facts(uow_factory, "shop-a", SELLER_PHONE)

        assert expected == got
        assert None not in got
        assert facts(uow_factory, "shop-a", CLIENT_PHONE).seller is None

    def test_another_tenants_rows_are_never_read(self, uow_factory: UnitOfWorkFactory) -> None:
        seed(uow_factory, "shop-a", "shop-b")
        with uow_factory() as uow:
            uow.sellers.add(seller("shop-b", SELLER_PHONE))
            uow.sessions.add(session("shop-b", "live-b"))
            uow.inbound.add(inbound("shop-b", "SM1"))
            uow.commit()

        assert InboundFacts(None, None, None) == facts(uow_factory, "shop-a", SELLER_PHONE)

    def test_a_closed_session_is_not_the_active_one(self, uow_factory: UnitOfWorkFactory) -> None:
        seed(uow_factory, "shop-a")
        with uow_factory() as uow:
            uow.sessions.add(session("shop-a", "live-1"))
            uow.commit()
        with uow_factory() as uow:
            active = uow.sessions.get_active("shop-a")
            assert active is not None
            active.close(at(minutes=60), CloseReason.INACTIVITY, "run")
            assert uow.sessions.close(active)
            uow.commit()

        assert facts(uow_factory, "shop-a", SELLER_PHONE).active_session is None


class TestTenantAndFacts:
    def test_an_unknown_tenant_gives_none_and_three_nones(
        self, uow_factory: UnitOfWorkFactory
    ) -> None:
        seed(uow_factory, "shop-a")
        with uow_factory() as uow:
            got = uow.lookups.tenant_and_facts("shop-x", "SM1", phone_key(SELLER_PHONE))

        assert (None, InboundFacts(None, None, None)) == got

    def test_the_tenant_and_the_facts_are_those_the_lookups_read(
        self, uow_factory: UnitOfWorkFactory
    ) -> None:
        seed(uow_factory, "shop-a", "shop-b")
        with uow_factory() as uow:
            uow.sellers.add(seller("shop-a", SELLER_PHONE))
            uow.sessions.add(session("shop-a", "live-1"))
            uow.inbound.add(inbound("shop-a", "SM1"))
            uow.commit()

        with uow_factory() as uow:
            expected = (
                uow.tenants.get("shop-a"),
                uow.lookups.inbound_facts("shop-a", "SM1", phone_key(SELLER_PHONE)),
            )
            got = uow.lookups.tenant_and_facts("shop-a", "SM1", phone_key(SELLER_PHONE))
            other = uow.lookups.tenant_and_facts("shop-b", "SM1", phone_key(SELLER_PHONE))

        assert expected == got
        assert expected[0] is not None
        assert None not in got[1]
        assert (uow_tenant_id(other), InboundFacts(None, None, None)) == ("shop-b", other[1])


def uow_tenant_id(answer: tuple[Tenant | None, InboundFacts]) -> str | None:
    return answer[0].id if answer[0] is not None else None


def processed(record: InboundRecord, session_id: str | None, sender: SenderType) -> InboundRecord:
    record.mark_processed(
        from_e164=CLIENT_PHONE, sender=sender, live_session_id=session_id, now=at(30)
    )
    return record


class TestRecordTouching:
    """``record_touching``: the touch of ``sessions.touch`` and the write of ``inbound.add`` /
    ``save`` with the record's events, the write only where the touch found an active session."""

    def opened(self, uow_factory: UnitOfWorkFactory) -> None:
        seed(uow_factory, "shop-a")
        with uow_factory() as uow:
            uow.sessions.add(session("shop-a", "live-1"))
            uow.commit()

    def test_a_new_record_is_written_with_its_event_and_the_session_touched(
        self, uow_factory: UnitOfWorkFactory
    ) -> None:
        self.opened(uow_factory)
        record = processed(inbound("shop-a", "SM1"), "live-1", SenderType.CLIENT)
        with uow_factory() as uow:
            written = uow.lookups.record_touching(
                record, was=None, session_id="live-1", at=at(20), sender=SenderType.CLIENT
            )
            uow.commit()

        with uow_factory() as uow:
            stored = uow.inbound.get("shop-a", "SM1")
            live = uow.sessions.get("shop-a", "live-1")
            events = uow.events.list(tenant_id="shop-a", event_type="message.classified")
        assert TouchedWrite.WRITTEN is written
        assert stored is not None
        assert stored.is_processed
        assert ("live-1", CLIENT_PHONE) == (stored.live_session_id, stored.from_e164)
        assert live is not None
        assert (at(20), 1, 0) == (
            live.last_activity_at,
            live.client_message_count,
            live.seller_message_count,
        )
        assert [record.id] == [subject for _, _, subject, _, _ in events]

    def test_a_received_record_is_moved_to_processed_where_it_is_still_received(
        self, uow_factory: UnitOfWorkFactory
    ) -> None:
        self.opened(uow_factory)
        with uow_factory() as uow:
            uow.inbound.add(inbound("shop-a", "SM1"))
            uow.commit()
        with uow_factory() as uow:
            record = uow.inbound.get("shop-a", "SM1")
            assert record is not None
            was = record.state
            written = uow.lookups.record_touching(
                processed(record, "live-1", SenderType.SELLER),
                was=was,
                session_id="live-1",
                at=at(20),
                sender=SenderType.SELLER,
            )
            uow.commit()

        with uow_factory() as uow:
            stored = uow.inbound.get("shop-a", "SM1")
            live = uow.sessions.get("shop-a", "live-1")
        assert TouchedWrite.WRITTEN is written
        assert stored is not None
        assert stored.is_processed
        assert live is not None
        assert 1 == live.seller_message_count

    def test_a_closed_session_is_not_touched_and_nothing_is_written(
        self, uow_factory: UnitOfWorkFactory
    ) -> None:
        self.opened(uow_factory)
        with uow_factory() as uow:
            active = uow.sessions.get_active("shop-a")
            assert active is not None
            active.close(at(10), CloseReason.INACTIVITY, "run")
            assert uow.sessions.close(active)
            uow.commit()
        record = processed(inbound("shop-a", "SM1"), "live-1", SenderType.SELLER)

        with uow_factory() as uow:
            written = uow.lookups.record_touching(
                record, was=None, session_id="live-1", at=at(20), sender=SenderType.SELLER
            )
            uow.commit()

        with uow_factory() as uow:
            live = uow.sessions.get("shop-a", "live-1")
            stored = uow.inbound.get("shop-a", "SM1")
            events = uow.events.list(tenant_id="shop-a", event_type="message.classified")
        assert TouchedWrite.SESSION_GONE is written
        assert live is not None
        assert (SessionStatus.CLOSED, 0) == (live.status, live.seller_message_count)
        assert (None, []) == (stored, events)

    def test_a_record_stored_meanwhile_is_taken_and_a_rollback_leaves_the_session_untouched(
        self, uow_factory: UnitOfWorkFactory
    ) -> None:
        self.opened(uow_factory)
        with uow_factory() as uow:
            uow.inbound.add(inbound("shop-a", "SM1", "first"))
            uow.commit()
        record = processed(inbound("shop-a", "SM1", "second"), "live-1", SenderType.CLIENT)

        with uow_factory() as uow:
            written = uow.lookups.record_touching(
                record, was=None, session_id="live-1", at=at(20), sender=SenderType.CLIENT
            )

        with uow_factory() as uow:
            live = uow.sessions.get("shop-a", "live-1")
            stored = uow.inbound.get("shop-a", "SM1")
        assert TouchedWrite.RECORD_TAKEN is written
        assert live is not None
        assert 0 == live.client_message_count
        assert stored is not None
        assert ("first", False) == (stored.id, stored.is_processed)

    def test_a_record_moved_meanwhile_is_taken(self, uow_factory: UnitOfWorkFactory) -> None:
        self.opened(uow_factory)
        with uow_factory() as uow:
            uow.inbound.add(inbound("shop-a", "SM1"))
            uow.commit()
        with uow_factory() as uow:
            stale = uow.inbound.get("shop-a", "SM1")
            moved = uow.inbound.get("shop-a", "SM1")
        assert stale is not None
        assert moved is not None
        with uow_factory() as uow:
            was = moved.state
            assert uow.inbound.save(processed(moved, None, SenderType.CLIENT), was=was)
            uow.commit()

        with uow_factory() as uow:
            was = stale.state
            written = uow.lookups.record_touching(
                processed(stale, "live-1", SenderType.CLIENT),
                was=was,
                session_id="live-1",
                at=at(20),
                sender=SenderType.CLIENT,
            )

        with uow_factory() as uow:
            stored = uow.inbound.get("shop-a", "SM1")
        assert TouchedWrite.RECORD_TAKEN is written
        assert stored is not None
        assert stored.live_session_id is None
