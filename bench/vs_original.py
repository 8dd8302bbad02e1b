"""livesell against the stack it replaces, on livesell's own inbound job, in one run.

The original's webhook-processor is Node + BullMQ + ``pg`` + ``libphonenumber-js``
(/work/shared/reference/workers-README.fr.md: queue ``webhook-processing``, concurrency 5).
``bench/original_worker/worker.mjs`` is our model of it doing exactly livesell's job: the statements
of application/inbound.py on livesell's schema (tenant, idempotency check, seller lookup, active
session, open-or-touch with the partial unique index race handled, insert the inbound record,
insert the events, commit). The bench installs its pinned packages (``package.json``) from the npm
registry into a scratch folder under /tmp; without ``node`` and ``npm`` it prints a SKIP line and
exits 0.

Per scenario, a fresh Postgres database migrated by ``livesell migrate`` and seeded, then one run
per worker on the same payloads, the tables emptied in between:

- **bullmq-1x5**, **bullmq-2x5**: 1 or 2 Node processes, BullMQ concurrency 5, a ``pg`` pool of 5
  per process; the payloads enqueued with BullMQ's own ``Queue.addBulk`` (its job format);
- **livesell**: ``livesell worker --only webhook`` on the production defaults, ``LOG_FORMAT=json``
  at INFO; the payloads enqueued on RQ's ``webhook-processing`` queue as the webhook does.

Everything is enqueued before the worker starts; the worker drains. The figure for every run is
recorded rows / (last ``processed_at`` - first ``processed_at``), read from the database, so
start-up and enqueueing do not count. Each run's outcome is checked against the payloads (every
message recorded once, the right seller/client split, session counters equal to the attached
messages): a worker that does less work fails the bench instead of winning it. So does a NOT NULL
column without default that the Node worker does not fill (the schema grows), and a column it
does not know that livesell fills with values where the Node worker leaves the default.

Scenarios: **20 tenants** (``--messages``, 5,000; 30 % seller messages, 2 sellers per tenant) and
**hot live** (1 tenant, 2,000 clients, 10 % seller messages, every message touching the one
session opened before the run). The best BullMQ figure is the reference; target livesell >= 1.5x.
``--profile N`` adds a cProfile of the livesell use case alone (one thread, in this process).

Redis is a private ``redis-server`` on a spare port; every process started here is stopped by its
pid; each run is bounded by ``--run-timeout``; the databases are dropped at the end.

    .venv/bin/python bench/vs_original.py [--messages 5000] [--quick] [--json] [--profile 1000]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import os
import pstats
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from support import DEFAULT_SERVER, ROOT, START_POSTGRES

from adapters.rq.connection import redis_connection
from adapters.rq.queue import RqInboundQueue
from adapters.rq.spec import JobSpec
from application.inbound import process_inbound_message
from application.live_sessions import attach_to_current_session
from application.tenants import add_seller, add_tenant
from domain.senders import SenderType
from entrypoints.container import build
from entrypoints.settings import Settings, normalise_database_url

BIN = Path(sys.executable).parent
NODE_SOURCE = ROOT / "bench" / "original_worker"
NODE_FILES = ("package.json", "worker.mjs", "enqueue.mjs")
BULLMQ_QUEUE = "webhook-processing"
TARGET_RATIO = 1.5
SELLERS_PER_TENANT = 2
# What worker.mjs writes, per table (the rest must be nullable or have a default).
NODE_COLUMNS = {
    "inbound_messages": {
        "id", "tenant_id", "provider_message_id", "from_phone", "from_e164", "to_phone", "body",
        "status", "message_type", "live_session_id", "correlation_id", "profile_name", "num_media",
        "media_urls", "received_at", "processed_at",
    },
    "live_sessions": {
        "id", "tenant_id", "status", "started_at", "last_activity_at", "closed_at",
        "close_reason", "seller_message_count", "client_message_count",
    },
    "event_logs": {"id", "tenant_id", "event_type", "subject_id", "payload", "correlation_id",
                   "created_at"},
}  # fmt: skip
RUN_TABLES = "inbound_messages, live_sessions, event_logs, dead_letter_jobs"


def say(*parts: object) -> None:
    """Progress lines: stderr under --json, so stdout is the JSON document alone."""
    print(*parts, file=sys.stderr if ARGS.json else sys.stdout, flush=True)


# -- scenarios and payloads ----------------------------------------------------------------------


class Scenario:
    def __init__(
        self, name: str, tenants: int, messages: int, clients: int, seller_share: float, hot: bool
    ) -> None:
        self.name, self.tenants, self.messages = name, tenants, messages
        self.clients, self.seller_share, self.hot = clients, seller_share, hot

    def tenant_id(self, t: int) -> str:
        return f"shop-{t:03d}"

    def seller_phone(self, t: int, n: int) -> str:
        return f"+336{10000000 + t * 10 + n:08d}"

    def client_phone(self, n: int) -> str:
        return f"+336{50000000 + n:08d}"

    def payloads(self, run: str) -> list[dict[str, Any]]:
        rng = random.Random(7)
        out = []
        for i in range(self.messages):
            t = rng.randrange(self.tenants)
            seller = rng.random() < self.seller_share
            phone = (
                self.seller_phone(t, i % SELLERS_PER_TENANT)
                if seller
                else self.client_phone(i % self.clients)
            )
            out.append(
                {
                    "tenantId": self.tenant_id(t),
                    "providerMessageId": f"SM{run}{i:08d}",
                    "from": f"whatsapp:{phone}",
                    "to": "whatsapp:+14155238886",
                    "body": "Je prends la robe rouge en M, merci !",
                    "correlationId": f"bench-{run}-{i}",
                    "profileName": "Client",
                }
            )
        return out


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    messages = args.messages or (1000 if args.quick else 5000)
    clients = 500 if args.quick else 2000
    every = [
        Scenario("20 tenants", 20, messages, messages, 0.3, hot=False),
        Scenario("hot live", 1, messages, clients, 0.1, hot=True),
    ]
    if args.scenarios:
        wanted = {s.strip() for s in args.scenarios.split(",")}
        every = [s for s in every if s.name.split()[0] in wanted or s.name in wanted]
    return every


# -- processes -----------------------------------------------------------------------------------


class Process:
    """A process started here, stopped by its pid (and its children's, by theirs)."""

    def __init__(self, args: Sequence[str], env: dict[str, str], log: Path, cwd: Path) -> None:
        self.log_path = log
        self.log = log.open("ab")
        self.process = subprocess.Popen(
            list(args), env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT
        )

    def children(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        return [int(pid) for pid in out]

    def stop(self, timeout: float = 40) -> None:
        if self.process.poll() is None:
            children = self.children()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                for child in children:
                    with suppress(ProcessLookupError):
                        os.kill(child, signal.SIGKILL)
                self.process.kill()
                self.process.wait(timeout=10)
        self.log.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def private_redis(tmp: Path) -> Iterator[str]:
    """A redis-server of our own on a spare port, no persistence; stopped by its pid."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed: the bench runs a private one")
    port = free_port()
    server = Process(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        dict(os.environ),
        tmp / "redis.log",
        tmp,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis_connection(url).ping()
                break
            except Exception:
                if time.monotonic() > deadline or server.process.poll() is not None:
                    raise SystemExit(f"private redis-server did not start; see {tmp}") from None
                time.sleep(0.1)
        yield url
    finally:
        server.stop(timeout=10)


def node_setup(scratch_root: Path) -> Path | None:
    """The Node worker's folder with its pinned packages installed; None when node is missing."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return None
    manifest = (NODE_SOURCE / "package.json").read_bytes()
    folder = scratch_root / f"livesell-vs-original-{hashlib.sha256(manifest).hexdigest()[:12]}"
    folder.mkdir(parents=True, exist_ok=True)
    for name in NODE_FILES:
        shutil.copyfile(NODE_SOURCE / name, folder / name)
    if not (folder / "node_modules" / ".package-lock.json").exists():
        say(f"npm install (pinned versions of bench/original_worker/package.json) into {folder}")
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel", "error"],
            cwd=folder,
            check=True,
            timeout=600,
            stdout=sys.stderr,
        )
    return folder


def versions(folder: Path) -> dict[str, str]:
    node = subprocess.run(["node", "--version"], check=False, capture_output=True, text=True)
    out = {"node": node.stdout}
    for package in ("bullmq", "pg", "libphonenumber-js", "ioredis"):
        manifest = folder / "node_modules" / package / "package.json"
        if manifest.exists():
            out[package] = json.loads(manifest.read_text())["version"]
    return {k: v.strip() for k, v in out.items()}


# -- database ------------------------------------------------------------------------------------


@contextmanager
def fresh_database(server: str, env: dict[str, str], tmp: Path) -> Iterator[str]:
    """A new database migrated by ``livesell migrate``; dropped on the way out."""
    base = sa.make_url(normalise_database_url(server))
    name = f"livesell_bench_vs_{secrets.token_hex(4)}"
    admin = sa.create_engine(
        base.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=sa.NullPool
    )
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        raise SystemExit(
            f"Postgres is unreachable at {server}; start it: {START_POSTGRES}"
        ) from exc
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        migrated = subprocess.run(
            [str(BIN / "livesell"), "migrate"],
            check=False,
            env={**env, "DATABASE_URL": url},
            capture_output=True,
            text=True,
            timeout=120,
        )
        if migrated.returncode != 0:
            raise SystemExit(f"livesell migrate failed:\n{migrated.stdout}{migrated.stderr}")
        yield url
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def check_schema(engine: sa.Engine) -> list[str]:
    """Fail on a NOT NULL column without default the Node worker does not fill; return the other
    columns it does not know (it leaves them to their default or NULL)."""
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT table_name, column_name, is_nullable, column_default, is_identity"
                " FROM information_schema.columns"
                " WHERE table_schema = 'public' AND table_name = ANY(:tables)"
            ),
            {"tables": list(NODE_COLUMNS)},
        ).all()
    missing, unknown = [], []
    for table, column, nullable, default, identity in rows:
        if column in NODE_COLUMNS[table]:
            continue
        if nullable == "NO" and default is None and identity != "YES":
            missing.append(f"{table}.{column}")
        else:
            unknown.append(f"{table}.{column}")
    if missing:
        raise SystemExit(
            "vs_original: the schema has NOT NULL columns without default that"
            f" bench/original_worker/worker.mjs does not fill: {', '.join(sorted(missing))}."
            " Update the Node worker's SQL to livesell's statements before measuring."
        )
    return sorted(unknown)


