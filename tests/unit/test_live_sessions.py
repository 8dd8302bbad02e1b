"""Live sessions (SPEC §3): current within the window W, a seller gets-or-creates, a client only
joins, touch never reopens, one active session per tenant through every race."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from adapters.memory.store import MemoryLiveSessionRepository, MemoryUnitOfWork
from domain.errors import IllegalTransition, InvalidSetting
from domain.live_sessions import CloseReason, InactivityWindow, LiveSession, SessionStatus
from domain.senders import SenderType
from ports.repositories import ActiveSessionExists
from tests.unit.builders import CLIENT_PHONE, OTHER_CLIENT_PHONE, SELLER_PHONE, START, World

W = timedelta(minutes=45)


class TestTheInactivityWindow:
    @pytest.mark.parametrize("minutes", [1, 45, 1440])
    def test_a_window_of_1_to_1440_minutes_is_allowed(self, minutes: int) -> None:
        assert timedelta(minutes=minutes) == InactivityWindow(minutes).length

    @pytest.mark.parametrize("minutes", [0, -5, 1441])
    def test_a_window_out_of_range_is_rejected(self, minutes: int) -> None:
        with pytest.raises(InvalidSetting):
            InactivityWindow(minutes)

    @pytest.mark.parametrize("minutes", [45.0, "45", True, None])
    def test_a_window_that_is_not_whole_minutes_is_rejected(self, minutes: Any) -> None:
        with pytest.raises(InvalidSetting):
            InactivityWindow(minutes)

    def test_the_default_window_is_45_minutes(self) -> None:
        assert 45 == InactivityWindow().minutes


class TestAnOpenSession:
    def session(self) -> LiveSession:
        return LiveSession.open(id="live-1", tenant_id="shop-a", now=START, correlation_id="c")

    def test_last_activity_exactly_w_ago_is_current(self) -> None:
        session = self.session()

        assert (True, False) == (
            session.is_current(START + W, InactivityWindow(45)),
            session.is_stale(START + W, InactivityWindow(45)),
        )

    def test_last_activity_w_plus_one_second_ago_is_stale(self) -> None:
        session = self.session()
        now = START + W + timedelta(seconds=1)

        assert (False, True) == (
            session.is_current(now, InactivityWindow(45)),
            session.is_stale(now, InactivityWindow(45)),
        )

    def test_touch_moves_last_activity_forward_and_counts_per_sender(self) -> None:
        session = self.session()

        session.touch(START + timedelta(minutes=1), SenderType.CLIENT)
        session.touch(START + timedelta(minutes=2), SenderType.SELLER)
        session.touch(START + timedelta(minutes=3), SenderType.CLIENT)

        assert (START + timedelta(minutes=3), 1, 2) == (
            session.last_activity_at,
            session.seller_message_count,
            session.client_message_count,
        )

    def test_a_late_touch_never_moves_last_activity_back(self) -> None:
        session = self.session()
        session.touch(START + timedelta(minutes=5), SenderType.CLIENT)

        session.touch(START + timedelta(minutes=1), SenderType.CLIENT)

        assert START + timedelta(minutes=5) == session.last_activity_at

    def test_a_closed_session_cannot_be_touched_or_closed_again(self) -> None:
        session = self.session()
        session.close(START, CloseReason.INACTIVITY, "c")

        with pytest.raises(IllegalTransition):
            session.touch(START, SenderType.SELLER)
        with pytest.raises(IllegalTransition):
            session.close(START, CloseReason.INACTIVITY, "c")


class TestASellerMessage:
    def test_the_first_seller_message_opens_a_session(self, shop: World) -> None:
        outcome = shop.message_from(SELLER_PHONE)

        [session] = shop.sessions()
        assert (outcome.enriched["liveSessionId"], SessionStatus.ACTIVE, START, START, 1) == (
            session.id,
            session.status,
            session.started_at,
            session.last_activity_at,
            session.seller_message_count,
        )
        assert ["live_session.opened", "message.classified"] == shop.event_types()

    def test_a_seller_message_within_the_window_joins_the_current_session(
        self, shop: World
    ) -> None:
        first = shop.message_from(SELLER_PHONE)
        shop.advance(minutes=45)

        second = shop.message_from(SELLER_PHONE)

        assert first.enriched["liveSessionId"] == second.enriched["liveSessionId"]
        [session] = shop.sessions()
        assert (START + W, 2) == (session.last_activity_at, session.seller_message_count)

    def test_a_seller_message_after_the_window_closes_the_stale_session_and_opens_a_new_one(
        self, shop: World
    ) -> None:
        first = shop.message_from(SELLER_PHONE)
        shop.advance(minutes=45, seconds=1)

        second = shop.message_from(SELLER_PHONE)

        old = shop.session(first.enriched["liveSessionId"])
        new = shop.session(second.enriched["liveSessionId"])
        assert old.id != new.id
        assert (SessionStatus.CLOSED, CloseReason.INACTIVITY, shop.now) == (
            old.status,
            old.close_reason,
            old.closed_at,
        )
        assert (SessionStatus.ACTIVE, shop.now) == (new.status, new.started_at)
        assert [
            "live_session.opened",
            "message.classified",
            "live_session.closed",
            "live_session.opened",
            "message.classified",
        ] == shop.event_types()

    def test_the_closed_event_describes_the_stale_session(self, shop: World) -> None:
        first = shop.message_from(SELLER_PHONE)
        shop.advance(minutes=10)
        shop.message_from(CLIENT_PHONE)
        shop.advance(minutes=46)

        shop.message_from(SELLER_PHONE, provider_message_id="SM-next")

        [closed] = shop.events("live_session.closed")
        assert first.enriched["liveSessionId"] == closed.subject_id
        assert {
            "reason": "inactivity",
            "startedAt": START.isoformat(),
            "lastActivityAt": (START + timedelta(minutes=10)).isoformat(),
            "closedAt": shop.now.isoformat(),
            "durationSeconds": 600.0,
            "sellerMessageCount": 1,
            "clientMessageCount": 1,
        } == closed.payload
        assert "corr-3" == closed.correlation_id


class TestAClientMessage:
    def test_a_client_message_never_opens_a_session(self, shop: World) -> None:
        outcome = shop.message_from(CLIENT_PHONE)

        assert None is outcome.enriched["liveSessionId"]
        assert ([], ["message.classified"]) == (shop.sessions(), shop.event_types())

    def test_a_client_message_joins_and_touches_the_current_session(self, shop: World) -> None:
        seller = shop.message_from(SELLER_PHONE)
        shop.advance(minutes=45)

        client = shop.message_from(CLIENT_PHONE)

        assert seller.enriched["liveSessionId"] == client.enriched["liveSessionId"]
        [session] = shop.sessions()
        assert (shop.now, 1, 1) == (
            session.last_activity_at,
            session.seller_message_count,
            session.client_message_count,
        )

    def test_client_messages_keep_the_session_current(self, shop: World) -> None:
        seller = shop.message_from(SELLER_PHONE)
        for _ in range(4):
            shop.advance(minutes=30)
            shop.message_from(CLIENT_PHONE)

        assert [seller.enriched["liveSessionId"]] == [s.id for s in shop.active_sessions()]
        assert 4 == shop.active_sessions()[0].client_message_count

    def test_a_client_after_the_window_gets_no_session_and_changes_nothing(
        self, shop: World
    ) -> None:
        shop.message_from(SELLER_PHONE)
        shop.advance(minutes=45, seconds=1)
        before = [(s.id, s.status, s.last_activity_at) for s in shop.sessions()]

        outcome = shop.message_from(CLIENT_PHONE)

        assert None is outcome.enriched["liveSessionId"]
        assert before == [(s.id, s.status, s.last_activity_at) for s in shop.sessions()]
        assert [] == shop.events("live_session.closed")

    def test_a_client_after_the_session_was_closed_gets_no_session(self, shop: World) -> None:
        shop.message_from(SELLER_PHONE)
        shop.advance(hours=1)
        shop.close_inactive()

        outcome = shop.message_from(OTHER_CLIENT_PHONE)

        assert None is outcome.enriched["liveSessionId"]
        assert [SessionStatus.CLOSED] == [s.status for s in shop.sessions()]


class ClosingBeforeTouch(MemoryLiveSessionRepository):
    """A closing job that closes the session between the processor's read and its touch."""

    def __init__(self, *parts: Any) -> None:
        super().__init__(*parts)
        self.interrupted: list[str] = []

    def touch(
        self, tenant_id: str, session_id: str, now: datetime, sender: SenderType
    ) -> LiveSession | None:
        if not self.interrupted:
            session = self.get(tenant_id, session_id)
            assert session is not None
            session.close(now, CloseReason.INACTIVITY, "closing-job")
            assert self.close(session)
            self.interrupted.append(session_id)
        return super().touch(tenant_id, session_id, now, sender)


