"""close_inactive_sessions (SPEC §3 "Closing job"): close sessions idle for longer than W, batch
after batch until none is left, each closure with its live_session.closed event."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.live_sessions import CloseReason, LiveSession, SessionStatus
from tests.unit.builders import SELLER_PHONE, START, World


def open_sessions(world: World, count: int, prefix: str = "t") -> list[str]:
    """Open one session per tenant ``{prefix}-000``... at the current time."""
    tenants = [f"{prefix}-{n:03d}" for n in range(count)]
    with world.uow_factory() as uow:
        for tenant_id in tenants:
            uow.sessions.add(
                LiveSession.open(
                    id=f"live-{tenant_id}", tenant_id=tenant_id, now=world.now, correlation_id="c"
                )
            )
        uow.commit()
    return tenants


class TestClosingInactiveSessions:
    def test_a_session_idle_for_longer_than_the_window_is_closed(self, shop: World) -> None:
        shop.message_from(SELLER_PHONE)
        shop.advance(minutes=45, seconds=1)

        report = shop.close_inactive()

        [session] = shop.sessions()
        assert (SessionStatus.CLOSED, CloseReason.INACTIVITY, shop.now) == (
            session.status,
            session.close_reason,
            session.closed_at,
        )
        assert (1, 1) == (report.closed_count, report.batches)
        [event] = shop.events("live_session.closed")
        assert (session.id, "shop-a", "inactivity") == (
            event.subject_id,
            event.tenant_id,
            event.payload["reason"],
        )

    def test_a_session_idle_for_exactly_the_window_is_left_alone(self, shop: World) -> None:
        shop.message_from(SELLER_PHONE)
        shop.advance(minutes=45)

        report = shop.close_inactive()

        assert 0 == report.closed_count
        assert [SessionStatus.ACTIVE] == [s.status for s in shop.sessions()]

    def test_current_sessions_are_left_alone(self, world: World) -> None:
        stale = open_sessions(world, 3, prefix="stale")
        world.advance(minutes=30)
        current = open_sessions(world, 2, prefix="current")
        world.advance(minutes=16)

        report = world.close_inactive()

        assert sorted(stale) == sorted(c.tenant_id for c in report.closed)
        assert [SessionStatus.ACTIVE] * 2 == [world.sessions(t)[0].status for t in current]
        assert [START + timedelta(minutes=30)] * 2 == [
            world.sessions(t)[0].last_activity_at for t in current
        ]

    def test_250_stale_sessions_with_batches_of_100_are_closed_in_3_batches(
        self, world: World
    ) -> None:
        open_sessions(world, 250)
        world.advance(hours=1)

        report = world.close_inactive(batch_limit=100)

        assert (250, 3) == (report.closed_count, report.batches)
        assert [] == [s for s in world.store.sessions.values() if s.is_active]
        closed_events = world.events("live_session.closed")
        assert 250 == len(closed_events)
        assert sorted(world.store.sessions) == sorted(e.subject_id for e in closed_events)

    def test_an_exact_multiple_of_the_batch_needs_one_more_empty_batch(self, world: World) -> None:
        open_sessions(world, 200)
        world.advance(hours=1)

        report = world.close_inactive(batch_limit=100)

        assert (200, 3) == (report.closed_count, report.batches)

    def test_a_second_run_finds_nothing_to_close(self, world: World) -> None:
        open_sessions(world, 5)
        world.advance(hours=1)
        world.close_inactive()

        again = world.close_inactive()

        assert (0, 1) == (again.closed_count, again.batches)
        assert 5 == len(world.events("live_session.closed"))

    def test_the_closed_events_carry_the_runs_correlation_id(self, world: World) -> None:
        open_sessions(world, 3)
        world.advance(hours=1)

        world.close_inactive()

        assert 1 == len({e.correlation_id for e in world.events("live_session.closed")})

    def test_the_report_gives_the_idle_time_and_window(self, world: World) -> None:
        open_sessions(world, 1)
        world.advance(minutes=90)

        report = world.close_inactive()

        assert (45, 90.0) == (report.window_minutes, report.closed[0].idle_minutes)

    def test_a_batch_limit_below_one_is_refused(self, world: World) -> None:
        with pytest.raises(ValueError, match="batch limit"):
            world.close_inactive(batch_limit=0)

    def test_a_seller_after_the_closing_job_opens_a_new_session(self, shop: World) -> None:
        first = shop.message_from(SELLER_PHONE)
        shop.advance(hours=1)
        shop.close_inactive()

        second = shop.message_from(SELLER_PHONE)

        assert first.enriched["liveSessionId"] != second.enriched["liveSessionId"]
        assert [second.enriched["liveSessionId"]] == [s.id for s in shop.active_sessions()]
        assert 1 == len(shop.events("live_session.closed"))