def seed(url: str, scenario: Scenario) -> None:
    container = build(Settings.from_env({"DATABASE_URL": url}))
    uow, clock, ids = container.uow_factory(), container.clock(), container.ids()
    for t in range(scenario.tenants):
        add_tenant(uow_factory=uow, clock=clock, tenant_id=scenario.tenant_id(t), name=f"Shop {t}")
        for n in range(SELLERS_PER_TENANT):
            add_seller(
                uow_factory=uow,
                clock=clock,
                ids=ids,
                tenant_id=scenario.tenant_id(t),
                phone=scenario.seller_phone(t, n),
            )
    container.engine().dispose()


def reset(engine: sa.Engine, url: str, scenario: Scenario) -> int:
    """Empty the run tables; on the hot live, open the one session first. Returns the number of
    seller touches already on the sessions (1 for the hot live's opening)."""
    with engine.begin() as connection:
        connection.exec_driver_sql(f"TRUNCATE {RUN_TABLES}")
    if not scenario.hot:
        return 0
    container = build(Settings.from_env({"DATABASE_URL": url}))
    now = container.clock().now()
    with container.uow_factory()() as uow:
        attach_to_current_session(
            uow,
            tenant_id=scenario.tenant_id(0),
            sender=SenderType.SELLER,
            at=now,
            now=now,
            window=container.window(),
            ids=container.ids(),
            correlation_id="bench-hot-live-open",
        )
        uow.commit()
    container.engine().dispose()
    return 1


