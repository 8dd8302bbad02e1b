"""The newcomer's demo on the real code path (``livesell simulate --engine embedded``).

Everything production runs, embedded in one process: SQLite migrated by Alembic, an in-process
Redis (fakeredis) behind the real RQ queue and job function, the real worker parts (webhook-
processor, outbox-sender, closing job) and the simulated provider with failures. The clock runs
``SPEED`` times faster than the wall, so a one-minute inactivity window passes in seconds.

A short live: clients write before it starts (no session), a seller goes live and posts products,
clients order in bursts (each order that joined the live gets a confirmation through the outbox),
Twilio redelivers some messages, a malformed payload and an unknown tenant are rejected, the
provider fails now and then, the seller goes quiet past the window and the closing job ends the
live. The report reads the database.

A seed gives the same counts on every run: the provider draws each attempt's fate from (seed,
outbox id, attempt), so the confirmations get ids from a sequence in script order (the real
service's ids are time-ordered and random), and the orders are sent only once the live is open,
so which of them join it does not depend on the workers' interleaving.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import fakeredis
import sqlalchemy as sa
from dependency_injector import providers

from adapters.memory.clock import SequentialIds
from adapters.sqlalchemy import migrations, tables
from adapters.system.clock import AcceleratedClock
from application.outbox import queue_outbound_message
from application.tenants import add_seller, add_tenant
from entrypoints.closer import SessionCloser
from entrypoints.container import Container, build
from entrypoints.demo.report import Report
from entrypoints.demo.scenario import Scenario
from entrypoints.outbox_worker import OutboxSender
from entrypoints.runner import WorkerPart
from entrypoints.settings import Settings
from entrypoints.webhook_worker import WebhookWorker

SPEED = 20.0
WINDOW_MINUTES = 1
TENANT = "shop-demo"
TENANT_NUMBER = "+33757000001"
SELLER = "+33612000001"


@attrs.frozen(kw_only=True)
class EmbeddedOptions:
    clients: int = 40
    products: int = 3
    transient_failure_rate: float = 0.2
    permanent_failure_rate: float = 0.03
    seed: int = 7
    timeout_seconds: float = 50.0


def _settings(directory: Path, options: EmbeddedOptions) -> Settings:
    return Settings.from_env(
        {
            "DATABASE_URL": f"sqlite:///{directory / 'livesell-demo.db'}",
            "LIVE_SESSION_INACTIVITY_WINDOW_MINUTES": str(WINDOW_MINUTES),
            "WEBHOOK_WORKER_CONCURRENCY": "3",
            "OUTBOX_POLL_INTERVAL_SECONDS": "0.1",
            "OUTBOX_BATCH_SIZE": "20",
            "OUTBOX_SEND_CONCURRENCY": "8",
            "CLOSE_INTERVAL_MINUTES": "0.02",
            "MESSAGING_PROVIDER": "simulated",
            "SIMULATED_LATENCY_MS": "20",
            "SIMULATED_TRANSIENT_FAILURE_RATE": str(options.transient_failure_rate),
            "SIMULATED_PERMANENT_FAILURE_RATE": str(options.permanent_failure_rate),
            "SIMULATED_SEED": str(options.seed),
            "SIMULATED_SENT_LOG": str(directory / "sent.jsonl"),
            "LOG_LEVEL": "warning",
        }
    )


class _Demo:
    def __init__(self, container: Container, options: EmbeddedOptions, report: Report) -> None:
        self.container = container
        self.options = options
        self.report = report
        self.rng = random.Random(options.seed)
        self.engine: sa.Engine = container.engine()
        self.queue = container.inbound_queue()
        self.sequence = 0
        self.redelivered = 0
        self.expected: set[str] = set()
        self.closed_seen: set[str] = set()
        self.outbox_ids = SequentialIds(f"demo{options.seed}-out")

    # -- the shop's side ---------------------------------------------------------------------

    def setup(self) -> list[str]:
        uow_factory, clock, ids = (
            self.container.uow_factory(),
            self.container.clock(),
            self.container.ids(),
        )
        add_tenant(
            uow_factory=uow_factory,
            clock=clock,
            tenant_id=TENANT,
            name="Boutique démo",
            whatsapp_number=TENANT_NUMBER,
        )
        add_seller(
            uow_factory=uow_factory,
            clock=clock,
            ids=ids,
            tenant_id=TENANT,
            phone="06 12 00 00 01",
            name="Camille",
        )
        return [f"+336{20000000 + n * 7919:08d}" for n in range(self.options.clients)]

    def say(self, phone: str, body: str, *, redeliver: bool = False) -> str:
        self.sequence += 1
        provider_id = f"SMdemo{self.sequence:06d}"
        payload = {
            "tenantId": TENANT,
            "providerMessageId": provider_id,
            "from": f"whatsapp:{phone}",
            "to": f"whatsapp:{TENANT_NUMBER}",
            "body": body,
            "correlationId": f"demo-{self.sequence}",
        }
        self.queue.enqueue(payload)
        if redeliver:
            self.queue.enqueue(dict(payload))
            self.redelivered += 1
        self.expected.add(provider_id)
        return provider_id

    def reject_some(self) -> None:
        self.queue.enqueue({"tenantId": TENANT, "providerMessageId": "", "body": 42})
        self.queue.enqueue(
            {
                "tenantId": "no-such-shop",
                "providerMessageId": "SMnobody",
                "from": "+33612345678",
                "body": "hello",
                "correlationId": "demo-x",
            }
        )

    def confirm_orders(self, orders: list[str]) -> None:
        rows = self.query(
            sa.select(
                tables.inbound_messages.c.provider_message_id,
                tables.inbound_messages.c.from_phone,
                tables.inbound_messages.c.correlation_id,
            )
            .where(
                tables.inbound_messages.c.provider_message_id.in_(orders),
                tables.inbound_messages.c.live_session_id.is_not(None),
            )
            .order_by(tables.inbound_messages.c.provider_message_id)
        )
        for _provider_id, phone, correlation_id in rows:
            queue_outbound_message(
                uow_factory=self.container.uow_factory(),
                tenant_id=TENANT,
                to=phone,
                body="Merci ! Votre commande est notée.",
                correlation_id=correlation_id,
                clock=self.container.clock(),
                ids=self.outbox_ids,
            )
            self.report.outbound["queued"] += 1

    # -- watching the database ---------------------------------------------------------------

    def query(self, statement: Any) -> list[Any]:
        with self.engine.connect() as connection:
            return list(connection.execute(statement))

    def processed(self) -> int:
        statement = sa.select(sa.func.count()).where(
            tables.inbound_messages.c.status == "processed"
        )
        return int(self.query(statement)[0][0])

    def watch_sessions(self) -> None:
        sessions = self.query(sa.select(tables.live_sessions.c.id, tables.live_sessions.c.status))
        active = [sid for sid, status in sessions if status == "active"]
        self.report.check("at most one active session per tenant", len(active) <= 1, str(active))
        self.report.check(
            "a closed session is never reopened", not set(active) & self.closed_seen, str(active)
        )
        self.closed_seen |= {sid for sid, status in sessions if status == "closed"}

    def wait(self, what: str, done: Callable[[], bool], deadline: float) -> None:
        while not done():
            self.watch_sessions()
            if time.monotonic() > deadline:
                self.report.check(f"{what} in time", False)
                return
            time.sleep(0.05)
        self.watch_sessions()


def run_embedded(
    options: EmbeddedOptions | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Run the embedded demo and return its report (invariants checked against the database).
    ``progress(done, total)`` is called after each stage of the script."""
    options = options or EmbeddedOptions()
    wall = time.perf_counter()
    report = Report(
        Scenario(
            tenants=1,
            clients=options.clients,
            live_minutes=options.products,
            product_every_minutes=1,
            window_minutes=WINDOW_MINUTES,
            transient_failure_rate=options.transient_failure_rate,
            permanent_failure_rate=options.permanent_failure_rate,
            seed=options.seed,
        )
    )
    report.title = (
        f"livesell demo (embedded: SQLite + Alembic, fakeredis + RQ, the real worker parts) — "
        f"1 shop, {options.clients} clients, {options.products} products, window"
        f" {WINDOW_MINUTES} min at {SPEED:g}x speed, seed {options.seed}"
    )
    directory = Path(tempfile.mkdtemp(prefix="livesell-demo-"))
    settings = _settings(directory, options)
    migrations.upgrade(settings.database_url)
    container = build(settings)
    clock = AcceleratedClock(SPEED)
    container.clock.override(providers.Object(clock))
    redis = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    container.queue_redis.override(providers.Object(redis))
    container.worker_redis.override(providers.Object(redis))
    parts: list[WorkerPart] = [
        WebhookWorker(container, processes=1),
        OutboxSender(container),
        SessionCloser(container),
    ]
    stop = threading.Event()
    demo = _Demo(container, options, report)
    clients = demo.setup()
    deadline = time.monotonic() + options.timeout_seconds
    threads: list[threading.Thread] = []
    try:
        for part in parts:
            part.start()
            thread = threading.Thread(target=part.run, args=(stop,), name=part.name, daemon=True)
            thread.start()
            threads.append(thread)
        _script(demo, clients, deadline, progress or (lambda _done, _total: None))
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        _final_report(demo, directory)
        container.engine().dispose()
        shutil.rmtree(directory, ignore_errors=True)
    report.virtual_minutes = clock.elapsed().total_seconds() / 60
    report.wall_seconds = time.perf_counter() - wall
    return report


