"""Inbound throughput and latency: the webhook-processor (``livesell worker --only webhook``, the
production settings) draining real payloads on its own Postgres database and Redis database.

Runs, each against a fresh queue:

- **livesell**: ``--jobs`` (5,000) payloads over ``--tenants`` tenants (70 % clients, 30 % sellers)
  through the full SPEC §3 processing; messages/s, p50/p99 enqueue-to-recorded latency (RQ's
  ``enqueued_at`` to the job's ``ended_at``, which follows the commit), the worker processes' CPU
  per job (user + system, from the first enqueue to the drain: the figure that the machine's
  load moves least), peak RSS of the worker;
- **livesell-noop**: the same worker process executing a no-op job: our RQ floor;
- **rq-noop**: a stock RQ ``SimpleWorker`` (``rq worker -w rq.worker.SimpleWorker``) executing the
  no-op job: RQ's own floor;
- with ``--models``, more worker models on the full processing: ``rq-simple`` (one stock
  SimpleWorker), ``rq-pool2`` (``rq worker-pool -n 2``, SimpleWorkers), ``rq-fork`` (the stock
  forking Worker, on ``--jobs / 10``), ``livesell-1proc`` (our engine with all five slots in one
  process, where the production setting uses one process per CPU);
- **steady** (``--rate`` 200/s for ``--seconds`` 30 after ``--warmup-seconds`` 3 not counted, open
  loop, one enqueue per message as the webhook does): p50/p99/max enqueue-to-recorded latency;
  target p99 < 50 ms;
- **breakdown**: ``--profile-jobs`` (2,000) jobs run by the worker part inside this process under
  cProfile (every thread), time per job split into RQ bookkeeping, SQL, our Python, logging and
  waiting, with the SQL statements and Redis round trips per job.

Burst latencies include the time a message waited in the backlog (all jobs are enqueued at once);
the steady run is the latency figure. ``--rss-jobs 100000`` adds a long run sampling the worker's
RSS to show it stays flat. The Redis database (``--redis-db``, default 5; the test suites claim
8-15, the webhook benchmark 7) must be empty and is emptied at the end; the Postgres database is
created and dropped here; every process started here is stopped by its pid; each run is bounded.

    .venv/bin/python bench/inbound_throughput.py [--jobs 5000] [--rate 200 --seconds 30]
        [--models] [--rss-jobs 100000] [--only livesell,steady,...]
"""

from __future__ import annotations

import argparse
import cProfile
import logging
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
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from redis import Redis
from rq import Queue
from rq.utils import utcparse
from support import ROOT, bench_database, json_output

from adapters.rq.connection import redis_connection
from adapters.rq.queue import RqInboundQueue
from adapters.rq.spec import QUEUE_NAME, JobSpec
from application.tenants import add_seller, add_tenant
from entrypoints.container import build
from entrypoints.logs import configure_logging
from entrypoints.settings import Settings
from entrypoints.webhook_worker import process_plan

BIN = Path(sys.executable).parent
NOOP_FUNCTION = "inbound_throughput.noop_job"
RUN_TIMEOUT_SECONDS = 900
ONE_PROCESS_WORKER = """
import sys
from entrypoints.container import build
from entrypoints.logs import configure_logging
from entrypoints.runner import Runner
from entrypoints.settings import Settings
settings = Settings.from_env()
configure_logging(settings.log_format, settings.log_level)
sys.exit(Runner([build(settings).webhook_part(processes=1)]).run())
"""
NOOP_WORKER = """
import os
import sys
import attrs
from dependency_injector import providers
from entrypoints.container import build
from entrypoints.logs import configure_logging
from entrypoints.runner import Runner
from entrypoints.settings import Settings
os.environ["WEBHOOK_WORKER_CONCURRENCY"] = sys.argv[1]
settings = Settings.from_env()
configure_logging(settings.log_format, settings.log_level)
container = build(settings)
spec = attrs.evolve(container.webhook_job_spec(), function=sys.argv[2])
container.webhook_job_spec.override(providers.Object(spec))
sys.exit(Runner([container.webhook_part(processes=1)]).run())
"""
"""One process of the no-op floor: the production engine and part, on a spec whose function is
the no-op. The engine dead-letters a job naming any other function than its spec's (ADR 0014,
``foreign_job``), so the no-op run needs a worker of its own: one such process per entry of
``process_plan`` (3 + 2 slots on 2 CPUs), as ``livesell worker --only webhook`` runs them."""
SELLER_SHARE = 0.3