def recorded(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.exec_driver_sql(
                "SELECT count(*) FROM inbound_messages WHERE status = 'processed'"
            ).scalar_one()
        )


def outcome(engine: sa.Engine) -> dict[str, Any]:
    with engine.connect() as connection:
        row = connection.exec_driver_sql(
            "SELECT count(*), count(DISTINCT (tenant_id, provider_message_id)),"
            " count(*) FILTER (WHERE message_type = 'seller'),"
            " count(*) FILTER (WHERE message_type = 'client'),"
            " count(live_session_id), min(processed_at), max(processed_at),"
            " count(*) FILTER (WHERE status = 'processed')"
            " FROM inbound_messages"
        ).one()
        sessions = connection.exec_driver_sql(
            "SELECT count(*), coalesce(sum(seller_message_count + client_message_count), 0),"
            " count(*) FILTER (WHERE status = 'active') FROM live_sessions"
        ).one()
        events = dict(
            connection.exec_driver_sql(
                "SELECT event_type, count(*) FROM event_logs GROUP BY event_type"
            ).all()
        )
        dead = connection.exec_driver_sql("SELECT count(*) FROM dead_letter_jobs").scalar_one()
    first, last = row[5], row[6]
    seconds = (last - first).total_seconds() if first and last else 0.0
    return {
        "rows": row[0],
        "distinct": row[1],
        "sellers": row[2],
        "clients": row[3],
        "attached": row[4],
        "processed": row[7],
        "seconds": seconds,
        "msg_per_s": row[0] / seconds if seconds > 0 else 0.0,
        "sessions": sessions[0],
        "session_touches": int(sessions[1]),
        "active_sessions": sessions[2],
        "events": {str(k): int(v) for k, v in events.items()},
        "dead_letters": int(dead),
    }


