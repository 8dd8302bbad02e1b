"""Outbox sender benchmark on the real Postgres with the simulated provider.

Creates its own database (``livesell_bench_<random>``), migrates it, runs each scenario against a
real sender process (``livesell worker --only outbox``), prints the figures and drops the database.

Scenarios:
  throughput-0ms       messages/s with provider latency 0 ms (one sender process), 5,000
                       recipients with 4 messages each (order per recipient holds, ADR 0020)
  throughput-0ms-2proc the same with two sender processes
  few-recipients-0ms   the same with 1,000 messages to 10 recipients (one-recipient-heavy: each
                       recipient's messages go one at a time)
  defaults-0ms         the same on the defaults of OUTBOX_BATCH_SIZE and OUTBOX_SEND_CONCURRENCY
                       (the rate limit lifted: the sender's own cost, what operators run)
  one-number-200ms     messages/s at 200 ms for one sender number limited to 80/s
  four-numbers-200ms   messages/s at 200 ms over four tenants with their own numbers (80/s each)
  idle-latency         p50/p99 from row written to ``sent`` when the outbox is idle (0 ms)
  original-200ms       the original design in this process: a batch of 10 every 5 s, one send at
                       a time, provider latency 200 ms

Usage: .venv/bin/python bench/outbox_throughput.py [--server postgresql://postgres@127.0.0.1:5432]
       [--messages 20000] [--original-seconds 20] [--only SCENARIO,...] [--profile]
"""

from __future__ import annotations

import argparse
import os
import pstats
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from support import ROOT, bench_database, json_output

from adapters.simulated.provider import SimulatedMessagingProvider
from adapters.sqlalchemy.engine import build_engine
from adapters.sqlalchemy.tables import messages_out, tenants
from adapters.sqlalchemy.unit_of_work import SqlUnitOfWorkFactory
from adapters.system.clock import SystemClock, TimeOrderedIds
from adapters.system.executor import InlineExecutor
from adapters.system.waiting import ThreadWaiter
from application.outbox import DEFAULT_LEASE, queue_outbound_message
from application.outbox_sender import OutboxSender
from domain.retry import RetryPolicy

CLIENT = "+33612345678"
NUMBERS = ["+33199000001", "+33199000002", "+33199000003", "+33199000004"]
SCENARIOS = (
    "throughput-0ms",
    "throughput-0ms-2proc",
    "few-recipients-0ms",
    "defaults-0ms",
    "one-number-200ms",
    "four-numbers-200ms",
    "idle-latency",
    "original-200ms",
)


# -- database ----------------------------------------------------------------------------------


def reset(engine: sa.Engine, tenant_numbers: dict[str, str | None]) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "TRUNCATE messages_out, dead_letter_jobs, event_logs, sellers, live_sessions,"
            " inbound_messages, tenants CASCADE"
        )
        connection.execute(
            sa.insert(tenants),
            [
                {
                    "id": tenant,
                    "name": tenant,
                    "whatsapp_number": number,
                    "default_region": "FR",
                    "created_at": datetime.now(UTC),
                }
                for tenant, number in tenant_numbers.items()
            ],
        )


def recipient(n: int) -> str:
    return f"+336{n:08d}"