class CompetingCreator(MemoryLiveSessionRepository):
    """Another processor opens the tenant's session just before this one inserts its own."""

    def __init__(self, *parts: Any) -> None:
        super().__init__(*parts)
        self.competitor: LiveSession | None = None

    def add(self, session: LiveSession) -> None:
        if self.competitor is None:
            self.competitor = LiveSession.open(
                id="competitor",
                tenant_id=session.tenant_id,
                now=session.started_at,
                correlation_id="other-job",
            )
            super().add(self.competitor)
        super().add(session)


def wrap_sessions(world: World, repository: type[MemoryLiveSessionRepository]) -> list[Any]:
    """Make every unit of work of ``world`` use ``repository`` for live sessions."""
    made: list[Any] = []
    plain = world.uow_factory

    def factory() -> MemoryUnitOfWork:
        uow = plain()
        uow.sessions = repository(world.store, uow._journal, uow.events)
        made.append(uow.sessions)
        return uow

    world.uow_factory = factory
    return made


class TestRaces:
    def test_a_session_closed_between_read_and_touch_is_never_reopened(self, shop: World) -> None:
        first = shop.message_from(SELLER_PHONE)
        shop.advance(minutes=5)
        wrap_sessions(shop, ClosingBeforeTouch)

        second = shop.message_from(SELLER_PHONE)

        old = shop.session(first.enriched["liveSessionId"])
        new = shop.session(second.enriched["liveSessionId"])
        assert (SessionStatus.CLOSED, 1) == (old.status, old.seller_message_count)
        assert (SessionStatus.ACTIVE, 1, shop.now) == (
            new.status,
            new.seller_message_count,
            new.started_at,
        )
        assert [new.id] == [s.id for s in shop.active_sessions()]

    def test_a_client_whose_session_closed_between_read_and_touch_gets_none(
        self, shop: World
    ) -> None:
        first = shop.message_from(SELLER_PHONE)
        shop.advance(minutes=5)
        wrap_sessions(shop, ClosingBeforeTouch)

        outcome = shop.message_from(CLIENT_PHONE)

        assert None is outcome.enriched["liveSessionId"]
        assert [(first.enriched["liveSessionId"], SessionStatus.CLOSED, 0)] == [
            (s.id, s.status, s.client_message_count) for s in shop.sessions()
        ]

    def test_the_loser_of_a_concurrent_creation_joins_the_winner(self, shop: World) -> None:
        repos = wrap_sessions(shop, CompetingCreator)

        outcome = shop.message_from(SELLER_PHONE)

        assert "competitor" == outcome.enriched["liveSessionId"]
        [session] = shop.sessions()
        assert ("competitor", SessionStatus.ACTIVE, 1) == (
            session.id,
            session.status,
            session.seller_message_count,
        )
        assert ["other-job"] == [e.correlation_id for e in shop.events("live_session.opened")]
        assert repos[0].competitor is not None

    def test_the_store_refuses_a_second_active_session_for_a_tenant(self, shop: World) -> None:
        shop.message_from(SELLER_PHONE)

        with shop.uow_factory() as uow, pytest.raises(ActiveSessionExists):
            uow.sessions.add(
                LiveSession.open(id="second", tenant_id="shop-a", now=shop.now, correlation_id="c")
            )
        assert 1 == len(shop.sessions())


