"""InboundMessageRepository contract: the durable inbox, idempotent per provider message id."""

from __future__ import annotations

import attrs
import pytest

from domain.inbound import InboundState, InboundStatus
from domain.inbound_content import InboundContent
from domain.senders import SenderType
from ports.repositories import DuplicateInboundMessage
from ports.unit_of_work import UnitOfWorkFactory
from tests.contract.builders import CLIENT_PHONE, T0, at, inbound, seed


@pytest.fixture
def shops(uow_factory: UnitOfWorkFactory) -> UnitOfWorkFactory:
    seed(uow_factory, "shop-a", "shop-b")
    return uow_factory


def receive(uow_factory: UnitOfWorkFactory, *records: object) -> None:
    with uow_factory() as uow:
        for record in records:
            uow.inbound.add(record)  # type: ignore[arg-type]
        uow.commit()


class TestRecording:
    def test_a_received_record_reads_back_whole(self, shops: UnitOfWorkFactory) -> None:
        receive(shops, inbound("shop-a", "SM1"))

        with shops() as uow:
            assert inbound("shop-a", "SM1") == uow.inbound.get("shop-a", "SM1")

    def test_a_processed_record_reads_back_with_its_classification_and_event(
        self, shops: UnitOfWorkFactory
    ) -> None:
        record = inbound("shop-a", "SM1")
        record.mark_processed(
            from_e164=CLIENT_PHONE, sender=SenderType.CLIENT, live_session_id=None, now=at(1)
        )
        receive(shops, record)

        with shops() as uow:
            stored = uow.inbound.get("shop-a", "SM1")
            events = uow.events.list(tenant_id="shop-a")
        assert record == stored
        assert [
            (
                "message.classified",
                "shop-a",
                "in-shop-a-SM1",
                {"providerMessageId": "SM1", "messageType": "client", "liveSessionId": None},
                "corr-SM1",
            )
        ] == list(events)

    def test_the_same_provider_message_twice_is_a_duplicate_and_the_unit_stays_usable(
        self, shops: UnitOfWorkFactory
    ) -> None:
        receive(shops, inbound("shop-a", "SM1"))

        with shops() as uow:
            with pytest.raises(DuplicateInboundMessage):
                uow.inbound.add(inbound("shop-a", "SM1", record_id="again"))
            winner = uow.inbound.get("shop-a", "SM1")
            uow.inbound.add(inbound("shop-a", "SM2"))
            uow.commit()

        with shops() as uow:
            assert uow.inbound.get("shop-a", "SM2") is not None
        assert winner is not None
        assert "in-shop-a-SM1" == winner.id

    def test_the_same_provider_message_id_is_fine_for_another_tenant(
        self, shops: UnitOfWorkFactory
    ) -> None:
        receive(shops, inbound("shop-a", "SM1"), inbound("shop-b", "SM1"))

        with shops() as uow:
            assert uow.inbound.get("shop-b", "SM1") is not None


EVERYTHING = InboundContent(
    kind="location",
    media_content_types=("image/jpeg", "audio/ogg"),
    latitude="48.8584",
    longitude="2.2945",
    address="Champ de Mars, 5 Av. Anatole France, 75007 Paris",
    label="Tour Eiffel",
    button_text="Je prends",
    button_payload="buy:sku-3",
    replied_to_message_id="SM" + "c" * 32,
    replied_to_sender="whatsapp:+14155238886",
    referral={"sourceId": "120208", "sourceType": "ad", "ctwaClid": "ARAkLkA8rmlF"},
    wa_id="33612345678",
    forwarded=True,
    frequently_forwarded=True,
    provider_params={"MessageSid": "SM1", "Body": "Je\ufffd", "Repeated": ["a", "b"]},
    raw_form="MessageSid=SM1&Body=Je%00&Repeated=a&Repeated=b",
    flags=("control_characters_removed",),
)


def with_content(record: object, content: InboundContent = EVERYTHING) -> object:
    message = attrs.evolve(record.message, content=content)  # type: ignore[attr-defined]
    return attrs.evolve(record, message=message)  # type: ignore[arg-type]


class TestContent:
    def test_everything_whatsapp_sent_reads_back_whole(self, shops: UnitOfWorkFactory) -> None:
        record = with_content(inbound("shop-a", "SM1"))
        receive(shops, record)

        with shops() as uow:
            assert record == uow.inbound.get("shop-a", "SM1")

    def test_a_record_without_content_reads_back_with_empty_content(
        self, shops: UnitOfWorkFactory
    ) -> None:
        receive(shops, inbound("shop-a", "SM1"))

        with shops() as uow:
            stored = uow.inbound.get("shop-a", "SM1")
        assert stored is not None
        assert InboundContent() == stored.message.content