def write_backlog(
    engine: sa.Engine,
    tenant_numbers: dict[str, str | None],
    count: int,
    recipients: int | None = None,
) -> None:
    """``count`` messages, the n-th to recipient ``n % recipients`` (default ``count // 4``: four
    each, so each recipient's messages wait for one another, ADR 0020), each recipient in one
    tenant."""
    ids = TimeOrderedIds()
    now = datetime.now(UTC)
    names = list(tenant_numbers)
    spread = recipients or max(count // 4, 1)
    rows = [
        {
            "id": ids.new_id(),
            "tenant_id": names[n % spread % len(names)],
            "to_phone": recipient(n % spread),
            "from_phone": tenant_numbers[names[n % spread % len(names)]],
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
    with engine.begin() as connection:
        for start in range(0, len(rows), 5000):
            connection.execute(sa.insert(messages_out), rows[start : start + 5000])
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("ANALYZE messages_out")


def count_final(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                sa.select(sa.func.count()).where(messages_out.c.status.in_(("sent", "dead")))
            ).scalar_one()
        )


def sent_span(engine: sa.Engine) -> tuple[int, float]:
    """(messages sent, seconds from the first to the last sent_at)."""
    with engine.connect() as connection:
        count, first, last = connection.execute(
            sa.select(
                sa.func.count(),
                sa.func.min(messages_out.c.sent_at),
                sa.func.max(messages_out.c.sent_at),
            ).where(messages_out.c.status == "sent")
        ).one()
    return int(count), (last - first).total_seconds() if count > 1 else 0.0


# -- a sender process --------------------------------------------------------------------------


PROFILE = False
"""``--profile``: each sender process runs under cProfile in every thread (bench/profiled.py)."""


class SenderProcess:
    def __init__(self, url: str, log_dir: Path, name: str, **env: str) -> None:
        environ = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OUTBOX_", "SIMULATED_", "TWILIO_", "DATABASE_"))
        }
        environ.update(
            {
                "DATABASE_URL": url,
                "MESSAGING_PROVIDER": "simulated",
                "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "info"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        environ.update({k.upper(): v for k, v in env.items()})
        self.log_path = log_dir / f"{name}.log"
        self.profile_path = log_dir / f"{name}.prof" if PROFILE else None
        command = [sys.executable, "-m", "entrypoints.cli", "worker", "--only", "outbox"]
        if self.profile_path is not None:
            command[1:1] = [str(ROOT / "bench" / "profiled.py"), str(self.profile_path)]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=environ,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while "Outbox sender worker started successfully" not in self.log_path.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sender did not start:\n{self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def stop(self) -> int:
        """SIGTERM, then SIGKILL if it has not exited in 40 s: the bench never leaves one behind."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)


def wait_final(engine: sa.Engine, expected: int, timeout: float) -> float:
    started = time.monotonic()
    while count_final(engine) < expected:
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"not done after {timeout}s: {count_final(engine)}/{expected}")
        time.sleep(0.1)
    return time.monotonic() - started


def print_profile(path: Path, top: int = 30) -> None:
    """The heaviest functions of a sender process by own time, and by cumulative time."""
    stats = pstats.Stats(str(path))
    print(f"profile {path} (every thread; own time, then cumulative)")
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


# -- scenarios ---------------------------------------------------------------------------------


def run_backlog(
    url: str,
    engine: sa.Engine,
    log_dir: Path,
    name: str,
    tenant_numbers: dict[str, str | None],
    count: int,
    processes: int = 1,
    recipients: int | None = None,
    **env: str,
) -> dict[str, Any]:
    reset(engine, tenant_numbers)
    write_backlog(engine, tenant_numbers, count, recipients)
    senders: list[SenderProcess] = []
    try:
        for n in range(processes):
            senders.append(SenderProcess(url, log_dir, f"{name}-{n}", **env))
        wall = wait_final(engine, count, timeout=600)
        rss = max(s.peak_rss_mb() for s in senders)
        cpu = sum(s.cpu_seconds() for s in senders)
    finally:
        codes = [s.stop() for s in senders]
    for sender in senders:
        if sender.profile_path is not None:
            print_profile(sender.profile_path)
    sent, span = sent_span(engine)
    return {
        "processes": processes,
        "messages": count,
        "recipients": recipients or max(count // 4, 1),
        "sent": sent,
        "rate": (sent - 1) / span if span else float("nan"),
        "wall_s": wall,
        "span_s": span,
        "peak_rss_mb": rss,
        "sender_cpu_s": cpu,
        "exit": codes,
        "env": env,
    }


def idle_latency(url: str, engine: sa.Engine, log_dir: Path, samples: int) -> dict[str, Any]:
    reset(engine, {"idle-shop": None})
    sender = SenderProcess(
        url,
        log_dir,
        "idle",
        simulated_latency_ms="0",
        outbox_poll_interval_seconds="5",
        outbox_rate_limit_per_second="80",
    )
    uow_factory = SqlUnitOfWorkFactory(engine)
    clock, ids = SystemClock(), TimeOrderedIds()
    written: list[str] = []
    try:
        time.sleep(1.0)
        for n in range(samples):
            written.append(
                queue_outbound_message(
                    uow_factory=uow_factory,
                    tenant_id="idle-shop",
                    to=CLIENT,
                    body=f"idle {n}",
                    correlation_id=f"idle-{n}",
                    clock=clock,
                    ids=ids,
                )
            )
            time.sleep(random.uniform(0.05, 0.1))
        wait_final(engine, samples, timeout=30)
        rss = sender.peak_rss_mb()
    finally:
        sender.stop()
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(messages_out.c.created_at, messages_out.c.sent_at).where(
                messages_out.c.id.in_(written)
            )
        ).all()
    latencies = sorted((sent - created).total_seconds() * 1000 for created, sent in rows)
    return {
        "samples": len(latencies),
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "max_ms": latencies[-1],
        "peak_rss_mb": rss,
    }


def original_design(engine: sa.Engine, seconds: float) -> dict[str, Any]:
    """The TypeScript worker's loop: every 5 s, claim 10 and send them one at a time."""
    reset(engine, {"orig-shop": None})
    write_backlog(engine, {"orig-shop": None}, 1000)
    provider = SimulatedMessagingProvider(latency_ms=200)
    uow_factory = SqlUnitOfWorkFactory(engine)
    stop = threading.Event()
    started = time.monotonic()

    sender = OutboxSender(  # the production sender's cycle, its sends one at a time
        uow_factory=uow_factory,
        provider=provider,
        clock=SystemClock(),
        ids=TimeOrderedIds(),
        policy=RetryPolicy(),
        lease=DEFAULT_LEASE,
        batch_size=10,
        concurrency=10,
        poll_interval=5.0,
        executor=InlineExecutor(),
        waiter=ThreadWaiter(),
    )

    def loop() -> None:
        cycle = 0
        while not stop.is_set():
            sender.run_once()
            cycle += 1  # setInterval(5000): a cycle starts every 5 s (its 10 sends take ~2 s)
            stop.wait(max(0.0, started + 5.0 * cycle - time.monotonic()))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    cycles = max(1, round(seconds / 5.0))
    time.sleep(cycles * 5.0 - 0.5)  # stop before the next cycle: exactly ``cycles`` ran
    stop.set()
    thread.join(10)
    sent = len(provider.sent)
    # steady state: what the cycles sent over the time they cover
    return {"cycles": cycles, "sent": sent, "rate": sent / (cycles * 5.0)}


# -- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--original-seconds", type=float, default=20.0)
    parser.add_argument("--idle-samples", type=int, default=150)
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument("--json", action="store_true", help="the figures as JSON on stdout")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run each sender under cProfile (every thread) and print where its time goes"
        " (slower: the figures are not the unprofiled ones)",
    )
    args = parser.parse_args()
    global PROFILE
    PROFILE = args.profile
    with json_output(args.json) as figures:
        figures.update(run(args))


def run(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    results: dict[str, dict[str, Any]] = {}
    log_dir = Path(tempfile.mkdtemp(prefix="livesell-bench-"))
    print(f"machine: {os.cpu_count()} CPUs; sender logs in {log_dir}")

    with bench_database(args.server) as url:
        engine = build_engine(url, pool_size=5)
        try:
            if "throughput-0ms" in chosen:
                results["throughput-0ms"] = run_backlog(
                    url,
                    engine,
                    log_dir,
                    "throughput-0ms",
                    {f"shop-{n}": None for n in range(4)},
                    args.messages,
                    simulated_latency_ms="0",
                    outbox_batch_size="200",
                    outbox_send_concurrency="400",
                    outbox_rate_limit_per_second="10000",
                )
                report("throughput-0ms", results["throughput-0ms"])
            if "throughput-0ms-2proc" in chosen:
                results["throughput-0ms-2proc"] = run_backlog(
                    url,
                    engine,
                    log_dir,
                    "throughput-0ms-2proc",
                    {f"shop-{n}": None for n in range(4)},
                    args.messages,
                    processes=2,
                    simulated_latency_ms="0",
                    outbox_batch_size="200",
                    outbox_send_concurrency="400",
                    outbox_rate_limit_per_second="10000",
                )
                report("throughput-0ms-2proc", results["throughput-0ms-2proc"])
            if "few-recipients-0ms" in chosen:
                results["few-recipients-0ms"] = run_backlog(
                    url,
                    engine,
                    log_dir,
                    "few-recipients-0ms",
                    {f"shop-{n}": None for n in range(4)},
                    1000,
                    recipients=10,
                    simulated_latency_ms="0",
                    outbox_batch_size="200",
                    outbox_send_concurrency="400",
                    outbox_rate_limit_per_second="10000",
                )
                report("few-recipients-0ms", results["few-recipients-0ms"])
            if "defaults-0ms" in chosen:
                results["defaults-0ms"] = run_backlog(
                    url,
                    engine,
                    log_dir,
                    "defaults-0ms",
                    {f"shop-{n}": None for n in range(4)},
                    args.messages,
                    simulated_latency_ms="0",
                    outbox_rate_limit_per_second="10000",
                )
                report("defaults-0ms", results["defaults-0ms"])
            if "one-number-200ms" in chosen:
                results["one-number-200ms"] = run_backlog(
                    url,
                    engine,
                    log_dir,
                    "one-number-200ms",
                    {"shop-1": NUMBERS[0]},
                    1200,
                    simulated_latency_ms="200",
                    outbox_batch_size="10",
                    outbox_send_concurrency="32",
                    outbox_rate_limit_per_second="80",
                )
                report("one-number-200ms", results["one-number-200ms"])
            if "four-numbers-200ms" in chosen:
                results["four-numbers-200ms"] = run_backlog(
                    url,
                    engine,
                    log_dir,
                    "four-numbers-200ms",
                    {f"shop-{n}": NUMBERS[n] for n in range(4)},
                    4800,
                    simulated_latency_ms="200",
                    outbox_batch_size="20",
                    outbox_send_concurrency="128",
                    outbox_rate_limit_per_second="80",
                )
                report("four-numbers-200ms", results["four-numbers-200ms"])
            if "idle-latency" in chosen:
                results["idle-latency"] = idle_latency(url, engine, log_dir, args.idle_samples)
                report("idle-latency", results["idle-latency"])
            if "original-200ms" in chosen:
                results["original-200ms"] = original_design(engine, args.original_seconds)
                report("original-200ms", results["original-200ms"])
        finally:
            engine.dispose()

    summary(results)
    return results


def report(name: str, result: dict[str, Any]) -> None:
    shown = {
        k: (round(v, 2) if isinstance(v, float) else v) for k, v in result.items() if k != "env"
    }
    print(f"{name:20s} {shown}")
    if "env" in result:
        print(f"{'':20s} config {result['env']}")


def summary(results: dict[str, dict[str, Any]]) -> None:
    print("\nsummary (target)")
    checks: list[tuple[str, float, str, bool]] = []
    if "throughput-0ms" in results:
        rate = results["throughput-0ms"]["rate"]
        checks.append(("msg/s at 0 ms, one process", rate, ">= 3000", rate >= 3000))
    if "throughput-0ms-2proc" in results:
        rate = results["throughput-0ms-2proc"]["rate"]
        checks.append(("msg/s at 0 ms, two processes", rate, ">= 3000", rate >= 3000))
    if "few-recipients-0ms" in results:
        rate = results["few-recipients-0ms"]["rate"]
        checks.append(("msg/s at 0 ms, 10 recipients x 100", rate, "(reference)", True))
    if "one-number-200ms" in results:
        rate = results["one-number-200ms"]["rate"]
        checks.append(("msg/s at 200 ms, one number", rate, ">= 76", rate >= 76))
    if "four-numbers-200ms" in results:
        rate = results["four-numbers-200ms"]["rate"]
        checks.append(("msg/s at 200 ms, four numbers", rate, ">= 300", rate >= 300))
    if "idle-latency" in results:
        p50, p99 = results["idle-latency"]["p50_ms"], results["idle-latency"]["p99_ms"]
        checks.append(("idle p50 written-to-sent ms", p50, "< 50", p50 < 50))
        checks.append(("idle p99 written-to-sent ms", p99, "< 250", p99 < 250))
    if "original-200ms" in results:
        original = results["original-200ms"]["rate"]
        checks.append(("original design msg/s at 200 ms", original, "(reference)", True))
        for key, label in (
            ("one-number-200ms", "ratio at 200 ms, one number"),
            ("four-numbers-200ms", "ratio at 200 ms, four numbers"),
        ):
            if key in results and original:
                ratio = results[key]["rate"] / original
                checks.append((label, ratio, ">= 40", ratio >= 40))
    for label, value, target, ok in checks:
        print(f"  {label:34s} {value:10.1f}  {target:12s} {'ok' if ok else 'MISSED'}")
    rss = [r["peak_rss_mb"] for r in results.values() if "peak_rss_mb" in r]
    if rss:
        print(f"  {'peak RSS of a sender process MB':34s} {max(rss):10.1f}")


if __name__ == "__main__":
    main()
