"""The durable spool's use cases on the in-memory adapters (ADR 0013): the webhook spools what the
database cannot record, the failure callback parks the dead letter it cannot write, and the
drainer applies both once when the database answers; and the queue watch that makes the inbox
reconciler react to Redis coming back."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any

import pytest

from adapters.memory.queue import MemoryInboundQueue
from adapters.memory.spool import MemorySpool
from application.inbound import Rejected, RejectReason
from application.inbox import Recorded, WebhookMessage
from application.queue_recovery import MARGIN, QueueRecovered, QueueWatch
from application.spool import (
    Parked,
    Spooled,
    accept_inbound_message,
    dead_letter_or_park,
    drain_spool,
)
from domain.inbound import InboundStatus
from entrypoints.spool_drainer import SpoolDrainer
from entrypoints.twilio_form import read_twilio_message
from ports.queue import QueueUnavailable
from ports.repositories import StoreUnavailable
from tests.support.twilio_webhook import twilio_form
from tests.unit.builders import CLIENT_PHONE, World

SHOP_NUMBER = "+14155238886"


class SwitchableStore:
    """The world's units of work, or StoreUnavailable while ``down``."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.down = False

    def __call__(self) -> Any:
        if self.down:
            raise StoreUnavailable("connection refused")
        return self.world.uow_factory()


def message(sid: str = "SM1") -> WebhookMessage:
    return WebhookMessage(
        provider_message_id=sid,
        from_address=f"whatsapp:{CLIENT_PHONE}",
        to_address=f"whatsapp:{SHOP_NUMBER}",
        body="Je prends le 3 !",
        profile_name="Bob",
        num_media=1,
        media_urls=("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",),
    )


@pytest.fixture
def shop(world: World) -> World:
    world.tenant("shop-a", whatsapp_number=SHOP_NUMBER)
    return world


@pytest.fixture
def store(shop: World) -> SwitchableStore:
    return SwitchableStore(shop)


@pytest.fixture
def spool() -> MemorySpool:
    return MemorySpool()


@pytest.fixture
def queue() -> MemoryInboundQueue:
    return MemoryInboundQueue()


def accept(
    world: World, store: SwitchableStore, queue: MemoryInboundQueue, spool: MemorySpool, sid: str
) -> object:
    return accept_inbound_message(
        message(sid),
        params=[("MessageSid", sid), ("Body", "Je prends le 3 !")],
        correlation_id=f"corr-{sid}",
        uow_factory=store,
        queue=queue,
        spool=spool,
        clock=world.clock,
        ids=world.ids,
    )


def drain(
    world: World, store: SwitchableStore, queue: MemoryInboundQueue, spool: MemorySpool
) -> Any:
    return drain_spool(
        spool=spool, uow_factory=store, queue=queue, clock=world.clock, ids=world.ids, limit=100
    )


