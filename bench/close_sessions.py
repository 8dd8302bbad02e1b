"""How long the closing job takes to close 10,000 stale live sessions on the real Postgres.

    .venv/bin/python bench/close_sessions.py [--sessions 10000] [--batch 100]

One stale active session per tenant (the partial unique index allows no more), then:
1. one run of ``close_inactive_sessions`` with ``CLOSE_BATCH_LIMIT`` = ``--batch``;
2. the same again with two closers racing (two processes' worth: two threads, two connections),
   checking each session is closed once with one ``live_session.closed`` event.
Beside it, what the original design needs for the same backlog (100 sessions per 10-minute run).
"""

from __future__ import annotations

import argparse
import threading
import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from support import DEFAULT_SERVER, bench_database, json_output

from adapters.memory.clock import FixedClock
from adapters.sqlalchemy import tables
from adapters.sqlalchemy.engine import build_engine
from adapters.sqlalchemy.unit_of_work import SqlUnitOfWorkFactory
from application.live_sessions import CloseReport, close_inactive_sessions
from domain.live_sessions import InactivityWindow

NOW = datetime(2026, 6, 1, 20, 0, tzinfo=UTC)
WINDOW = InactivityWindow(45)
ORIGINAL_PER_RUN = 100
ORIGINAL_INTERVAL_MINUTES = 10


def seed(engine: sa.Engine, sessions: int) -> None:
    """``sessions`` tenants, each with one active session idle for an hour."""
    idle_since = NOW - timedelta(hours=1)
    with engine.begin() as connection:
        connection.execute(sa.delete(tables.event_logs))
        connection.execute(sa.delete(tables.live_sessions))
        connection.execute(sa.delete(tables.tenants))
        connection.execute(
            sa.insert(tables.tenants),
            [
                {
                    "id": f"t{i:06d}",
                    "name": f"Shop {i}",
                    "default_region": "FR",
                    "created_at": idle_since,
                }
                for i in range(sessions)
            ],
        )
        connection.execute(
            sa.insert(tables.live_sessions),
            [
                {
                    "id": f"s{i:06d}",
                    "tenant_id": f"t{i:06d}",
                    "status": "active",
                    "started_at": idle_since - timedelta(hours=1),
                    "last_activity_at": idle_since,
                    "seller_message_count": 3,
                    "client_message_count": 40,
                }
                for i in range(sessions)
            ],
        )


def close_all(uow_factory: SqlUnitOfWorkFactory, batch: int, run_id: str) -> CloseReport:
    return close_inactive_sessions(
        uow_factory=uow_factory,
        clock=FixedClock(NOW),
        window=WINDOW,
        batch_limit=batch,
        run_id=run_id,
    )


def counts(engine: sa.Engine) -> tuple[int, int, int]:
    with engine.connect() as connection:
        active = connection.scalar(
            sa.select(sa.func.count()).where(tables.live_sessions.c.status == "active")
        )
        closed = connection.scalar(
            sa.select(sa.func.count()).where(tables.live_sessions.c.status == "closed")
        )
        events = connection.scalar(
            sa.select(sa.func.count()).where(
                tables.event_logs.c.event_type == "live_session.closed"
            )
        )
    return int(active or 0), int(closed or 0), int(events or 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=DEFAULT_SERVER)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100, help="CLOSE_BATCH_LIMIT")
    parser.add_argument("--json", action="store_true", help="the figures as JSON on stdout")
    args = parser.parse_args()

    with json_output(args.json) as figures, bench_database(args.server) as url:
        engine = build_engine(url, pool_size=4)
        uow_factory = SqlUnitOfWorkFactory(engine)

        seed(engine, args.sessions)
        started = time.perf_counter()
        report = close_all(uow_factory, args.batch, "bench-one")
        one = time.perf_counter() - started
        active, closed, events = counts(engine)
        print(f"stale sessions                {args.sessions:>10,}")
        print(
            f"one closer, batch {args.batch:<5}       {one:>10.2f} s"
            f"  ({report.closed_count / one:,.0f} sessions/s, {report.batches} batches)"
        )
        print(f"  after: active={active} closed={closed} closed-events={events}")
        figures["one_closer_sessions_per_s"] = report.closed_count / one

        seed(engine, args.sessions)
        reports: list[CloseReport] = []
        lock = threading.Lock()

        def closer(name: str) -> None:
            result = close_all(uow_factory, args.batch, name)
            with lock:
                reports.append(result)

        threads = [threading.Thread(target=closer, args=(f"bench-{n}",)) for n in (1, 2)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        two = time.perf_counter() - started
        active, closed, events = counts(engine)
        by_closer = sorted(r.closed_count for r in reports)
        print(
            f"two closers racing            {two:>10.2f} s  (closed {by_closer[0]:,} + "
            f"{by_closer[1]:,} = {sum(by_closer):,})"
        )
        print(
            f"  after: active={active} closed={closed} closed-events={events}"
            f" -> each closed once: {closed == events == sum(by_closer) == args.sessions}"
        )
        figures["two_closers_sessions_per_s"] = sum(by_closer) / two
        figures["each_closed_once"] = closed == events == sum(by_closer) == args.sessions

        original_runs = -(-args.sessions // ORIGINAL_PER_RUN)
        original_hours = (original_runs - 1) * ORIGINAL_INTERVAL_MINUTES / 60
        print(
            f"original design (100 per {ORIGINAL_INTERVAL_MINUTES}-min run): {original_runs} runs,"
            f" last one {original_hours:.1f} h after the first"
        )
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