class TestRejected:
    def test_a_rejected_record_reads_back_with_its_reason_and_dead_letter(
        self, shops: UnitOfWorkFactory
    ) -> None:
        record = inbound("shop-a", "SM1")
        record.mark_rejected(reason="invalid_phone", dead_letter_id="dl-1", now=at(5))
        receive(shops, record)

        with shops() as uow:
            stored = uow.inbound.get("shop-a", "SM1")
            waiting = uow.inbound.list_received_before(at(60), limit=10)
        assert record == stored
        assert [] == list(waiting)

    def test_a_save_applies_only_from_the_state_it_was_read_in(
        self, shops: UnitOfWorkFactory
    ) -> None:
        record = inbound("shop-a", "SM1")
        record.mark_rejected(reason="invalid_phone", dead_letter_id="dl-1", now=at(5))
        receive(shops, record)
        with shops() as uow:
            again = uow.inbound.get("shop-a", "SM1")
        assert again is not None
        again.mark_rejected(reason="invalid_phone", dead_letter_id="dl-2", now=at(6))

        with shops() as uow:
            stale = uow.inbound.save(again, was=InboundState(InboundStatus.RECEIVED))
            other = uow.inbound.save(again, was=InboundState(InboundStatus.REJECTED, "dl-9"))
            applied = uow.inbound.save(again, was=InboundState(InboundStatus.REJECTED, "dl-1"))
            repeated = uow.inbound.save(again, was=InboundState(InboundStatus.REJECTED, "dl-1"))
            uow.commit()

        with shops() as uow:
            stored = uow.inbound.get("shop-a", "SM1")
        assert [False, False, True, False] == [stale, other, applied, repeated]
        assert stored is not None
        assert "dl-2" == stored.dead_letter_id


class TestSave:
    def test_saving_a_received_record_stores_its_outcome(self, shops: UnitOfWorkFactory) -> None:
        receive(shops, inbound("shop-a", "SM1"))
        with shops() as uow:
            record = uow.inbound.get("shop-a", "SM1")
            assert record is not None
            record.mark_processed(
                from_e164=CLIENT_PHONE, sender=SenderType.CLIENT, live_session_id=None, now=at(2)
            )
            assert uow.inbound.save(record)
            uow.commit()

        with shops() as uow:
            stored = uow.inbound.get("shop-a", "SM1")
            events = [e[0] for e in uow.events.list(tenant_id="shop-a")]
        assert stored is not None
        assert (InboundStatus.PROCESSED, SenderType.CLIENT, at(2)) == (
            stored.status,
            stored.message_type,
            stored.processed_at,
        )
        assert ["message.classified"] == events

    def test_saving_a_record_processed_meanwhile_returns_false_and_stores_nothing(
        self, shops: UnitOfWorkFactory
    ) -> None:
        receive(shops, inbound("shop-a", "SM1"))
        with shops() as uow:
            first = uow.inbound.get("shop-a", "SM1")
        with shops() as uow:
            second = uow.inbound.get("shop-a", "SM1")
        assert first is not None
        assert second is not None
        first.mark_processed(
            from_e164=CLIENT_PHONE, sender=SenderType.CLIENT, live_session_id=None, now=at(2)
        )
        second.mark_processed(
            from_e164=CLIENT_PHONE, sender=SenderType.SELLER, live_session_id=None, now=at(3)
        )

        with shops() as uow:
            results = [uow.inbound.save(first), uow.inbound.save(second)]
            uow.commit()

        with shops() as uow:
            stored = uow.inbound.get("shop-a", "SM1")
            events = uow.events.list(tenant_id="shop-a")
        assert [True, False] == results
        assert stored is not None
        assert SenderType.CLIENT == stored.message_type
        assert 1 == len(events)


class TestReconcilerScan:
    def test_records_still_received_before_the_cutoff_are_listed_oldest_first(
        self, shops: UnitOfWorkFactory
    ) -> None:
        processed = inbound("shop-b", "SM0", received_at=at(-10))
        processed.mark_processed(
            from_e164=CLIENT_PHONE, sender=SenderType.CLIENT, live_session_id=None, now=at(1)
        )
        receive(
            shops,
            inbound("shop-a", "SM1", received_at=at(20)),
            inbound("shop-b", "SM2", received_at=at(10)),
            inbound("shop-a", "SM3", received_at=at(90)),
            processed,
        )

        with shops() as uow:
            waiting = uow.inbound.list_received_before(at(60), limit=10)
            first = uow.inbound.list_received_before(at(60), limit=1)

        assert ["SM2", "SM1"] == [r.provider_message_id for r in waiting]
        assert ["SM2"] == [r.provider_message_id for r in first]

    def test_the_scan_pages_on_received_at_then_id_after_a_key(
        self, shops: UnitOfWorkFactory
    ) -> None:
        receive(
            shops,
            inbound("shop-a", "SM1", "in-b", received_at=at(10)),
            inbound("shop-a", "SM2", "in-a", received_at=at(10)),
            inbound("shop-b", "SM3", "in-c", received_at=at(5)),
            inbound("shop-b", "SM4", "in-d", received_at=at(20)),
        )

        with shops() as uow:
            pages, after = [], None
            while True:
                page = uow.inbound.list_received_before(at(60), 2, after=after)
                pages.append([r.id for r in page])
                if len(page) < 2:
                    break
                after = (page[-1].message.received_at, page[-1].id)

        assert [["in-c", "in-a"], ["in-b", "in-d"], []] == pages


class TestTenantIsolation:
    def test_another_tenants_record_is_invisible(self, shops: UnitOfWorkFactory) -> None:
        receive(shops, inbound("shop-b", "SM1"))

        with shops() as uow:
            assert uow.inbound.get("shop-a", "SM1") is None

    def test_saving_under_another_tenant_changes_nothing(self, shops: UnitOfWorkFactory) -> None:
        receive(shops, inbound("shop-b", "SM1"))
        forged = inbound("shop-a", "SM1", record_id="in-shop-b-SM1")
        forged.mark_processed(
            from_e164=CLIENT_PHONE, sender=SenderType.SELLER, live_session_id=None, now=T0
        )

        with shops() as uow:
            assert not uow.inbound.save(forged)
            uow.commit()

        with shops() as uow:
            assert inbound("shop-b", "SM1") == uow.inbound.get("shop-b", "SM1")
            assert [] == list(uow.events.list(tenant_id="shop-a"))