class TestAcceptInboundMessage:
    def test_with_the_database_up_the_message_is_recorded_and_nothing_is_spooled(
        self, shop: World, store: SwitchableStore, queue: MemoryInboundQueue, spool: MemorySpool
    ) -> None:
        outcome = accept(shop, store, queue, spool, "SM1")

        assert isinstance(outcome, Recorded)
        assert (0, 1) == (spool.depth(), len(queue))

    def test_with_the_database_down_the_request_is_spooled_and_recorded_once_it_answers(
        self, shop: World, store: SwitchableStore, queue: MemoryInboundQueue, spool: MemorySpool
    ) -> None:
        store.down = True
        received_at = shop.now
        outcome = accept(shop, store, queue, spool, "SM1")
        assert Spooled(provider_message_id="SM1", correlation_id="corr-SM1") == outcome
        shop.advance(seconds=20)

        assert 0 == drain(shop, store, queue, spool).drained
        store.down = False
        report = drain(shop, store, queue, spool)

        assert (1, None, 0) == (report.drained, report.store_error, spool.depth())
        record = shop.store.inbound[("shop-a", "SM1")]
        assert (InboundStatus.RECEIVED, received_at, "corr-SM1") == (
            record.status,
            record.message.received_at,
            record.message.correlation_id,
        )
        assert message("SM1").media_urls == tuple(record.message.media_urls)
        [(_, job)] = [queue.pop()]  # type: ignore[misc]
        assert ("SM1", received_at.isoformat()) == (job["providerMessageId"], job["receivedAt"])

    def test_a_spooled_request_drained_twice_is_recorded_and_enqueued_once(
        self, shop: World, store: SwitchableStore, queue: MemoryInboundQueue, spool: MemorySpool
    ) -> None:
        store.down = True
        accept(shop, store, queue, spool, "SM1")
        [raw] = list(spool.store.pending)
        spool.store.pending.append(raw)  # a drainer killed after applying, before acknowledging
        store.down = False

        assert 2 == drain(shop, store, queue, spool).drained
        assert (1, 1) == (len(shop.store.inbound), len(queue))

    def test_a_spooled_location_keeps_everything_twilio_sent_once_drained(
        self, shop: World, store: SwitchableStore, queue: MemoryInboundQueue, spool: MemorySpool
    ) -> None:
        form = twilio_form(
            "SM" + "6" * 32,
            To=f"whatsapp:{SHOP_NUMBER}",
            Body="",
            MessageType="location",
            Latitude="48.858370",
            Longitude="2.294481",
            Address="Champ de Mars, 5 Av. Anatole France, 75007 Paris",
            Label="Tour Eiffel",
        )
        pairs = list(form.items())
        store.down = True
        accept_inbound_message(
            read_twilio_message(pairs),
            params=pairs,
            correlation_id="corr-loc",
            uow_factory=store,
            queue=queue,
            spool=spool,
            clock=shop.clock,
            ids=shop.ids,
        )
        store.down = False
        drain(shop, store, queue, spool)

        content = shop.store.inbound[("shop-a", "SM" + "6" * 32)].message.content
        assert ("location", "48.858370", "2.294481", "Tour Eiffel") == (
            content.kind,
            content.latitude,
            content.longitude,
            content.label,
        )
        assert form == content.provider_params

    def test_with_the_database_and_the_spool_down_store_unavailable_is_raised(
        self, shop: World, store: SwitchableStore, queue: MemoryInboundQueue, spool: MemorySpool
    ) -> None:
        store.down = True
        spool.store.down = True

        with pytest.raises(StoreUnavailable, match="spool is unavailable"):
            accept(shop, store, queue, spool, "SM1")


class TestParkedDeadLetters:
    def park(self, world: World, store: SwitchableStore, spool: MemorySpool) -> object:
        return dead_letter_or_park(
            world.payload(provider_message_id="SM-dead"),
            RejectReason.RETRIES_EXHAUSTED,
            "StoreUnavailable: connection refused",
            attempts=5,
            uow_factory=store,
            spool=spool,
            clock=world.clock,
            ids=world.ids,
        )

    def test_with_the_database_up_the_dead_letter_is_written_at_once(
        self, shop: World, store: SwitchableStore, spool: MemorySpool
    ) -> None:
        outcome = self.park(shop, store, spool)

        assert isinstance(outcome, Rejected)
        assert (1, 0) == (len(shop.store.dead_letters), spool.depth())

    def test_a_parked_dead_letter_is_written_once_with_its_id_time_and_attempts(
        self, shop: World, store: SwitchableStore, queue: MemoryInboundQueue, spool: MemorySpool
    ) -> None:
        store.down = True
        parked_at = shop.now
        outcome = self.park(shop, store, spool)
        assert isinstance(outcome, Parked)
        [raw] = list(spool.store.pending)
        spool.store.pending.append(raw)  # drained twice
        shop.advance(seconds=30)
        store.down = False

        assert 2 == drain(shop, store, queue, spool).drained

        [dead] = shop.store.dead_letters.values()
        assert (outcome.dead_letter_id, parked_at, 5, "retries_exhausted", "SM-dead") == (
            dead.id,
            dead.created_at,
            dead.attempts,
            dead.error_code,
            dead.source_id,
        )
        assert 1 == sum(1 for e in shop.store.events if e.event_type == "inbound.rejected")

    def test_an_unreadable_spool_entry_becomes_a_dead_letter_holding_its_text(
        self, shop: World, store: SwitchableStore, queue: MemoryInboundQueue, spool: MemorySpool
    ) -> None:
        spool.append({"kind": "inbound", "version": 1})

        assert 1 == drain(shop, store, queue, spool).drained

        [dead] = shop.store.dead_letters.values()
        assert "unreadable_spool_entry" == dead.error_code
        assert {"spoolEntry": '{"kind":"inbound","version":1}'} == dead.payload


