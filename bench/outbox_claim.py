"""The outbox claim statement alone on the real Postgres, at the sizes of
``bench/outbox_throughput.py`` (20,000 messages, 5,000 recipients with 4 each, 4 tenants).

    .venv/bin/python bench/outbox_claim.py [--server postgresql://postgres@127.0.0.1:5432]
        [--messages 20000] [--recipients 5000] [--limit 200] [--rounds 2] [--explain] [--gap S]

Drains the backlog by claiming ``--limit`` at a time, each claim followed by one set-based UPDATE
marking the claimed rows ``sent`` (what the sender's recording does, without the sends), and
prints the mean claim time and the claimed messages per second of the statement alone; the whole
drain runs ``--rounds`` times. ``--explain`` prints ``EXPLAIN (ANALYZE, BUFFERS)`` of the claim
after the first claim of the first round (so a batch of heads is ``sending``), rolled back.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from support import bench_database

from adapters.sqlalchemy.engine import build_engine
from adapters.sqlalchemy.tables import messages_out, tenants
from adapters.sqlalchemy.unit_of_work import SqlUnitOfWorkFactory
from adapters.system.clock import TimeOrderedIds

LEASE = timedelta(seconds=60)


def write_backlog(engine: sa.Engine, count: int, recipients: int, tenant_count: int) -> None:
    ids = TimeOrderedIds()
    now = datetime.now(UTC)
    names = [f"shop-{n}" for n in range(tenant_count)]
    with engine.begin() as connection:
        connection.exec_driver_sql("TRUNCATE messages_out, event_logs, tenants CASCADE")
        connection.execute(
            sa.insert(tenants),
            [{"id": t, "name": t, "default_region": "FR", "created_at": now} for t in names],
        )
        rows = [
            {
                "id": ids.new_id(),
                "tenant_id": names[n % recipients % tenant_count],
                "to_phone": f"+336{n % recipients:08d}",
                "body": f"bench {n}",
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "correlation_id": f"bench-{n}",
                "created_at": now,
                "updated_at": now,
            }
            for n in range(count)
        ]
        for start in range(0, len(rows), 5000):
            connection.execute(sa.insert(messages_out), rows[start : start + 5000])
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("ANALYZE")


def explain(engine: sa.Engine, limit: int, gap: timedelta = timedelta(0)) -> None:
    from adapters.sqlalchemy.repositories import outbox

    now = datetime.now(UTC)
    statement, parameters = outbox.claim_statement(now, LEASE, limit, gap)
    compiled = statement.compile(dialect=engine.dialect)
    with engine.connect() as connection:
        plan = connection.exec_driver_sql(
            "EXPLAIN (ANALYZE, BUFFERS) " + str(compiled),
            compiled.construct_params(parameters),
        )
        print("\n".join(row[0] for row in plan))
        connection.rollback()


def drain(
    engine: sa.Engine, limit: int, explain_first: bool, gap: timedelta = timedelta(0)
) -> tuple[list[float], int]:
    uow_factory = SqlUnitOfWorkFactory(engine)
    timings: list[float] = []
    claimed_total = 0
    while True:
        now = datetime.now(UTC)
        with uow_factory() as uow:
            started = time.perf_counter()
            claimed = uow.outbox.claim_due(now, LEASE, limit, gap)
            timings.append(time.perf_counter() - started)
            uow.commit()
        if not claimed:
            return timings[:-1], claimed_total
        claimed_total += len(claimed)
        if explain_first:
            explain(engine, limit, gap)
            explain_first = False
        with engine.begin() as connection:
            connection.execute(
                sa.update(messages_out)
                .where(messages_out.c.id.in_([m.id for m in claimed]))
                .values(status="sent", sent_at=now, locked_until=None, updated_at=now)
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--recipients", type=int, default=5000)
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument(
        "--gap", type=float, default=0.0, help="the paced claim (ADR 0025): seconds between sends"
    )
    args = parser.parse_args()
    with bench_database(args.server) as url:
        engine = build_engine(url, pool_size=2)
        try:
            for round_ in range(args.rounds):
                write_backlog(engine, args.messages, args.recipients, args.tenants)
                timings, claimed = drain(
                    engine, args.limit, args.explain and round_ == 0, timedelta(seconds=args.gap)
                )
                mean = statistics.fmean(timings)
                print(
                    f"round {round_ + 1}: {len(timings)} claims of up to {args.limit},"
                    f" {claimed} claimed; claim mean {mean * 1000:.1f} ms,"
                    f" median {statistics.median(timings) * 1000:.1f} ms;"
                    f" {claimed / sum(timings):,.0f} claimed msg/s (the statement alone)"
                )
        finally:
            engine.dispose()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
