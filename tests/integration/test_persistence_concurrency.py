"""Races on the real Postgres: the guarantees that only hold because of the database (the partial
unique index, FOR UPDATE SKIP LOCKED, conditional updates). Every test is bounded in time."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.memory.clock import FixedClock, SequentialIds
from adapters.sqlalchemy.engine import build_engine
from adapters.sqlalchemy.unit_of_work import SqlUnitOfWorkFactory
from application.inbound import Processed, process_inbound_message
from application.live_sessions import attach_to_current_session, close_inactive_sessions
from domain.live_sessions import InactivityWindow, LiveSession, SessionStatus
from domain.outbox import OutboxMessage
from domain.senders import SenderType
from tests.contract.builders import SELLER_PHONE, seller, tenant

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
WINDOW = InactivityWindow(45)
STALE_NOW = T0 + timedelta(minutes=46)
LEASE = timedelta(minutes=10)


def run_together(count: int, work: Callable[[int], Any], timeout: float = 30) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released at once; returns results (or exceptions)."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        barrier.wait(timeout)
        try:
            results[index] = work(index)
        except Exception as exc:  # collected: the test asserts that none reached a caller
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(t.is_alive() for t in threads), "a thread did not finish in time"
    return results


def errors(results: list[Any]) -> list[Exception]:
    return [r for r in results if isinstance(r, Exception)]


def open_stale_sessions(uow_factory: SqlUnitOfWorkFactory, count: int) -> list[LiveSession]:
    sessions = []
    with uow_factory() as uow:
        for i in range(count):
            uow.tenants.add(tenant(f"shop-{i:03d}"))
            session = LiveSession.open(
                id=f"session-{i:03d}", tenant_id=f"shop-{i:03d}", now=T0, correlation_id="c"
            )
            uow.sessions.add(session)
            sessions.append(session)
        uow.commit()
    return sessions


def stored_sessions(uow_factory: SqlUnitOfWorkFactory, count: int) -> list[LiveSession]:
    with uow_factory() as uow:
        found = [uow.sessions.get(f"shop-{i:03d}", f"session-{i:03d}") for i in range(count)]
    return [s for s in found if s is not None]


def closed_events(uow_factory: SqlUnitOfWorkFactory, count: int) -> list[tuple[Any, ...]]:
    with uow_factory() as uow:
        return [
            e
            for i in range(count)
            for e in uow.events.list(tenant_id=f"shop-{i:03d}", event_type="live_session.closed")
        ]


@pytest.mark.timeout(60)
class TestConcurrentSessionCreation:
    def test_twenty_sellers_at_once_open_exactly_one_session_and_no_caller_sees_an_error(
        self, pg_uow_factory: SqlUnitOfWorkFactory
    ) -> None:
        with pg_uow_factory() as uow:
            uow.tenants.add(tenant("shop-a"))
            uow.commit()
        ids = SequentialIds("s")

        def attach(_: int) -> str | None:
            with pg_uow_factory() as uow:
                session_id = attach_to_current_session(
                    uow,
                    tenant_id="shop-a",
                    sender=SenderType.SELLER,
                    at=T0,
                    now=T0,
                    window=WINDOW,
                    ids=ids,
                    correlation_id="c",
                )
                uow.commit()
            return session_id

        results = run_together(20, attach)

        with pg_uow_factory() as uow:
            active = uow.sessions.get_active("shop-a")
            opened = uow.events.list(tenant_id="shop-a", event_type="live_session.opened")
            counts = uow.sessions.count_active()
        assert [] == errors(results)
        assert active is not None
        assert {active.id} == set(results)
        assert 20 == active.seller_message_count
        assert 1 == len(opened)
        assert {"shop-a": 1} == counts

    def test_twenty_inbound_seller_messages_at_once_join_one_session_and_record_each_once(
        self, pg_uow_factory: SqlUnitOfWorkFactory
    ) -> None:
        with pg_uow_factory() as uow:
            uow.tenants.add(tenant("shop-a"))
            uow.sellers.add(seller("shop-a", SELLER_PHONE))
            uow.commit()
        ids = SequentialIds("m")
        clock = FixedClock(T0)

        def receive(index: int) -> Any:
            payload = {
                "tenantId": "shop-a",
                # Two deliveries of each message: idempotency races with session creation.
                "providerMessageId": f"SM{index % 10}",
                "from": f"whatsapp:{SELLER_PHONE}",
                "body": "Live in 5 minutes!",
                "correlationId": f"corr-{index}",
            }
            return process_inbound_message(
                payload, uow_factory=pg_uow_factory, clock=clock, ids=ids, window=WINDOW
            )

        results = run_together(20, receive)

        with pg_uow_factory() as uow:
            active = uow.sessions.get_active("shop-a")
            classified = uow.events.list(tenant_id="shop-a", event_type="message.classified")
        assert [] == errors(results)
        assert all(isinstance(r, Processed) for r in results)
        assert active is not None
        assert {active.id} == {r.enriched["liveSessionId"] for r in results}
        assert 10 == len(classified)
        assert 10 == active.seller_message_count


def _claim_until_empty(url: str, barrier: Any, results: Any, batch: int) -> None:
    """One sender process: claim batch after batch until nothing is due; report what it got."""
    engine = build_engine(url, pool_size=1)
    uow_factory = SqlUnitOfWorkFactory(engine)
    claimed: list[str] = []
    try:
        barrier.wait(30)
        empty_in_a_row = 0
        while empty_in_a_row < 3:
            with uow_factory() as uow:
                got = uow.outbox.claim_due(STALE_NOW, LEASE, batch)
                uow.commit()
            claimed.extend(m.id for m in got)
            empty_in_a_row = 0 if got else empty_in_a_row + 1
    finally:
        engine.dispose()
        results.put(claimed)


@pytest.mark.slow
@pytest.mark.timeout(120)
class TestConcurrentClaims:
    def test_four_processes_claim_two_thousand_due_messages_each_exactly_once(
        self, pg_uow_factory: SqlUnitOfWorkFactory, postgres_url: str
    ) -> None:
        with pg_uow_factory() as uow:
            for t in range(5):
                uow.tenants.add(tenant(f"shop-{t}"))
            for i in range(2000):
                uow.outbox.add(
                    OutboxMessage.new(
                        id=f"out-{i:04d}",
                        tenant_id=f"shop-{i % 5 if i >= 500 else 0}",
                        to_phone=f"+3369876{i:04d}",  # one each: none waits for another
                        body="Your order is confirmed",
                        correlation_id=f"c-{i}",
                        now=T0 + timedelta(milliseconds=i),
                    )
                )
            uow.commit()
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(4)
        results = context.Queue()
        processes = [
            context.Process(
                target=_claim_until_empty, args=(postgres_url, barrier, results, 50), daemon=True
            )
            for _ in range(4)
        ]
        for process in processes:
            process.start()
        per_process = [results.get(timeout=90) for _ in processes]
        for process in processes:
            process.join(10)

        claimed = [message_id for got in per_process for message_id in got]
        with pg_uow_factory() as uow:
            attempts = Counter(
                uow.outbox.get(f"shop-{i % 5 if i >= 500 else 0}", f"out-{i:04d}").attempts  # type: ignore[union-attr]
                for i in range(2000)
            )
        assert [0, 0, 0, 0] == [p.exitcode for p in processes]
        assert 2000 == len(claimed)
        assert 2000 == len(set(claimed))
        assert {1: 2000} == attempts
        assert all(got for got in per_process), "every process should have claimed some rows"

    def test_concurrent_claimers_never_hold_two_messages_to_one_recipient_at_once(
        self, pg_uow_factory: SqlUnitOfWorkFactory
    ) -> None:
        """ADR 0020: four claimers, each its own Postgres session, claim and record sent as fast as
        they can; a recipient's next message is claimed only after the previous one's ``sent``
        committed, so each recipient's claims come in written order, one at a time."""
        recipients, per_recipient = 10, 30
        with pg_uow_factory() as uow:
            uow.tenants.add(tenant("shop-0"))
            for n in range(recipients * per_recipient):
                uow.outbox.add(
                    OutboxMessage.new(
                        id=f"out-{n:04d}",
                        tenant_id="shop-0",
                        to_phone=f"+3369876{n % recipients:04d}",
                        body="Your order is confirmed",
                        correlation_id=f"c-{n}",
                        now=T0 + timedelta(milliseconds=n),
                    )
                )
            uow.commit()
        lock = threading.Lock()
        in_flight: set[str] = set()
        overlaps: list[str] = []
        claimed: dict[str, list[str]] = {}
        now = T0 + timedelta(seconds=10)

        def work(_index: int) -> int:
            done = 0
            for _ in range(2000):
                with pg_uow_factory() as uow:
                    batch = list(uow.outbox.claim_due(now, LEASE, 4))
                    uow.commit()
                with lock:
                    for message in batch:
                        if message.to_phone in in_flight:
                            overlaps.append(message.id)
                        in_flight.add(message.to_phone)
                        claimed.setdefault(message.to_phone, []).append(message.id)
                    finished = sum(len(ids) for ids in claimed.values())
                if not batch and finished == recipients * per_recipient:
                    return done
                for message in batch:
                    message.mark_sent(f"SM-{message.id}", now)
                    with pg_uow_factory() as uow:
                        assert uow.outbox.save_outcome(message)
                        with lock:  # before the commit: the successor is claimable only after
                            in_flight.discard(message.to_phone)
                        uow.commit()
                    done += 1
            return done

        results = run_together(4, work, timeout=50)

        assert [] == errors(results)
        assert [] == overlaps
        assert recipients * per_recipient == sum(results)
        total = recipients * per_recipient
        assert {
            f"+3369876{r:04d}": [f"out-{n:04d}" for n in range(r, total, recipients)]
            for r in range(recipients)
        } == claimed