def _script(
    demo: _Demo, clients: list[str], deadline: float, progress: Callable[[int, int], None]
) -> None:
    rng = demo.rng
    stages = demo.options.products + 4
    early = [demo.say(phone, "bonjour ? c'est quand le live ?") for phone in clients[:3]]
    demo.wait("early messages processed", lambda: demo.processed() >= len(early), deadline)
    progress(1, stages)
    demo.say(SELLER, "Bonsoir ! Le live commence")
    demo.reject_some()
    # The orders follow the live's opening, as on a phone: none may overtake it in the workers.
    demo.wait("the live opened", lambda: demo.processed() >= len(demo.expected), deadline)
    progress(2, stages)
    for product in range(1, demo.options.products + 1):
        demo.say(SELLER, f"Article {product} : robe en lin, 35 EUR")
        orders = [
            demo.say(phone, f"je prends {product}", redeliver=rng.random() < 0.1)
            for phone in rng.sample(clients, k=max(1, len(clients) // 2))
        ]
        demo.wait("orders processed", lambda: demo.processed() >= len(demo.expected), deadline)
        demo.confirm_orders(orders)
        progress(2 + product, stages)
    demo.wait(
        "outbox drained",
        lambda: (
            not demo.query(
                sa.select(tables.messages_out.c.id).where(
                    tables.messages_out.c.status.not_in(("sent", "dead"))
                )
            )
        ),
        deadline,
    )
    progress(stages - 1, stages)
    demo.wait(
        "the live closed after the seller went quiet",
        lambda: (
            not demo.query(
                sa.select(tables.live_sessions.c.id).where(
                    tables.live_sessions.c.status == "active"
                )
            )
        ),
        deadline,
    )
    progress(stages, stages)


def _final_report(demo: _Demo, directory: Path) -> None:
    report = demo.report
    c = tables.inbound_messages.c
    for message_type, count in demo.query(
        sa.select(c.message_type, sa.func.count()).group_by(c.message_type)
    ):
        report.inbound[message_type or "unprocessed"] += count
    early = demo.query(sa.select(c.live_session_id).where(c.body.like("bonjour%")))
    recorded = sum(report.inbound.values())
    report.inbound["duplicate"] = demo.redelivered
    report.check(
        "clients writing before the live join no session", all(row[0] is None for row in early)
    )
    report.check("every message is recorded once", len(demo.expected) == recorded)
    sellers = demo.query(sa.select(c.live_session_id).where(c.message_type == "seller"))
    report.check(
        "a seller message always lands in a session", all(row[0] is not None for row in sellers)
    )
    events = Counter(t for (t,) in demo.query(sa.select(tables.event_logs.c.event_type)))
    report.inbound["rejected"] = events["inbound.rejected"]
    report.check(
        "malformed payloads and unknown tenants are rejected, never retried",
        events["inbound.rejected"] == 2,
    )
    report.sessions["opened"] = events["live_session.opened"]
    report.sessions["closed_by_job"] = events["live_session.closed"]
    report.check(
        "the live closed once after the seller went quiet",
        (events["live_session.opened"], events["live_session.closed"]) == (1, 1),
    )
    statuses = Counter(s for (s,) in demo.query(sa.select(tables.messages_out.c.status)))
    report.outbound["sent"] = statuses["sent"]
    report.outbound["dead"] = statuses["dead"]
    report.outbound["retried"] = events["message.retry_scheduled"]
    report.check(
        "every outbound message ends sent or dead",
        set(statuses) <= {"sent", "dead"},
        str(dict(statuses)),
    )
    sent_log = directory / "sent.jsonl"
    lines = sent_log.read_text().splitlines() if sent_log.exists() else []
    sent_ids = Counter(json.loads(line)["outboxId"] for line in lines)
    report.check("no message is sent twice", all(n == 1 for n in sent_ids.values()))
    report.check(
        "the provider's accepted sends are the sent rows", len(sent_ids) == statuses["sent"]
    )
    dead_letters = demo.query(sa.select(tables.dead_letter_jobs.c.source))
    report.check(
        "every dead message has its dead letter",
        sum(1 for (s,) in dead_letters if s == "messages_out") == statuses["dead"],
    )