class AlwaysClosedUnderfoot(MemoryLiveSessionRepository):
    """Every read finds a current session that is closed before the touch lands."""

    def get_active(self, tenant_id: str) -> LiveSession | None:
        return LiveSession.open(id="ghost", tenant_id=tenant_id, now=START, correlation_id="c")

    def touch(
        self, tenant_id: str, session_id: str, now: datetime, sender: SenderType
    ) -> LiveSession | None:
        return None


class TestARaceLostEveryTime:
    def test_it_raises_contention_so_the_job_is_retried_and_records_nothing(
        self, shop: World
    ) -> None:
        from application.errors import ContentionError

        wrap_sessions(shop, AlwaysClosedUnderfoot)

        with pytest.raises(ContentionError):
            shop.receive(shop.payload(sender=SELLER_PHONE))

        assert ({}, {}, [], {}) == (
            shop.store.inbound,
            shop.store.sessions,
            shop.store.events,
            shop.store.dead_letters,
        )


def received(minutes: float) -> str:
    """A ``receivedAt`` ``minutes`` after START, as the webhook writes it."""
    return (START + timedelta(minutes=minutes)).isoformat()


def in_the_inbox(world: World, payload: dict[str, Any]) -> None:
    """The webhook recorded the message (``received``); its job has not run yet."""
    from domain.inbound import InboundMessage, InboundRecord

    with world.uow_factory() as uow:
        message = InboundMessage.from_payload(payload, world.now)
        uow.inbound.add(InboundRecord(id=f"inbox-{payload['providerMessageId']}", message=message))
        uow.commit()