def distinct_values(engine: sa.Engine, columns: list[str]) -> dict[str, int]:
    """How many distinct values each column the Node worker does not know holds after a run."""
    out = {}
    with engine.connect() as connection:
        for qualified in columns:
            table, column = qualified.split(".")
            out[qualified] = int(
                connection.exec_driver_sql(
                    f'SELECT count(DISTINCT "{column}"::text) FROM "{table}"'
                ).scalar_one()
            )
    return out


def unfilled(runs: dict[str, dict[str, Any]]) -> list[str]:
    """A column livesell fills with more distinct values than a BullMQ run left: the Node worker
    does less work than livesell, so its figure would be wrong."""
    ours = runs.get("livesell", {}).get("unknown_columns_distinct", {})
    problems = []
    for name, got in runs.items():
        for column, count in got.get("unknown_columns_distinct", {}).items():
            if name != "livesell" and count < ours.get(column, 0):
                problems.append(
                    f"{name}: livesell fills {column} ({ours[column]} distinct values) and"
                    f" bench/original_worker/worker.mjs does not ({count}); add it to its SQL"
                )
    return problems


def verify(name: str, got: dict[str, Any], items: list[dict[str, Any]], scenario: Scenario,
           touches_before: int) -> list[str]:  # fmt: skip
    """What must hold after any correct worker drained ``items``."""
    sellers = {scenario.seller_phone(t, n) for t in range(scenario.tenants)
               for n in range(SELLERS_PER_TENANT)}  # fmt: skip
    expected_sellers = sum(1 for p in items if p["from"].removeprefix("whatsapp:") in sellers)
    opened = got["events"].get("live_session.opened", 0)
    problems = []
    checks: list[tuple[bool, str]] = [
        (got["rows"] == len(items), f"{got['rows']} rows recorded of {len(items)} messages"),
        (got["processed"] == got["rows"], f"{got['rows'] - got['processed']} rows not processed"),
        (got["distinct"] == got["rows"], "a message recorded twice"),
        (got["sellers"] == expected_sellers,
         f"{got['sellers']} seller messages, {expected_sellers} expected"),
        (got["session_touches"] == got["attached"] + touches_before,
         f"session counters {got['session_touches']} != attached messages {got['attached']}"
         f" + {touches_before}"),
        (got["events"].get("message.classified", 0) == got["rows"],
         "not one message.classified event per message"),
        (got["active_sessions"] <= scenario.tenants, "more than one active session per tenant"),
        (got["dead_letters"] == 0, f"{got['dead_letters']} dead letters"),
        (not scenario.hot or got["attached"] == got["rows"],
         "hot live: a message not attached to the session"),
        (scenario.hot or opened == got["sessions"], "a session without its opened event"),
    ]  # fmt: skip
    for ok, problem in checks:
        if not ok:
            problems.append(f"{name}: {problem}")
    return problems