@pytest.mark.timeout(60)
class TestClosingJobRaces:
    def test_the_closing_job_racing_with_touches_never_reopens_a_closed_session(
        self, pg_uow_factory: SqlUnitOfWorkFactory
    ) -> None:
        count = 60
        open_stale_sessions(pg_uow_factory, count)
        clock = FixedClock(STALE_NOW)
        landed: Counter[str] = Counter()
        lock = threading.Lock()

        def close(_: int) -> int:
            report = close_inactive_sessions(
                uow_factory=pg_uow_factory, clock=clock, window=WINDOW, batch_limit=7, run_id="r"
            )
            return report.closed_count

        def touch(worker: int) -> int:
            for i in range(count):
                index = (i * 7 + worker * 13) % count
                with pg_uow_factory() as uow:
                    touched = uow.sessions.touch(
                        f"shop-{index:03d}", f"session-{index:03d}", STALE_NOW, SenderType.CLIENT
                    )
                    uow.commit()
                if touched is not None:
                    with lock:
                        landed[touched.id] += 1
            return 0

        results = run_together(5, lambda i: close(i) if i == 0 else touch(i))

        sessions = stored_sessions(pg_uow_factory, count)
        events = {e[2]: e[3] for e in closed_events(pg_uow_factory, count)}
        closed = [s for s in sessions if s.status is SessionStatus.CLOSED]
        assert [] == errors(results)
        assert results[0] == len(closed)
        assert len(closed) == len(events)
        # Every touch that reported success is in the stored count, and none landed after a
        # closure: a closed session still has the counts its closing event recorded.
        assert {s.id: s.client_message_count for s in sessions if s.client_message_count} == dict(
            landed
        )
        assert all(events[s.id]["clientMessageCount"] == s.client_message_count for s in closed)
        assert all(s.last_activity_at == STALE_NOW for s in sessions if s.is_active)

    def test_two_closing_jobs_at_once_close_each_session_once_with_one_event(
        self, pg_uow_factory: SqlUnitOfWorkFactory
    ) -> None:
        count = 150
        open_stale_sessions(pg_uow_factory, count)
        clock = FixedClock(STALE_NOW)

        def close(worker: int) -> list[str]:
            report = close_inactive_sessions(
                uow_factory=pg_uow_factory,
                clock=clock,
                window=WINDOW,
                batch_limit=10,
                run_id=f"run-{worker}",
            )
            return [c.session_id for c in report.closed]

        results = run_together(2, close)

        closed_by = [session_id for got in results for session_id in got]
        events = closed_events(pg_uow_factory, count)
        assert [] == errors(results)
        assert count == len(closed_by)
        assert count == len(set(closed_by))
        assert all(s.status is SessionStatus.CLOSED for s in stored_sessions(pg_uow_factory, count))
        assert Counter({f"session-{i:03d}": 1 for i in range(count)}) == Counter(
            e[2] for e in events
        )