class TestABacklogIsJudgedAtReceipt:
    """Issue 12 §8, ADR 0012: after an outage the clock has moved on; each message is judged and
    touches its session at the instant it was received."""

    def test_a_late_seller_message_joins_the_live_that_was_current_when_it_was_received(
        self, shop: World
    ) -> None:
        first = shop.message_from(SELLER_PHONE)
        shop.advance(minutes=46, seconds=50)  # 110 s after a seller message received at +45

        late = shop.message_from(SELLER_PHONE, receivedAt=received(45))

        assert first.enriched["liveSessionId"] == late.enriched["liveSessionId"]
        [session] = shop.sessions()
        assert (SessionStatus.ACTIVE, START + W, 2) == (
            session.status,
            session.last_activity_at,
            session.seller_message_count,
        )
        assert [] == shop.events("live_session.closed")

    def test_clients_written_during_the_old_live_join_it_and_no_new_live_opens(
        self, shop: World
    ) -> None:
        live = shop.message_from(SELLER_PHONE).enriched["liveSessionId"]
        shop.advance(minutes=47)
        backlog = [shop.payload(sender=SELLER_PHONE, receivedAt=received(44))] + [
            shop.payload(sender=CLIENT_PHONE, receivedAt=received(44 + i / 60)) for i in range(25)
        ]

        outcomes = [shop.receive(p) for p in backlog]

        assert {live} == {o.enriched["liveSessionId"] for o in outcomes}  # type: ignore[union-attr]
        [session] = shop.sessions()
        assert (2, 25, START + timedelta(minutes=44, seconds=24)) == (
            session.seller_message_count,
            session.client_message_count,
            session.last_activity_at,
        )

    def test_a_late_message_never_moves_last_activity_back(self, shop: World) -> None:
        shop.message_from(SELLER_PHONE)
        shop.advance(minutes=30)
        shop.message_from(CLIENT_PHONE)
        shop.advance(minutes=1)

        shop.message_from(CLIENT_PHONE, receivedAt=received(10))

        [session] = shop.sessions()
        assert (START + timedelta(minutes=30), 2) == (
            session.last_activity_at,
            session.client_message_count,
        )

    def test_a_received_at_ahead_of_the_clock_is_capped_at_now(self, shop: World) -> None:
        shop.message_from(SELLER_PHONE, receivedAt=received(60))

        [session] = shop.sessions()
        assert (START, START) == (session.started_at, session.last_activity_at)

    def test_a_client_received_before_the_live_began_gets_no_session(self, shop: World) -> None:
        shop.advance(minutes=10)
        shop.message_from(SELLER_PHONE)

        outcome = shop.message_from(CLIENT_PHONE, receivedAt=received(5))

        assert None is outcome.enriched["liveSessionId"]
        assert 0 == shop.sessions()[0].client_message_count

    def test_a_seller_message_received_before_the_first_one_processed_moves_the_start_back(
        self, shop: World
    ) -> None:
        shop.advance(minutes=10)
        opened = shop.message_from(SELLER_PHONE)

        earlier = shop.message_from(SELLER_PHONE, receivedAt=received(2))

        assert opened.enriched["liveSessionId"] == earlier.enriched["liveSessionId"]
        [session] = shop.sessions()
        assert (START + timedelta(minutes=2), shop.now) == (
            session.started_at,
            session.last_activity_at,
        )