# -- runs ----------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path, redis_url: str, node: Path | None):
        self.args, self.tmp, self.redis_url, self.node = args, tmp, redis_url, node
        self.redis = redis_connection(redis_url)
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(
                ("DATABASE_", "REDIS_", "WEBHOOK_", "OUTBOX_", "SENTRY", "LOG_", "LIVE_SESSION_",
                 "HEALTH_", "METRICS_", "RQ_", "INBOX_")
            )
        }  # fmt: skip
        self.base_env = base
        self.spec = JobSpec.webhook_processing(build(Settings.from_env({})).retry_policy())

    def wait_drained(self, engine: sa.Engine, total: int, workers: list[Process]) -> None:
        deadline = time.monotonic() + self.args.run_timeout
        last, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            done = recorded(engine)
            if done >= total:
                return
            if done != last:
                last, last_change = done, time.monotonic()
            elif time.monotonic() - last_change > self.args.stall_seconds:
                break
            if any(w.process.poll() is not None for w in workers):
                break
            time.sleep(0.1)
        logs = ", ".join(str(w.log_path) for w in workers)
        raise SystemExit(f"the worker drained {recorded(engine)} of {total} messages; see {logs}")

    def bullmq(self, url: str, engine: sa.Engine, items: list[dict[str, Any]], processes: int,
               tag: str) -> None:  # fmt: skip
        assert self.node is not None
        env = {**self.base_env, "DATABASE_URL": url, "REDIS_URL": self.redis_url,
               "QUEUE_NAME": BULLMQ_QUEUE, "CONCURRENCY": "5", "PG_POOL": "5"}  # fmt: skip
        source = self.tmp / f"{tag}-payloads.json"
        source.write_text(json.dumps(items))
        subprocess.run(
            ["node", "enqueue.mjs", str(source)], cwd=self.node, env=env, check=True,
            timeout=300, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        workers = [
            Process(["node", "worker.mjs"], env, self.tmp / f"{tag}-{n}.log", self.node)
            for n in range(processes)
        ]
        try:
            self.wait_drained(engine, len(items), workers)
        finally:
            for w in workers:
                w.stop()

    def livesell(self, url: str, engine: sa.Engine, items: list[dict[str, Any]], tag: str) -> None:
        queue = RqInboundQueue(self.redis, self.spec)
        for start in range(0, len(items), 500):
            queue.enqueue_many(items[start : start + 500])
        env = {**self.base_env, "DATABASE_URL": url, "REDIS_URL": self.redis_url,
               "LOG_FORMAT": "json", "LOG_LEVEL": "info"}  # fmt: skip
        worker = Process(
            [str(BIN / "livesell"), "worker", "--only", "webhook"],
            env,
            self.tmp / f"{tag}.log",
            ROOT,
        )
        try:
            self.wait_drained(engine, len(items), [worker])
        finally:
            worker.stop()

    def scenario(self, scenario: Scenario) -> dict[str, Any]:
        say(f"\n{scenario.name}: {scenario.messages} messages, {scenario.tenants} tenant(s)")
        runs: dict[str, dict[str, Any]] = {}
        problems: list[str] = []
        with fresh_database(self.args.server, self.base_env, self.tmp) as url:
            engine = sa.create_engine(url, poolclass=sa.NullPool)
            unknown = check_schema(engine)
            if unknown:
                say(
                    f"  note: columns the Node worker leaves to their default: {', '.join(unknown)}"
                )
            seed(url, scenario)
            plan: list[tuple[str, Callable[[list[dict[str, Any]], str], None]]] = []
            if self.node is not None:
                for processes in (1, 2):
                    plan.append(
                        (
                            f"bullmq-{processes}x5",
                            lambda items, tag, p=processes: self.bullmq(url, engine, items, p, tag),
                        )
                    )
            plan.append(("livesell", lambda items, tag: self.livesell(url, engine, items, tag)))
            for n, (name, run) in enumerate(plan):
                self.redis.flushdb()
                touches = reset(engine, url, scenario)
                tag = f"{scenario.name.split()[0]}-{name}"
                items = scenario.payloads(f"{n:02d}")
                run(items, tag)
                got = outcome(engine)
                got["unknown_columns_distinct"] = distinct_values(engine, unknown)
                problems += verify(name, got, items, scenario, touches)
                runs[name] = got
                say(
                    f"  {name:<12} {got['msg_per_s']:8.0f} msg/s  ({got['rows']} rows over"
                    f" {got['seconds']:.2f} s; {got['attached']} attached, {got['sessions']}"
                    " session(s))"
                )
            if self.args.profile and scenario is self.first:
                runs["profile"] = profile_use_case(url, engine, scenario, self.args.profile)
            engine.dispose()
        self.redis.flushdb()
        problems += unfilled(runs)
        if problems:
            raise SystemExit("vs_original: a run's outcome is wrong:\n  " + "\n  ".join(problems))
        best = max(
            (name for name in runs if name.startswith("bullmq")),
            key=lambda name: runs[name]["msg_per_s"],
            default=None,
        )
        ratio = runs["livesell"]["msg_per_s"] / runs[best]["msg_per_s"] if best else None
        return {"runs": runs, "best_bullmq": best, "ratio": ratio, "messages": scenario.messages}

    first: Scenario | None = None


# -- profile of the use case alone ---------------------------------------------------------------


def profile_use_case(url: str, engine: sa.Engine, scenario: Scenario, count: int) -> dict[str, Any]:
    """Run the use case ``count`` times in this thread under cProfile: where a message's time goes
    (waiting on Postgres, SQLAlchemy + psycopg, phone parsing, our code, the rest)."""
    reset(engine, url, scenario)
    container = build(Settings.from_env({"DATABASE_URL": url}))
    uow, clock, ids, window = (
        container.uow_factory(),
        container.clock(),
        container.ids(),
        container.window(),
    )
    counts = {"statements": 0, "checkouts": 0, "commits": 0}

    def bump(key: str) -> Callable[..., None]:
        return lambda *args: counts.__setitem__(key, counts[key] + 1)

    sa.event.listen(container.engine(), "before_cursor_execute", bump("statements"))
    sa.event.listen(container.engine(), "commit", bump("commits"))
    sa.event.listen(container.engine().pool, "checkout", bump("checkouts"))
    items = scenario.payloads("PR")
    for warm in items[:50]:  # warm the pool and the statement caches
        item = {**warm, "providerMessageId": "W" + warm["providerMessageId"]}
        process_inbound_message(item, uow_factory=uow, clock=clock, ids=ids, window=window)
    counts.update(statements=0, checkouts=0, commits=0)
    items = (items * (count // len(items) + 1))[:count]

    def timed(prefix: str, profile: cProfile.Profile | None) -> tuple[float, float]:
        batch = [{**p, "providerMessageId": f"{prefix}{i:08d}"} for i, p in enumerate(items)]
        started, cpu_started = time.perf_counter(), time.thread_time()
        if profile is not None:
            profile.enable()
        for item in batch:
            process_inbound_message(item, uow_factory=uow, clock=clock, ids=ids, window=window)
        if profile is not None:
            profile.disable()
        return time.perf_counter() - started, time.thread_time() - cpu_started

    # First unprofiled: the real wall and CPU time per message ...
    wall, cpu = timed("P", None)
    # A checkout costs a round trip only when the pool pings on checkout (ADR 0028 turned it off).
    pings = counts["checkouts"] if getattr(container.engine().pool, "_pre_ping", False) else 0
    round_trips = (counts["statements"] + pings + 2 * counts["commits"]) / count
    statements = counts["statements"] / count
    # ... then under cProfile on this thread's CPU clock (what a function costs in Python, not the
    # time the thread waited on a socket or for a core), for the split only: the profiler's own
    # overhead inflates every figure, so its shares are scaled to the unprofiled CPU time.
    profile = cProfile.Profile(time.thread_time)
    timed("Q", profile)
    container.engine().dispose()
    stats = pstats.Stats(profile)
    groups: dict[str, float] = {}
    own: list[tuple[float, str]] = []
    for (filename, line, func), row in stats.stats.items():  # type: ignore[attr-defined]
        group = _group(filename)
        groups[group] = groups.get(group, 0.0) + row[2]
        where = filename.split("site-packages/")[-1].replace(str(ROOT) + "/", "")
        own.append((row[2], f"{func} ({where}:{line})"))
    profiled = sum(groups.values()) or 1.0
    cpu_ms = cpu / count * 1000
    per = {k: v / profiled * cpu_ms for k, v in groups.items()}
    top = [(f"{v / profiled * 100:.1f} %", name) for v, name in sorted(own, reverse=True)[:10]]
    return {
        "messages": count,
        "wall_ms_per_message": wall / count * 1000,
        "cpu_ms_per_message": cpu_ms,
        "waiting_ms_per_message": (wall - cpu) / count * 1000,
        "statements_per_message": statements,
        "round_trips_per_message": round_trips,
        "cpu_ms_per_message_by_group": dict(sorted(per.items(), key=lambda kv: -kv[1])),
        "heaviest_own_time": top,
    }


def _group(filename: str) -> str:
    if "/sqlalchemy/" in filename:
        return "SQLAlchemy"
    if "/psycopg" in filename:
        return "psycopg (incl. libpq calls)"
    if "/phonenumbers/" in filename:
        return "phonenumbers"
    if filename.startswith(str(ROOT)) and "/.venv/" not in filename:
        return "livesell code (domain..adapters)"
    if filename == "~":
        return "builtins"
    return "other libraries (attrs, stdlib)"


# -- output --------------------------------------------------------------------------------------


def table(results: dict[str, Any]) -> str:
    lines = [
        f"{'scenario':<12} {'worker':<12} {'msg/s':>8} {'rows':>6} {'seconds':>8}",
    ]
    for name, result in results["scenarios"].items():
        for worker, got in result["runs"].items():
            if worker == "profile":
                continue
            best = " (best BullMQ)" if worker == result["best_bullmq"] else ""
            lines.append(
                f"{name:<12} {worker:<12} {got['msg_per_s']:>8.0f} {got['rows']:>6}"
                f" {got['seconds']:>8.2f}{best}"
            )
    lines.append("")
    for name, result in results["scenarios"].items():
        if result["ratio"] is None:
            lines.append(f"{name}: no BullMQ figure (node missing)")
            continue
        verdict = "met" if result["ratio"] >= TARGET_RATIO else "missed"
        lines.append(
            f"{name}: livesell / best BullMQ = {result['ratio']:.2f}x"
            f" (target >= {TARGET_RATIO}x: {verdict})"
        )
    return "\n".join(lines)


def profile_text(profile: dict[str, Any]) -> str:
    lines = [
        f"\nthe livesell use case alone ({profile['messages']} messages, one thread, in this"
        " process, production engine settings):",
        f"  {profile['wall_ms_per_message']:.2f} ms/message wall ="
        f" {profile['cpu_ms_per_message']:.2f} ms Python CPU"
        f" + {profile['waiting_ms_per_message']:.2f} ms waiting (Postgres round trips, the CPU"
        " shared with other processes)",
        f"  {profile['statements_per_message']:.1f} statements,"
        f" {profile['round_trips_per_message']:.1f} round trips per message"
        " (statements + pool pre-ping if on + BEGIN + COMMIT)",
        "  CPU by library, per message (cProfile's shares on the thread's CPU clock):",
    ]
    for group, ms in profile["cpu_ms_per_message_by_group"].items():
        lines.append(f"    {group:<34} {ms:7.3f} ms")
    lines.append("  heaviest functions, share of the CPU time (own time):")
    lines += [f"    {t:>7}  {name}" for t, name in profile["heaviest_own_time"]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--server", default=DEFAULT_SERVER)
    parser.add_argument("--messages", type=int, default=0, help="per scenario (default 5000)")
    parser.add_argument("--quick", action="store_true", help="1,000 messages, 500 hot clients")
    parser.add_argument("--scenarios", default="", help="comma-separated: 20, hot")
    parser.add_argument("--profile", type=int, default=0, help="cProfile N use-case calls")
    parser.add_argument("--json", action="store_true", help="the results as JSON on stdout")
    parser.add_argument("--run-timeout", type=float, default=600.0, help="seconds per run")
    parser.add_argument("--stall-seconds", type=float, default=60.0)
    parser.add_argument("--scratch", default=tempfile.gettempdir(), help="npm install under here")
    args = ARGS = parser.parse_args(argv)
    node = node_setup(Path(args.scratch))
    if node is None:
        message = "SKIP vs_original: node/npm not found; install Node.js 18+ to compare with BullMQ"
        print(json.dumps({"skipped": message}) if args.json else message)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="livesell-vs-original-"))
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(),
        "cpus": os.cpu_count(),
        "load_before": os.getloadavg(),
        "versions": versions(node),
        "logs": str(tmp),
        "scenarios": {},
    }
    say(f"vs_original: {results['versions']}; {os.cpu_count()} CPUs; load {results['load_before']}")
    say(f"logs in {tmp}")
    with private_redis(tmp) as redis_url:
        bench = Bench(args, tmp, redis_url, node)
        chosen = scenarios(args)
        bench.first = chosen[0] if chosen else None
        for scenario in chosen:
            results["scenarios"][scenario.name] = bench.scenario(scenario)
    results["load_after"] = os.getloadavg()
    profile = next(
        (s["runs"].get("profile") for s in results["scenarios"].values() if "profile" in s["runs"]),
        None,
    )
    for scenario in results["scenarios"].values():
        scenario["runs"].pop("profile", None)
    if profile:
        results["profile"] = profile
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    else:
        print("\n" + table(results))
        if profile:
            print(profile_text(profile))
        print(f"\nload average before {results['load_before']}, after {results['load_after']}")
    return 0


ARGS = argparse.Namespace(json=False)

if __name__ == "__main__":
    sys.exit(main())
