"""The newcomer's demo on the real code path (``livesell simulate --engine embedded``).

Everything production runs, embedded in one process: SQLite migrated by Alembic, an in-process
Redis (fakeredis) behind the real RQ queue and job function, the real worker parts (webhook-
processor, outbox-sender, closing job) and the simulated provider with failures. The clock runs
``SPEED`` times faster than the wall, so a one-minute inactivity window passes in seconds.

A short live: clients write before it starts (no session), a seller goes live and posts products,
clients order in bursts (each order that joined the live gets a confirmation through the outbox),
Twilio redelivers some messages, a malformed payload and an unknown tenant are rejected, the
provider fails now and then, the seller goes quiet past the window and the closing job ends the
live. The worker parts run under ``Runner``, as in ``livesell worker``; the script stops them. The
invariants (``invariants.py``, the memory engine's own) read the database through the unit of
work while the workers run and once they have stopped.

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
from collections.abc import Callable
from pathlib import Path

import attrs
import fakeredis
from dependency_injector import providers

from adapters.memory.clock import SequentialIds
from adapters.sqlalchemy import migrations
from adapters.system.clock import AcceleratedClock
from application.outbox import queue_outbound_message
from application.tenants import add_seller, add_tenant
from domain.inbound import InboundStatus
from domain.outbox import OutboxStatus
from domain.senders import SenderType
from entrypoints.container import Container, build
from entrypoints.demo.invariants import FINAL, InvariantChecker, Ledger, events_of
from entrypoints.demo.report import Report
from entrypoints.demo.scenario import Scenario
from entrypoints.runner import EXIT_OK, Runner, Shutdown, WorkerPart
from entrypoints.settings import Settings

SPEED = 20.0
WINDOW_MINUTES = 1
TENANT = "shop-demo"
TENANT_NUMBER = "+33757000001"
SELLER = "+33612000001"
GRACE_SECONDS = 10.0


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


class _ScriptStops(Shutdown):
    """The demo's ``Runner`` is stopped by its script, not by signals: it runs in a thread (where
    signal handlers cannot be installed) and Ctrl-C interrupts the script itself."""

    def install(self) -> Shutdown:
        return self


class _Workers:
    """The worker parts under ``Runner``, in a background thread while the script runs."""

    def __init__(self, container: Container) -> None:
        parts: list[WorkerPart] = [
            # one process: children would build their own container from Settings, without the
            # in-process Redis and the accelerated clock
            container.webhook_part(processes=1),
            container.outbox_part(),
            container.closer_part(),
        ]
        self.runner = Runner(parts, shutdown=_ScriptStops(GRACE_SECONDS))
        self.exit_code: int | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="livesell-demo", daemon=True)

    def _run(self) -> None:
        try:
            self.exit_code = self.runner.run()
        except BaseException as exc:  # a part that could not start: the report says so
            self.error = exc
        finally:
            self.runner.stop.set()

    def start(self) -> None:
        self._thread.start()

    @property
    def stopped(self) -> bool:
        """The runner stopped on its own: a part died or could not start."""
        return self.runner.stop.is_set()

    def stop(self) -> str | None:
        """Stop the parts (in-flight work finishes); what went wrong, if anything did."""
        self.runner.stop.set()
        self._thread.join(GRACE_SECONDS + 5)
        if self.error is not None:
            return f"the worker parts did not start: {type(self.error).__name__}: {self.error}"
        if self._thread.is_alive() or self.exit_code != EXIT_OK:
            return f"the worker parts did not stop cleanly (runner exit code {self.exit_code})"
        return None


class _Demo:
    def __init__(
        self, container: Container, settings: Settings, options: EmbeddedOptions, report: Report
    ) -> None:
        self.container = container
        self.uow_factory = container.uow_factory()
        self.options = options
        self.report = report
        self.rng = random.Random(options.seed)
        self.queue = container.inbound_queue()
        self.sequence = 0
        self.redelivered = 0
        self.ledger = Ledger(max_attempts=settings.outbox_max_attempts)
        self.checker = InvariantChecker(self.uow_factory, self.ledger)
        self.processed: set[str] = set()
        self.outbox_ids = SequentialIds(f"demo{options.seed}-out")

    # -- the shop's side ---------------------------------------------------------------------

    def setup(self) -> list[str]:
        clock, ids = self.container.clock(), self.container.ids()
        add_tenant(
            uow_factory=self.uow_factory,
            clock=clock,
            tenant_id=TENANT,
            name="Boutique démo",
            whatsapp_number=TENANT_NUMBER,
        )
        add_seller(
            uow_factory=self.uow_factory,
            clock=clock,
            ids=ids,
            tenant_id=TENANT,
            phone="06 12 00 00 01",
            name="Camille",
        )
        return [f"+336{20000000 + n * 7919:08d}" for n in range(self.options.clients)]

    def say(self, phone: str, body: str, *, redeliver: bool = False, early: bool = False) -> str:
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
        sender = SenderType.SELLER if phone == SELLER else SenderType.CLIENT
        self.ledger.wrote(TENANT, provider_id, payload["correlationId"], sender, early=early)
        self.queue.enqueue(payload)
        if redeliver:
            self.queue.enqueue(dict(payload))
            self.redelivered += 1
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
        self.ledger.sent_bad()
        self.ledger.sent_bad()

    def confirm_orders(self, orders: list[str]) -> None:
        with self.uow_factory() as uow:
            joined = [uow.inbound.get(TENANT, provider_id) for provider_id in sorted(orders)]
        for record in joined:
            if record is None or record.live_session_id is None:
                continue
            message_id = queue_outbound_message(
                uow_factory=self.uow_factory,
                tenant_id=TENANT,
                to=record.message.from_address,
                body="Merci ! Votre commande est notée.",
                correlation_id=record.message.correlation_id,
                clock=self.container.clock(),
                ids=self.outbox_ids,
            )
            self.ledger.queued(TENANT, message_id)
            self.report.outbound["queued"] += 1

    # -- watching the store ------------------------------------------------------------------

    def all_processed(self) -> bool:
        """Every message sent so far is processed (each one read until it is)."""
        waiting = [pid for _tenant, pid in self.ledger.messages if pid not in self.processed]
        with self.uow_factory() as uow:
            for provider_id in waiting:
                record = uow.inbound.get(TENANT, provider_id)
                if record is not None and record.status is InboundStatus.PROCESSED:
                    self.processed.add(provider_id)
        return len(self.processed) == len(self.ledger.messages)

    def outbox_drained(self) -> bool:
        with self.uow_factory() as uow:
            statuses = uow.outbox.count_by_status()
        return all(n == 0 for s, n in statuses.items() if s not in FINAL)

    def live_closed(self) -> bool:
        with self.uow_factory() as uow:
            return not uow.sessions.count_active()

    def wait(self, what: str, done: Callable[[], bool], deadline: float, workers: _Workers) -> bool:
        """Wait until ``done()``, checking the invariants that always hold meanwhile; False (and
        a failure in the report) when the deadline passes or the workers stop first."""
        while not done():
            self.checker.while_running()
            if workers.stopped:
                self.report.fail(f"{what}: the worker parts stopped before")
                return False
            if time.monotonic() > deadline:
                self.report.fail(f"{what}: not within {self.options.timeout_seconds:g} s")
                return False
            time.sleep(0.05)
        self.checker.while_running()
        return True


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
    demo = _Demo(container, settings, options, report)
    clients = demo.setup()
    workers = _Workers(container)
    deadline = time.monotonic() + options.timeout_seconds
    try:
        workers.start()
        _script(demo, clients, deadline, workers, progress or (lambda _done, _total: None))
    finally:
        failure = workers.stop()
        if failure is not None:
            report.fail(failure)
        _final_report(demo, directory)
        container.engine().dispose()
        shutil.rmtree(directory, ignore_errors=True)
    report.virtual_minutes = clock.elapsed().total_seconds() / 60
    report.wall_seconds = time.perf_counter() - wall
    return report


def _script(
    demo: _Demo,
    clients: list[str],
    deadline: float,
    workers: _Workers,
    progress: Callable[[int, int], None],
) -> None:
    rng = demo.rng
    stages = demo.options.products + 4

    def wait(what: str, done: Callable[[], bool]) -> bool:
        return demo.wait(what, done, deadline, workers)

    for phone in clients[:3]:
        demo.say(phone, "bonjour ? c'est quand le live ?", early=True)
    if not wait("early messages processed", demo.all_processed):
        return
    progress(1, stages)
    demo.say(SELLER, "Bonsoir ! Le live commence")
    demo.reject_some()
    # The orders follow the live's opening, as on a phone: none may overtake it in the workers.
    if not wait("the live opened", demo.all_processed):
        return
    progress(2, stages)
    for product in range(1, demo.options.products + 1):
        demo.say(SELLER, f"Article {product} : robe en lin, 35 EUR")
        orders = [
            demo.say(phone, f"je prends {product}", redeliver=rng.random() < 0.1)
            for phone in rng.sample(clients, k=max(1, len(clients) // 2))
        ]
        if not wait("orders processed", demo.all_processed):
            return
        demo.confirm_orders(orders)
        progress(2 + product, stages)
    if not wait("outbox drained", demo.outbox_drained):
        return
    progress(stages - 1, stages)
    if wait("the live closed after the seller went quiet", demo.live_closed):
        progress(stages, stages)


def _final_report(demo: _Demo, directory: Path) -> None:
    """The counts, read from the store through the unit of work, and every invariant."""
    report = demo.report
    sent_log = directory / "sent.jsonl"
    lines = sent_log.read_text().splitlines() if sent_log.exists() else []
    report.record(demo.checker.at_end(json.loads(line)["outboxId"] for line in lines))
    with demo.uow_factory() as uow:
        for _tenant, provider_id in demo.ledger.messages:
            record = uow.inbound.get(TENANT, provider_id)
            kind = record.message_type if record is not None else None
            report.inbound[kind or "unprocessed"] += 1
        statuses = uow.outbox.count_by_status()

        def events(kind: str) -> int:
            return len(events_of(uow, kind))

        report.inbound["duplicate"] = demo.redelivered
        report.inbound["rejected"] = events("inbound.rejected")
        report.sessions["opened"] = events("live_session.opened")
        report.sessions["closed_by_job"] = events("live_session.closed")
        report.outbound["sent"] = statuses.get(OutboxStatus.SENT, 0)
        report.outbound["dead"] = statuses.get(OutboxStatus.DEAD, 0)
        report.outbound["retried"] = events("message.retry_scheduled")