class TestWaitingMessagesKeepTheirSessionOpen:
    """ADR 0012: a session is not closed while messages received inside its window wait."""

    def test_the_closer_leaves_the_session_open_until_the_waiting_message_is_processed(
        self, shop: World
    ) -> None:
        live = shop.message_from(SELLER_PHONE).enriched["liveSessionId"]
        waiting = shop.payload(sender=CLIENT_PHONE, receivedAt=received(20))
        in_the_inbox(shop, waiting)
        shop.advance(minutes=60)

        kept = shop.close_inactive()
        joined = shop.receive(waiting)
        still_current = shop.close_inactive()
        shop.advance(minutes=6)
        closed = shop.close_inactive()

        assert (0, live, 0, [live]) == (
            kept.closed_count,
            joined.enriched["liveSessionId"],  # type: ignore[union-attr]
            still_current.closed_count,
            [c.session_id for c in closed.closed],
        )
        [event] = shop.events("live_session.closed")
        assert (1, (START + timedelta(minutes=20)).isoformat()) == (
            event.payload["clientMessageCount"],
            event.payload["lastActivityAt"],
        )

    def test_a_seller_message_that_would_close_the_session_waits_and_is_retried(
        self, shop: World
    ) -> None:
        from application.errors import EarlierMessagesWaiting

        live = shop.message_from(SELLER_PHONE).enriched["liveSessionId"]
        waiting = shop.payload(sender=CLIENT_PHONE, receivedAt=received(30))
        in_the_inbox(shop, waiting)
        seller = shop.payload(sender=SELLER_PHONE, receivedAt=received(80))
        shop.advance(minutes=81)
        before = (dict(shop.store.sessions), list(shop.store.events))

        with pytest.raises(EarlierMessagesWaiting):
            shop.receive(seller)
        assert before == (dict(shop.store.sessions), list(shop.store.events))

        shop.receive(waiting)
        retried = shop.receive(seller)

        old = shop.session(live)
        new = shop.session(retried.enriched["liveSessionId"])  # type: ignore[union-attr]
        assert (SessionStatus.CLOSED, START + timedelta(minutes=30), 1) == (
            old.status,
            old.last_activity_at,
            old.client_message_count,
        )
        assert (SessionStatus.ACTIVE, START + timedelta(minutes=80)) == (
            new.status,
            new.started_at,
        )

    def test_once_the_waiting_message_extends_the_live_the_seller_joins_it(
        self, shop: World
    ) -> None:
        from application.errors import EarlierMessagesWaiting

        live = shop.message_from(SELLER_PHONE).enriched["liveSessionId"]
        waiting = shop.payload(sender=CLIENT_PHONE, receivedAt=received(40))
        in_the_inbox(shop, waiting)
        seller = shop.payload(sender=SELLER_PHONE, receivedAt=received(80))
        shop.advance(minutes=90)

        with pytest.raises(EarlierMessagesWaiting):
            shop.receive(seller)
        joined = [shop.receive(p) for p in (waiting, seller)]

        assert [live, live] == [o.enriched["liveSessionId"] for o in joined]  # type: ignore[union-attr]
        [session] = shop.sessions()
        assert (SessionStatus.ACTIVE, START + timedelta(minutes=80)) == (
            session.status,
            session.last_activity_at,
        )

    def test_a_waiting_message_of_another_tenant_holds_nothing(self, shop: World) -> None:
        shop.tenant("shop-b")
        live = shop.message_from(SELLER_PHONE).enriched["liveSessionId"]
        in_the_inbox(shop, shop.payload("shop-b", CLIENT_PHONE, receivedAt=received(20)))
        shop.advance(minutes=60)

        report = shop.close_inactive()

        assert [live] == [c.session_id for c in report.closed]
