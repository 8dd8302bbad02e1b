"""Persistence benchmark on the real Postgres: per-operation cost, operations per second, and
round trips per inbound message.

    .venv/bin/python bench/persistence.py [--server postgresql://postgres@127.0.0.1:5432]
                                          [--seconds 2]

Creates its own database ``livesell_bench_<random>``, migrates it, measures each operation for
about ``--seconds`` (sequentially, one connection: latency, not a load test), prints the figures
and drops the database. Each timed operation is a whole unit of work: checkout (no pre-ping since
ADR 0028), statements, commit.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine
from support import START_POSTGRES, bench_database, json_output

from adapters.memory.clock import FixedClock, SequentialIds
from adapters.sqlalchemy.engine import build_engine
from adapters.sqlalchemy.unit_of_work import SqlUnitOfWorkFactory
from application.inbound import process_inbound_message
from application.live_sessions import attach_to_current_session
from domain.inbound import InboundMessage, InboundRecord
from domain.live_sessions import InactivityWindow
from domain.outbox import OutboxMessage
from domain.senders import SenderType
from domain.tenants import Seller, Tenant

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TENANTS = 50
WINDOW = InactivityWindow(45)
LEASE = timedelta(seconds=60)


def seller_phone(t: int) -> str:
    return f"+336{t:08d}"


class Result:
    def __init__(self, name: str, unit: str, timings: list[float], per: int = 1) -> None:
        self.name, self.unit, self.timings, self.per = name, unit, timings, per

    def figures(self) -> dict[str, float]:
        ms = [t * 1000 for t in self.timings]
        mean = statistics.fmean(ms)
        return {"n": len(ms), "mean_ms": mean, "per_s": 1000 / mean * self.per}

    def row(self) -> str:
        ms = sorted(t * 1000 for t in self.timings)
        mean = statistics.fmean(ms)
        p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
        ops = 1000 / mean * self.per
        return (
            f"{self.name:<38} {len(ms):>6} {mean:>9.3f} {statistics.median(ms):>9.3f}"
            f" {p95:>9.3f} {ops:>12,.0f} {self.unit}/s"
        )


def measure(seconds: float, operation: Callable[[int], None], limit: int = 100_000) -> list[float]:
    timings: list[float] = []
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline and i < limit:
        start = time.perf_counter()
        operation(i)
        timings.append(time.perf_counter() - start)
        i += 1
    return timings


def seed(uow_factory: SqlUnitOfWorkFactory) -> None:
    with uow_factory() as uow:
        for t in range(TENANTS):
            uow.tenants.add(Tenant(id=f"shop-{t}", name=f"Shop {t}", created_at=T0))
            uow.sellers.add(
                Seller(
                    id=f"seller-{t}",
                    tenant_id=f"shop-{t}",
                    phone_e164=seller_phone(t),
                    created_at=T0,
                )
            )
        uow.commit()


def fill_outbox(uow_factory: SqlUnitOfWorkFactory, count: int, prefix: str) -> None:
    with uow_factory() as uow:
        for i in range(count):
            uow.outbox.add(
                OutboxMessage.new(
                    id=f"{prefix}-{i:07d}",
                    tenant_id=f"shop-{i % TENANTS}",
                    to_phone=f"+336{10000000 + i:08d}",  # one recipient each (ADR 0020)
                    body="Your order is confirmed",
                    correlation_id=f"c-{i}",
                    now=T0 + timedelta(microseconds=i),
                )
            )
        uow.commit()


class StatementCounter:
    """Counts statements (before_cursor_execute) and transaction boundaries sent to the server."""

    def __init__(self, engine: Engine) -> None:
        self.statements = 0
        self.begins = 0
        self.commits = 0
        self.rollbacks = 0
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "commit", self._commit)
        event.listen(engine, "rollback", self._rollback)

    def _statement(self, *_: Any) -> None:
        self.statements += 1

    def _begin(self, *_: Any) -> None:
        self.begins += 1

    def _commit(self, *_: Any) -> None:
        self.commits += 1

    def _rollback(self, *_: Any) -> None:
        self.rollbacks += 1

    def reset(self) -> None:
        self.statements = self.begins = self.commits = self.rollbacks = 0

    def round_trips(self) -> int:
        return self.statements + self.begins + self.commits + self.rollbacks


def round_trips_per_inbound(engine: Engine, uow_factory: SqlUnitOfWorkFactory) -> list[str]:
    counter = StatementCounter(engine)
    clock = FixedClock(T0 + timedelta(days=1))
    ids = SequentialIds("rt")
    lines = []
    cases = [
        ("seller message, opens the session", 7, seller_phone(7), "RT1"),
        ("seller message, session current", 7, seller_phone(7), "RT2"),
        ("client message, joins the session", 7, "+33698765432", "RT3"),
        ("client message, no session", 8, "+33698765432", "RT4"),
        ("duplicate delivery", 7, seller_phone(7), "RT1"),
    ]
    for label, t, sender, sid in cases:
        counter.reset()
        process_inbound_message(
            {
                "tenantId": f"shop-{t}",
                "providerMessageId": sid,
                "from": f"whatsapp:{sender}",
                "body": "hello",
                "correlationId": f"corr-{sid}",
            },
            uow_factory=uow_factory,
            clock=clock,
            ids=ids,
            window=WINDOW,
        )
        lines.append(
            f"  {label:<36} {counter.statements:>2} statements + {counter.begins} BEGIN"
            f" + {counter.commits + counter.rollbacks} COMMIT/ROLLBACK"
            f" = {counter.round_trips():>2} round trips"
        )
    return lines


def run(server: str, seconds: float) -> dict[str, dict[str, float]]:
    with bench_database(server) as url:
        engine = build_engine(url, pool_size=5)
        uow_factory = SqlUnitOfWorkFactory(engine)
        seed(uow_factory)
        results: list[Result] = []

        def lookup(i: int) -> None:
            t = i % TENANTS
            with uow_factory() as uow:
                uow.sellers.find_by_key(f"shop-{t}", seller_phone(t))

        results.append(Result("seller lookup (own unit of work)", "ops", measure(seconds, lookup)))

        clock = FixedClock(T0)
        ids = SequentialIds("b")

        def get_or_create_and_touch(i: int) -> None:
            with uow_factory() as uow:
                attach_to_current_session(
                    uow,
                    tenant_id=f"shop-{i % TENANTS}",
                    sender=SenderType.SELLER if i % 3 == 0 else SenderType.CLIENT,
                    at=T0 + timedelta(milliseconds=i),
                    now=T0 + timedelta(milliseconds=i),
                    window=WINDOW,
                    ids=ids,
                    correlation_id=f"c-{i}",
                )
                uow.commit()

        results.append(
            Result(
                "get-or-create-and-touch session", "ops", measure(seconds, get_or_create_and_touch)
            )
        )

        def inbound_insert(i: int) -> None:
            record = InboundRecord(
                id=f"in-{i:07d}",
                message=InboundMessage(
                    tenant_id=f"shop-{i % TENANTS}",
                    provider_message_id=f"SM{i:07d}",
                    from_address="whatsapp:+33698765432",
                    body="I'll take it",
                    correlation_id=f"c-{i}",
                    received_at=T0,
                ),
            )
            with uow_factory() as uow:
                uow.inbound.add(record)
                uow.commit()

        results.append(Result("inbound insert", "ops", measure(seconds, inbound_insert)))

        def full_inbound(i: int) -> None:
            t = i % TENANTS
            process_inbound_message(
                {
                    "tenantId": f"shop-{t}",
                    "providerMessageId": f"PM{i:07d}",
                    "from": f"whatsapp:{seller_phone(t) if i % 4 == 0 else '+33698765432'}",
                    "body": "hello",
                    "correlationId": f"corr-{i}",
                },
                uow_factory=uow_factory,
                clock=clock,
                ids=ids,
                window=WINDOW,
            )

        results.append(
            Result("process_inbound_message (whole job)", "msgs", measure(seconds, full_inbound))
        )

        batches = 40
        fill_outbox(uow_factory, batches * 100, "out")
        claimed: list[OutboxMessage] = []
        now = T0 + timedelta(minutes=5)

        def claim(_: int) -> None:
            with uow_factory() as uow:
                claimed.extend(uow.outbox.claim_due(now, LEASE, 100))
                uow.commit()

        results.append(
            Result(
                "claim a batch of 100 (50 tenants)",
                "msgs",
                measure(seconds, claim, batches),
                per=100,
            )
        )

        def mark_sent(i: int) -> None:
            message = claimed[i]
            message.mark_sent(f"SM-{i}", now)
            with uow_factory() as uow:
                uow.outbox.save_outcome(message)
                uow.commit()

        results.append(
            Result(
                "mark sent (one message per commit)",
                "ops",
                measure(seconds, mark_sent, len(claimed) // 2),
            )
        )
        rest = claimed[len(claimed) // 2 :]
        per_row, grouped = rest[: len(rest) // 2], rest[len(rest) // 2 :]

        def mark_sent_batch(i: int) -> None:
            batch = per_row[i * 100 : (i + 1) * 100]
            with uow_factory() as uow:
                for j, message in enumerate(batch):
                    message.mark_sent(f"SMb-{i}-{j}", now)
                    uow.outbox.save_outcome(message)
                uow.commit()

        def mark_sent_grouped(i: int) -> None:
            batch = grouped[i * 100 : (i + 1) * 100]
            for j, message in enumerate(batch):
                message.mark_sent(f"SMg-{i}-{j}", now)
            with uow_factory() as uow:
                uow.outbox.save_outcomes(batch)
                uow.commit()

        results.append(
            Result(
                "mark sent (100 per commit, row by row)",
                "msgs",
                measure(seconds, mark_sent_batch, len(per_row) // 100),
                per=100,
            )
        )
        results.append(
            Result(
                "mark sent (100 in one statement)",
                "msgs",
                measure(seconds, mark_sent_grouped, len(grouped) // 100),
                per=100,
            )
        )

        with engine.connect() as connection:
            version = connection.exec_driver_sql("SHOW server_version").scalar()
        print(
            f"livesell persistence benchmark: PostgreSQL {version}, {TENANTS} tenants,"
            f" one connection, ~{seconds:g} s per operation"
        )
        print()
        print(
            f"{'operation':<38} {'n':>6} {'mean ms':>9} {'p50 ms':>9} {'p95 ms':>9}"
            f" {'throughput':>12}"
        )
        for result in results:
            print(result.row())
        print()
        print("round trips per inbound message (process_inbound_message):")
        for line in round_trips_per_inbound(engine, uow_factory):
            print(line)
        engine.dispose()
    return {result.name: result.figures() for result in results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--json", action="store_true", help="the figures as JSON on stdout")
    args = parser.parse_args()
    try:
        with json_output(args.json) as figures:
            figures.update(run(args.server, args.seconds))
    except sa.exc.OperationalError as exc:
        print(f"cannot reach Postgres at {args.server}: {exc.orig}", file=sys.stderr)
        print(f"Start it with: {START_POSTGRES}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