class FlakyHealth:
    def __init__(self) -> None:
        self.up = True
        self.value = "epoch-1"

    def epoch(self) -> str:
        if not self.up:
            raise QueueUnavailable("refused")
        return self.value


class TestQueueWatch:
    def test_an_outage_ending_names_the_moment_before_it_began(self, world: World) -> None:
        health = FlakyHealth()
        watch = QueueWatch(health, world.clock, lookback=timedelta(seconds=60))
        assert None is watch.observe()
        last_ok = world.now
        world.advance(seconds=1)
        health.up = False
        assert None is watch.observe()
        world.advance(seconds=3)
        assert (None, True) == (watch.observe(), watch.down)
        health.up = True

        recovered = watch.observe()

        assert QueueRecovered(since=last_ok - MARGIN, down_seconds=4.0) == recovered
        assert None is watch.observe()

    def test_a_new_epoch_means_the_queue_lost_its_data(self, world: World) -> None:
        health = FlakyHealth()
        watch = QueueWatch(health, world.clock, lookback=timedelta(seconds=60))
        watch.observe()
        health.value = "epoch-2"

        recovered = watch.observe()

        assert recovered is not None
        assert None is recovered.since

    def test_an_outage_seen_from_start_up_looks_back_one_threshold(self, world: World) -> None:
        health = FlakyHealth()
        health.up = False
        watch = QueueWatch(health, world.clock, lookback=timedelta(seconds=60))
        started = world.now
        watch.observe()
        health.up = True

        recovered = watch.observe()

        assert recovered is not None
        assert started - timedelta(seconds=60) - MARGIN == recovered.since

    def test_a_recovery_is_due_again_until_it_went_through(self, world: World) -> None:
        health = FlakyHealth()
        watch = QueueWatch(health, world.clock, lookback=timedelta(seconds=60))
        watch.observe()
        health.up = False
        watch.observe()
        world.advance(seconds=5)
        health.up = True
        first = watch.recovery_due()
        world.advance(seconds=1)

        again = watch.recovery_due()  # its enqueues failed: not recovered()
        watch.recovered()
        world.advance(seconds=1)

        assert first is not None
        assert (first, None) == (again, watch.recovery_due())

    def test_no_recovery_is_due_while_the_queue_is_down(self, world: World) -> None:
        health = FlakyHealth()
        watch = QueueWatch(health, world.clock, lookback=timedelta(seconds=60))
        watch.observe()
        health.value = "epoch-2"
        assert watch.recovery_due() is not None
        health.up = False

        assert None is watch.recovery_due()


class TestSpoolDrainerPart:
    def test_it_warns_at_start_when_redis_may_evict_the_spool(
        self,
        shop: World,
        store: SwitchableStore,
        queue: MemoryInboundQueue,
        spool: MemorySpool,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        spool.store.policy = "allkeys-lru"
        part = SpoolDrainer(spool, store, queue, shop.clock, shop.ids)

        with caplog.at_level(logging.WARNING, logger="livesell"):
            part.start()

        assert any(
            "not durable" in r.getMessage() and "allkeys-lru" in r.getMessage()
            for r in caplog.records
        )

    def test_it_drains_what_waited_once_the_database_answers_and_stops_on_request(
        self, shop: World, store: SwitchableStore, queue: MemoryInboundQueue, spool: MemorySpool
    ) -> None:
        store.down = True
        for n in range(3):
            accept(shop, store, queue, spool, f"SM{n}")
        part = SpoolDrainer(spool, store, queue, shop.clock, shop.ids, idle_seconds=0.05)
        stop = threading.Event()
        thread = threading.Thread(target=part.run, args=(stop,))
        part.start()
        thread.start()
        time.sleep(0.3)
        assert (0, 3) == (part.drained, spool.depth()), "nothing drained while the store is down"
        assert part.heartbeat.read().last is not None, "its loop beats for /healthz"

        store.down = False
        deadline = time.monotonic() + 5
        while spool.depth() and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        thread.join(5)

        assert (3, 0, False) == (part.drained, spool.depth(), thread.is_alive())
        assert 3 == len(shop.store.inbound)