def noop_job(payload: object) -> None:
    """The job of the floor runs: does nothing."""
    return None


# -- data --------------------------------------------------------------------------------------


def seller_phone(tenant: int, n: int) -> str:
    return f"+336{10000000 + tenant * 10 + n:08d}"


def client_phone(n: int) -> str:
    return f"+336{50000000 + n:08d}"


def seed(database_url: str, tenants: int) -> None:
    container = build(Settings.from_env({"DATABASE_URL": database_url}))
    uow, clock, ids = container.uow_factory(), container.clock(), container.ids()
    for t in range(tenants):
        add_tenant(uow_factory=uow, clock=clock, tenant_id=f"shop-{t:03d}", name=f"Shop {t}")
        for n in range(2):
            add_seller(
                uow_factory=uow,
                clock=clock,
                ids=ids,
                tenant_id=f"shop-{t:03d}",
                phone=seller_phone(t, n),
            )
    container.engine().dispose()


def payloads(count: int, tenants: int, run: str, seed_value: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed_value)
    out = []
    for i in range(count):
        tenant = rng.randrange(tenants)
        sender = seller_phone(tenant, i % 2) if rng.random() < SELLER_SHARE else client_phone(i)
        out.append(
            {
                "tenantId": f"shop-{tenant:03d}",
                "providerMessageId": f"SM{run}{i:010d}",
                "from": f"whatsapp:{sender}",
                "to": "whatsapp:+14155238886",
                "body": "Je prends la robe rouge en M, merci !",
                "correlationId": f"bench-{run}-{i}",
                "profileName": "Client",
            }
        )
    return out


# -- processes ---------------------------------------------------------------------------------


def peak_rss_kib(pid: int) -> int:
    """VmHWM (peak resident set) of ``pid`` and its children, in KiB."""
    total = 0
    pids = [pid]
    try:
        children = subprocess.run(
            ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` and its children (the webhook worker's child processes), in KiB."""
    children = subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    total = 0
    for p in [pid, *(int(c) for c in children)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by ``pid`` and its children, in seconds."""
    children = subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    total = 0
    for p in [pid, *(int(c) for c in children)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


class Worker:
    """A worker process of one model, stopped by its pid (and its children's)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log.open("ab")
        self.process = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                children = subprocess.run(
                    ["pgrep", "-P", str(self.process.pid)],
                    capture_output=True,
                    text=True,
                    check=False,
                ).stdout.split()
                for child in children:
                    os.kill(int(child), signal.SIGKILL)
                self.process.kill()
                self.process.wait(timeout=10)
        self.log.close()


def worker_args(model: str, redis_url: str) -> list[list[str]]:
    rq = [str(BIN / "rq")]
    if model == "livesell":
        return [[str(BIN / "livesell"), "worker", "--only", "webhook"]]
    if model == "livesell-noop":
        return [
            [sys.executable, "-c", NOOP_WORKER, str(slots), NOOP_FUNCTION]
            for slots in process_plan(5)
        ]
    if model == "livesell-1proc":
        return [[sys.executable, "-c", ONE_PROCESS_WORKER]]
    if model in ("rq-noop", "rq-simple"):
        return [
            [
                *rq,
                "worker",
                "-u",
                redis_url,
                "-w",
                "rq.worker.SimpleWorker",
                "--with-scheduler",
                "--logging_level",
                "WARNING",
                QUEUE_NAME,
            ]
        ]
    if model == "rq-pool2":
        return [
            [
                *rq,
                "worker-pool",
                "-u",
                redis_url,
                "-n",
                "2",
                "-w",
                "rq.worker.SimpleWorker",
                "--logging-level",
                "WARNING",
                QUEUE_NAME,
            ]
        ]
    if model == "rq-fork":
        return [[*rq, "worker", "-u", redis_url, "--logging_level", "WARNING", QUEUE_NAME]]
    raise ValueError(model)


# -- measuring ---------------------------------------------------------------------------------


def finished_count(redis: Redis) -> int:
    with redis.pipeline(transaction=False) as pipe:
        pipe.zcard(f"rq:finished:{QUEUE_NAME}")
        pipe.zcard(f"rq:failed:{QUEUE_NAME}")
        done, failed = pipe.execute()
    return int(done) + int(failed)


def job_times(redis: Redis, job_ids: Sequence[str]) -> list[tuple[datetime, datetime]]:
    out = []
    for start in range(0, len(job_ids), 1000):
        with redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids[start : start + 1000]:
                pipe.hmget(f"rq:job:{job_id}", "enqueued_at", "ended_at")
            for enqueued, ended in pipe.execute():
                if enqueued and ended:
                    out.append((utcparse(enqueued.decode()), utcparse(ended.decode())))
    return out


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Bench:
    def __init__(self, args: argparse.Namespace, database_url: str) -> None:
        self.args = args
        self.database_url = database_url
        self.redis_url = f"redis://127.0.0.1:6379/{args.redis_db}"
        self.redis = redis_connection(self.redis_url)
        self.engine = sa.create_engine(database_url, poolclass=sa.NullPool)
        self.tmp = Path(tempfile.mkdtemp(prefix="livesell-bench-"))
        self.spec = JobSpec.webhook_processing(build(Settings.from_env({})).retry_policy())
        self.queue = RqInboundQueue(self.redis, self.spec)
        self.results: list[tuple[str, dict[str, Any]]] = []
        self.run_number = 0

    def env(self, concurrency: int | None = None) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DATABASE_", "REDIS_", "WEBHOOK_", "SENTRY", "LOG_"))
        }
        env.update(DATABASE_URL=self.database_url, REDIS_URL=self.redis_url, LOG_FORMAT="text")
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "bench"), str(ROOT)])
        if concurrency is not None:
            env["WEBHOOK_WORKER_CONCURRENCY"] = str(concurrency)
        return env

    def reset(self) -> None:
        self.redis.flushdb()
        with self.engine.begin() as connection:
            connection.exec_driver_sql(
                "TRUNCATE inbound_messages, live_sessions, event_logs, dead_letter_jobs"
            )

    def start_workers(self, model: str) -> list[Worker]:
        commands = worker_args(model, self.redis_url)
        workers = [
            Worker(command, self.env(), self.tmp / f"{model}-{n}.log")
            for n, command in enumerate(commands)
        ]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            registered = self.redis.scard("rq:workers")
            expected = {"rq-pool2": 2, "livesell": len(process_plan(5))}.get(
                model.removesuffix("-noop"), 1
            )
            if registered >= expected:
                time.sleep(0.5)
                return workers
            if any(w.process.poll() is not None for w in workers):
                break
            time.sleep(0.1)
        for w in workers:
            w.stop()
        raise SystemExit(f"{model}: the worker did not start; see {self.tmp}")

    def enqueue_all(self, items: list[dict[str, Any]], function: str) -> list[str]:
        ids: list[str] = []
        options = self.spec.enqueue_options()
        queue = Queue(QUEUE_NAME, connection=self.redis)
        for start in range(0, len(items), 500):
            data = [
                Queue.prepare_data(function, args=(item,), **options)
                for item in items[start : start + 500]
            ]
            with self.redis.pipeline() as pipe:
                jobs = queue.enqueue_many(data, pipeline=pipe)
                pipe.execute()
            ids += [job.id for job in jobs]
        return ids

    def burst(self, model: str, jobs: int) -> None:
        self.reset()
        self.run_number += 1
        noop = model.endswith("noop")
        items = payloads(jobs, self.args.tenants, f"{self.run_number:02d}")
        workers = self.start_workers(model)
        try:
            cpu_before = sum(cpu_seconds(w.process.pid) for w in workers)
            started = time.monotonic()
            ids = self.enqueue_all(items, NOOP_FUNCTION if noop else self.spec.function)
            enqueue_seconds = time.monotonic() - started
            deadline = started + RUN_TIMEOUT_SECONDS
            while finished_count(self.redis) < jobs and time.monotonic() < deadline:
                if any(w.process.poll() is not None for w in workers):
                    raise SystemExit(f"{model}: a worker process exited; see {self.tmp}")
                time.sleep(0.05)
            drained = finished_count(self.redis)
            cpu = sum(cpu_seconds(w.process.pid) for w in workers) - cpu_before
            rss = sum(peak_rss_kib(w.process.pid) for w in workers)
        finally:
            for w in workers:
                w.stop()
        times = job_times(self.redis, ids)
        first_enqueued = min(t[0] for t in times)
        last_ended = max(t[1] for t in times)
        latencies = [(end - enq).total_seconds() * 1000 for enq, end in times]
        recorded = None
        if not noop:
            with self.engine.connect() as connection:
                recorded = connection.exec_driver_sql(
                    "SELECT count(*) FROM inbound_messages WHERE status = 'processed'"
                ).scalar_one()
        self.results.append(
            (
                model,
                {
                    "jobs": drained,
                    "recorded": recorded,
                    "msg_per_s": len(times) / (last_ended - first_enqueued).total_seconds(),
                    "p50_ms": percentile(latencies, 0.50),
                    "p99_ms": percentile(latencies, 0.99),
                    "worker_cpu_ms_per_job": cpu / max(1, drained) * 1000,
                    "peak_rss_mib": rss / 1024,
                    "enqueue_per_s": jobs / enqueue_seconds,
                },
            )
        )
        self.print_last()

    def steady(self, rate: float, seconds: float, warmup: float) -> None:
        """``warmup`` seconds at the rate first, not counted: a fresh process fills its pool,
        SQLAlchemy's statement cache and psycopg's prepared statements in its first seconds."""
        self.reset()
        self.run_number += 1
        counted = int(rate * seconds)
        skipped = int(rate * warmup)
        total = counted + skipped
        items = payloads(total, self.args.tenants, f"{self.run_number:02d}")
        workers = self.start_workers("livesell")
        ids: list[str] = []
        try:
            begin = time.monotonic()
            for n, item in enumerate(items):
                due = begin + n / rate
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                ids.append(self.queue.enqueue(item))
            late = time.monotonic() - (begin + total / rate)
            deadline = time.monotonic() + 60
            while finished_count(self.redis) < total and time.monotonic() < deadline:
                time.sleep(0.05)
            samples = rss_kib(workers[0].process.pid)
        finally:
            for w in workers:
                w.stop()
        latencies = [
            (end - enq).total_seconds() * 1000 for enq, end in job_times(self.redis, ids[skipped:])
        ]
        self.results.append(
            (
                f"steady {rate:g}/s x {seconds:g}s",
                {
                    "jobs": len(latencies),
                    "p50_ms": percentile(latencies, 0.50),
                    "p99_ms": percentile(latencies, 0.99),
                    "max_ms": max(latencies),
                    "mean_ms": statistics.fmean(latencies),
                    "producer_late_s": max(0.0, late),
                    "rss_mib": samples / 1024,
                },
            )
        )
        self.print_last()

    def rss_run(self, jobs: int) -> None:
        """A long run sampling the worker's RSS (all its processes): flat means no growth with
        the job count."""
        self.reset()
        self.run_number += 1
        workers = self.start_workers("livesell")
        pid = workers[0].process.pid
        samples: list[tuple[int, int]] = []
        try:
            done = 0
            chunk = 5000
            while done < jobs:
                items = payloads(min(chunk, jobs - done), self.args.tenants, f"R{done:07d}", done)
                self.enqueue_all(items, self.spec.function)
                done += len(items)
                deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
                while finished_count(self.redis) < done and time.monotonic() < deadline:
                    time.sleep(0.2)
                samples.append((done, rss_kib(pid)))
                print(f"  rss after {done:>7} jobs: {samples[-1][1] / 1024:6.1f} MiB", flush=True)
        finally:
            for w in workers:
                w.stop()
        first = samples[min(1, len(samples) - 1)][1]
        self.results.append(
            (
                f"rss over {jobs} jobs",
                {
                    "jobs": jobs,
                    "rss_after_10k_mib": first / 1024,
                    "rss_end_mib": samples[-1][1] / 1024,
                    "growth_mib": (samples[-1][1] - first) / 1024,
                },
            )
        )
        self.print_last()

    def print_last(self) -> None:
        name, figures = self.results[-1]
        shown = ", ".join(
            f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()
        )
        print(f"{name:>24}: {shown}", flush=True)

    def breakdown(self, jobs: int) -> None:
        """Run ``jobs`` jobs in this process under cProfile and split the time per job."""
        self.reset()
        self.run_number += 1
        from entrypoints import webhook_worker
        from entrypoints.jobs import install_container

        settings = Settings.from_env(
            {
                "DATABASE_URL": self.database_url,
                "REDIS_URL": self.redis_url,
                # one slot: cProfile's times of a thread include waiting for the GIL, so with
                # several job threads each would be charged for the others' work
                "WEBHOOK_WORKER_CONCURRENCY": "1",
            }
        )
        configure_logging("text", "info")
        log_file = (self.tmp / "breakdown.log").open("w")
        logging.getLogger().handlers[0].setStream(log_file)  # type: ignore[attr-defined]
        container = build(settings)
        engine = container.engine()
        statements = [0]
        checkouts = [0]
        sa.event.listen(engine, "before_cursor_execute", lambda *a: _bump(statements))
        sa.event.listen(engine, "checkout", lambda *a: _bump(checkouts))
        profiles: list[cProfile.Profile] = []

        def profiled_thread() -> None:
            webhook_worker.name_thread()
            profile = cProfile.Profile()
            profiles.append(profile)
            profile.enable()

        container.webhook_engine.add_kwargs(thread_initializer=profiled_thread)
        part = container.webhook_part()
        items = payloads(jobs, self.args.tenants, f"{self.run_number:02d}")
        try:
            part.start()
            stop = threading.Event()
            main_profile = cProfile.Profile()

            def run() -> None:
                main_profile.enable()
                part.run(stop)
                main_profile.disable()

            thread = threading.Thread(target=run)
            cpu_before = time.process_time()
            wall_before = time.monotonic()
            thread.start()
            self.enqueue_all(items, self.spec.function)
            deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
            while finished_count(self.redis) < jobs and time.monotonic() < deadline:
                time.sleep(0.05)
            wall = time.monotonic() - wall_before
            cpu = time.process_time() - cpu_before
            stop.set()
            thread.join(timeout=40)
        finally:
            install_container(None)
        for profile in profiles:
            profile.disable()
        stats = pstats.Stats(main_profile)
        for profile in profiles:
            stats.add(profile)
        categories = categorise(stats)
        sends = sum(
            row[1]
            for func, row in stats.stats.items()  # type: ignore[attr-defined]
            if func[2] == "send_packed_command"
        )
        print(f"\nwhere a job's time goes ({jobs} jobs in this process, cProfile on every thread,")
        print(f"  {wall:.1f} s wall, CPU {cpu / jobs * 1000:.2f} ms/job; profiled, so slower):")
        busy = sum(v for k, v in categories.items() if k != "waiting (sockets, locks)")
        for name, seconds in sorted(categories.items(), key=lambda kv: -kv[1]):
            share = (
                f"{seconds / busy * 100:5.1f} % of busy"
                if name != "waiting (sockets, locks)"
                else ""
            )
            print(f"  {name:<34} {seconds / jobs * 1e6:8.0f} us/job  {share}")
        print("  heaviest functions (own time per job, waiting excluded):")
        ranked = sorted(
            (
                (row[2], filename, line, func)
                for (filename, line, func), row in stats.stats.items()  # type: ignore[attr-defined]
                if not _waiting(filename, func)
            ),
            reverse=True,
        )
        for seconds, filename, line, func in ranked[:12]:
            where = filename.split("site-packages/")[-1].replace(str(ROOT) + "/", "")
            print(f"    {seconds / jobs * 1e6:6.0f} us  {func}  ({where}:{line})")
        print(
            f"  SQL statements per job {statements[0] / jobs:.1f}, pool checkouts per job"
            f" {checkouts[0] / jobs:.1f} (each adds pre-ping, BEGIN, COMMIT/ROLLBACK round trips);"
            f" Redis round trips per job {sends / jobs:.2f}"
        )
        engine.dispose()
        log_file.close()

    def close(self) -> None:
        self.redis.flushdb()
        self.engine.dispose()


def _bump(counter: list[int]) -> None:
    counter[0] += 1


WAITING = ("acquire", "recv_into", "recv", "sendall", "send", "poll", "select", "sleep")


def _waiting(filename: str, func: str) -> bool:
    if filename == "~":
        return "SimpleQueue" in func or any(w in func for w in WAITING)
    return "/psycopg" in filename and func == "wait"


def _category(filename: str, func: str) -> str:
    if _waiting(filename, func):
        return "waiting (sockets, locks)"
    if "/rq/" in filename or "/redis/" in filename:
        return "RQ bookkeeping (rq + redis-py)"
    if "/sqlalchemy/" in filename or "/psycopg" in filename:
        return "SQL (SQLAlchemy + psycopg)"
    if "/logging/" in filename or filename.endswith("entrypoints/logs.py") or "/json/" in filename:
        return "logging (formatting, masking)"
    if "/phonenumbers/" in filename:
        return "phone parsing (phonenumbers)"
    if filename.startswith(str(ROOT)) and "/.venv/" not in filename:
        return "our Python (domain..entrypoints)"
    if filename == "~":
        return "builtins (pickle, zlib, str ...)"
    return "other libraries (attrs, stdlib)"


def categorise(stats: pstats.Stats) -> dict[str, float]:
    out: dict[str, float] = {}
    for (filename, _line, func), row in stats.stats.items():  # type: ignore[attr-defined]
        key = _category(filename, func)
        out[key] = out.get(key, 0.0) + row[2]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--redis-db", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup-seconds", type=float, default=3.0)
    parser.add_argument("--profile-jobs", type=int, default=2000)
    parser.add_argument("--models", action="store_true", help="also compare RQ worker models")
    parser.add_argument("--rss-jobs", type=int, default=0, help="a long run sampling RSS")
    parser.add_argument("--only", default="", help="comma-separated runs to do")
    parser.add_argument("--json", action="store_true", help="the figures as JSON on stdout")
    args = parser.parse_args(argv)
    with json_output(args.json) as figures:
        figures.update(run(args))
    return 0


def run(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    if args.redis_db == 0 or 8 <= args.redis_db <= 15:
        raise SystemExit("--redis-db: use a database no one else uses (not 0, not 8-15)")
    probe = Redis.from_url(f"redis://127.0.0.1:6379/{args.redis_db}")
    if probe.dbsize():
        raise SystemExit(f"Redis database {args.redis_db} is not empty; pick another --redis-db")
    runs = ["livesell", "livesell-noop", "rq-noop", "steady", "breakdown"]
    if args.models:
        runs[3:3] = ["livesell-1proc", "rq-simple", "rq-pool2", "rq-fork"]
    if args.rss_jobs:
        runs.append("rss")
    if args.only:
        runs = [r for r in args.only.split(",") if r]
    with bench_database(args.server, prefix="livesell_bench_inbound") as url:
        seed(url, args.tenants)
        bench = Bench(args, url)
        print(
            f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
            "(other work on the machine skews every figure)"
        )
        print(
            f"inbound throughput: {args.jobs} jobs, {args.tenants} tenants, "
            f"{int(SELLER_SHARE * 100)} % sellers; worker concurrency 5 (default); "
            f"{os.cpu_count()} CPUs; logs in {bench.tmp}",
            flush=True,
        )
        try:
            for run in runs:
                if run == "steady":
                    bench.steady(args.rate, args.seconds, args.warmup_seconds)
                elif run == "breakdown":
                    bench.breakdown(args.profile_jobs)
                elif run == "rss":
                    bench.rss_run(args.rss_jobs)
                elif run == "rq-fork":
                    bench.burst(run, max(100, args.jobs // 10))
                else:
                    bench.burst(run, args.jobs)
        finally:
            bench.close()
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        floor = dict(bench.results)
        if "livesell" in floor and "livesell-noop" in floor:
            ours = floor["livesell"]["msg_per_s"]
            own_floor = ours / floor["livesell-noop"]["msg_per_s"] * 100
            line = f"\nfull processing runs at {own_floor:.0f} % of the same worker's no-op floor"
            if "rq-noop" in floor:
                line += f", {ours / floor['rq-noop']['msg_per_s'] * 100:.0f} % of stock RQ's"
            print(line)
    return floor


if __name__ == "__main__":
    sys.exit(main())
