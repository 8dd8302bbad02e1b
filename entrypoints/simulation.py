"""A scripted live-selling scenario run through the real use cases under a virtual clock.

Tenants with sellers and a few hundred clients; clients write before the live (no session), a
seller goes live and posts products, clients answer in bursts and order (each order queues a
confirmation in the outbox), Twilio redelivers some messages, a few payloads are malformed, the
provider is flaky, then the seller goes quiet past the inactivity window and the closing job ends
the live. Invariants are checked as it runs; the report says what happened and what held.
"""

from __future__ import annotations

import heapq
import random
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from adapters.memory.clock import FixedClock, SequentialIds
from adapters.memory.store import MemoryStore, MemoryUnitOfWorkFactory
from adapters.memory.waiting import VirtualWaiter
from adapters.simulated.provider import SimulatedMessagingProvider
from adapters.system.executor import InlineExecutor
from application.inbound import Processed, Rejected, process_inbound_message
from application.live_sessions import close_inactive_sessions
from application.outbox import DEFAULT_LEASE, queue_outbound_message
from application.outbox_sender import OutboxSender
from application.tenants import add_seller, add_tenant
from domain.errors import InvalidPhoneNumber
from domain.live_sessions import InactivityWindow, SessionStatus
from domain.outbox import OutboxStatus
from domain.phones import normalise_phone
from domain.retry import RetryPolicy

START = datetime(2026, 3, 14, 18, 0, tzinfo=UTC)


@attrs.frozen(kw_only=True)
class Scenario:
    """The size and shape of a simulated live."""

    tenants: int = 2
    clients: int = 300
    sellers_per_tenant: int = 2
    live_minutes: int = 60
    product_every_minutes: int = 5
    participation: float = 0.3
    window_minutes: int = 45
    close_interval_minutes: int = 10
    transient_failure_rate: float = 0.1
    permanent_failure_rate: float = 0.01
    duplicate_rate: float = 0.03
    bad_payload_rate: float = 0.005
    max_attempts: int = 5
    batch_size: int = 50
    seed: int = 7

    def __attrs_post_init__(self) -> None:
        if self.tenants < 1 or self.clients < 1 or self.sellers_per_tenant < 1:
            raise ValueError("a scenario needs at least one tenant, client and seller")
        if self.live_minutes < self.product_every_minutes:
            raise ValueError("the live must last at least one product interval")


@attrs.define
class Report:
    scenario: Scenario
    inbound: Counter[str] = attrs.field(factory=Counter)
    sessions: Counter[str] = attrs.field(factory=Counter)
    outbound: Counter[str] = attrs.field(factory=Counter)
    invariants: dict[str, bool] = attrs.field(factory=dict)
    violations: list[str] = attrs.field(factory=list)
    virtual_minutes: float = 0.0
    wall_seconds: float = 0.0
    title: str | None = None

    @property
    def ok(self) -> bool:
        return all(self.invariants.values())

    def check(self, name: str, holds: bool, detail: str = "") -> None:
        self.invariants[name] = self.invariants.get(name, True) and holds
        if not holds and len(self.violations) < 20:
            self.violations.append(f"{name}: {detail}" if detail else name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": attrs.asdict(self.scenario),
            "inbound": dict(self.inbound),
            "sessions": dict(self.sessions),
            "outbound": dict(self.outbound),
            "invariants": self.invariants,
            "violations": self.violations,
            "ok": self.ok,
            "virtualMinutes": round(self.virtual_minutes, 1),
            "wallSeconds": round(self.wall_seconds, 3),
        }

    def render(self) -> str:
        s = self.scenario
        lines = [
            self.title
            or f"livesell simulation — {s.tenants} tenants, {s.clients} clients, "
            f"{s.live_minutes}-minute live, window {s.window_minutes} min, seed {s.seed}",
            "",
            "inbound   " + _pairs(self.inbound, ("seller", "client", "duplicate", "rejected")),
            "sessions  " + _pairs(self.sessions, ("opened", "closed_by_job", "closed_stale")),
            "outbound  " + _pairs(self.outbound, ("queued", "sent", "retried", "dead")),
            "",
            "invariants",
        ]
        lines += [
            f"  {'ok  ' if held else 'FAIL'} {name}" for name, held in self.invariants.items()
        ]
        lines += [f"  ! {v}" for v in self.violations]
        lines += [
            "",
            f"{self.virtual_minutes:.0f} virtual minutes in {self.wall_seconds:.2f} s wall time"
            f" — {'all invariants held' if self.ok else 'INVARIANTS BROKEN'}",
        ]
        return "\n".join(lines)


def _pairs(counter: Counter[str], order: tuple[str, ...]) -> str:
    keys = list(order) + sorted(k for k in counter if k not in order)
    return "  ".join(f"{k}={counter.get(k, 0)}" for k in keys)


@attrs.frozen(order=True)
class _Step:
    at: datetime
    seq: int
    kind: str = attrs.field(order=False)
    data: dict[str, Any] = attrs.field(order=False, factory=dict)


class _Script:
    """Builds the timeline of inbound messages for every tenant."""

    def __init__(self, scenario: Scenario, rng: random.Random) -> None:
        self.s = scenario
        self.rng = rng
        self.seq = 0
        self.steps: list[_Step] = []

    def add(self, at: datetime, kind: str, **data: Any) -> None:
        self.seq += 1
        heapq.heappush(self.steps, _Step(at, self.seq, kind, data))

    def build(self, tenants: list[dict[str, Any]]) -> list[_Step]:
        s, rng = self.s, self.rng
        for t in tenants:
            clients = t["clients"]
            for client in rng.sample(clients, k=min(5, len(clients))):
                self.say(t, client, START + timedelta(seconds=rng.uniform(0, 90)), "bonjour ?")
            live_start = START + timedelta(minutes=2)
            self.say(t, t["sellers"][0], live_start, "Bonsoir ! Le live commence", seller=True)
            product = 0
            minute = 2
            while minute < 2 + s.live_minutes:
                product += 1
                posted = START + timedelta(minutes=minute, seconds=rng.uniform(0, 20))
                seller = rng.choice(t["sellers"])
                self.say(t, seller, posted, f"Article {product}: robe en lin, 35 EUR", seller=True)
                for client in rng.sample(clients, k=int(len(clients) * s.participation)):
                    at = posted + timedelta(seconds=rng.expovariate(1 / 25))
                    order = rng.random() < 0.6
                    self.say(
                        t,
                        client,
                        at,
                        f"je prends {product}" if order else "quelle taille ?",
                        order=order,
                    )
                minute += s.product_every_minutes
            quiet_from = START + timedelta(minutes=2 + s.live_minutes)
            for client in rng.sample(clients, k=min(20, len(clients))):
                at = quiet_from + timedelta(minutes=rng.uniform(1, s.window_minutes * 2))
                self.say(t, client, at, "le live est fini ?")
        last_message = max(step.at for step in self.steps)
        end = last_message + timedelta(minutes=s.window_minutes + s.close_interval_minutes)
        minute = s.close_interval_minutes
        while START + timedelta(minutes=minute) <= end:
            self.add(START + timedelta(minutes=minute), "close")
            minute += s.close_interval_minutes
        return [heapq.heappop(self.steps) for _ in range(len(self.steps))]

    def say(
        self,
        tenant: dict[str, Any],
        phone: str,
        at: datetime,
        body: str,
        *,
        seller: bool = False,
        order: bool = False,
    ) -> None:
        self.seq += 1
        payload: dict[str, Any] = {
            "tenantId": tenant["id"],
            "providerMessageId": f"SM{tenant['id']}{self.seq:08d}",
            "from": f"whatsapp:{phone}",
            "to": f"whatsapp:{tenant['number']}",
            "body": body,
            "correlationId": f"sim-{self.seq}",
        }
        kind = "seller" if seller else "client"
        self.add(at, "inbound", payload=payload, sender=kind, order=order)
        if self.rng.random() < self.s.duplicate_rate:
            self.add(
                at + timedelta(seconds=self.rng.uniform(1, 30)),
                "inbound",
                payload=dict(payload),
                sender=kind,
                duplicate=True,
            )
        if self.rng.random() < self.s.bad_payload_rate:
            broken = dict(payload, providerMessageId="", body=123)
            self.add(at, "inbound", payload=broken, sender=kind, bad=True)


def _phones(rng: random.Random, count: int, used: set[str]) -> list[str]:
    """Distinct valid French mobile numbers in E.164."""
    phones: list[str] = []
    while len(phones) < count:
        candidate = f"06{rng.randrange(10_000_000, 99_999_999)}"
        try:
            # Read nationally: only numbers valid in France pass (an international one need not).
            phone = normalise_phone(candidate, "FR")
        except InvalidPhoneNumber:
            continue
        if phone not in used:
            used.add(phone)
            phones.append(phone)
    return phones


def run_scenario(
    scenario: Scenario, *, progress: Callable[[int, int], None] | None = None
) -> Report:
    """Run ``scenario`` on the in-memory adapters under a virtual clock and check invariants.
    ``progress(done, total)`` is called after each scripted step."""
    wall = time.perf_counter()
    rng = random.Random(scenario.seed)
    report = Report(scenario)
    store = MemoryStore()
    uow_factory = MemoryUnitOfWorkFactory(store)
    clock = FixedClock(START - timedelta(minutes=5))
    ids = SequentialIds("sim")
    window = InactivityWindow(scenario.window_minutes)
    policy = RetryPolicy(max_attempts=scenario.max_attempts)
    provider = SimulatedMessagingProvider(
        transient_failure_rate=scenario.transient_failure_rate,
        permanent_failure_rate=scenario.permanent_failure_rate,
        seed=scenario.seed,
        sleep=lambda _seconds: None,
        wall_clock=clock.now,
    )

    used: set[str] = set()
    tenants: list[dict[str, Any]] = []
    per_tenant = max(1, scenario.clients // scenario.tenants)
    for index in range(scenario.tenants):
        tenant_id = f"shop-{index + 1}"
        number = f"+3375{index:07d}"
        add_tenant(
            uow_factory=uow_factory,
            clock=clock,
            tenant_id=tenant_id,
            name=f"Boutique {index + 1}",
            whatsapp_number=number,
        )
        sellers = _phones(rng, scenario.sellers_per_tenant, used)
        for phone in sellers:
            # sellers are registered in national format: classification must still match them
            add_seller(
                uow_factory=uow_factory,
                clock=clock,
                ids=ids,
                tenant_id=tenant_id,
                phone="0" + phone[3:],
            )
        clients = _phones(rng, per_tenant, used)
        tenants.append({"id": tenant_id, "number": number, "sellers": sellers, "clients": clients})

    steps = _Script(scenario, rng).build(tenants)
    first_results: dict[tuple[str, str], dict[str, Any]] = {}
    closed_ids: set[str] = set()

    sender = OutboxSender(  # the production sender; its sends inline, so runs repeat exactly
        uow_factory=uow_factory,
        provider=provider,
        clock=clock,
        ids=ids,
        policy=policy,
        lease=DEFAULT_LEASE,
        batch_size=scenario.batch_size,
        concurrency=scenario.batch_size,
        poll_interval=1.0,
        executor=InlineExecutor(),
        waiter=VirtualWaiter(clock),
    )

    def send_due_until(limit: datetime) -> None:
        """Run the sender's cycles up to ``limit`` while anything is due."""
        while True:
            report_batch = sender.run_once()
            report.outbound["sent"] += report_batch.sent
            report.outbound["retried"] += report_batch.retried
            report.outbound["dead"] += report_batch.dead
            if report_batch.claimed:
                continue
            next_due = _next_due(store)
            if next_due is None or next_due > limit:
                return
            clock.set(max(next_due, clock.now()))

    for index, step in enumerate(steps):
        if progress is not None:
            progress(index, len(steps))
        send_due_until(step.at)
        clock.set(max(step.at, clock.now()))
        if step.kind == "close":
            closed = close_inactive_sessions(
                uow_factory=uow_factory,
                clock=clock,
                window=window,
                batch_limit=100,
                run_id=f"close-{step.seq}",
            )
            report.sessions["closed_by_job"] += closed.closed_count
        else:
            _inbound(step, store, report, first_results, uow_factory, clock, ids, window)
        _check_sessions(store, report, closed_ids)
    send_due_until(clock.now() + timedelta(hours=1))
    if progress is not None:
        progress(len(steps), len(steps))

    _final_checks(store, report, provider, policy)
    report.virtual_minutes = (clock.now() - START).total_seconds() / 60
    report.wall_seconds = time.perf_counter() - wall
    return report


def _inbound(
    step: _Step,
    store: MemoryStore,
    report: Report,
    first_results: dict[tuple[str, str], dict[str, Any]],
    uow_factory: MemoryUnitOfWorkFactory,
    clock: FixedClock,
    ids: SequentialIds,
    window: InactivityWindow,
) -> None:
    payload = step.data["payload"]
    outcome = process_inbound_message(
        payload, uow_factory=uow_factory, clock=clock, ids=ids, window=window
    )
    if isinstance(outcome, Rejected):
        report.inbound["rejected"] += 1
        report.check(
            "only malformed payloads are rejected",
            step.data.get("bad", False),
            f"{payload.get('providerMessageId')}: {outcome.error}",
        )
        return
    assert isinstance(outcome, Processed)
    key = (payload["tenantId"], payload["providerMessageId"])
    enriched = outcome.enriched
    if outcome.duplicate:
        report.inbound["duplicate"] += 1
        report.check(
            "a redelivered message returns the first result",
            first_results.get(key) == enriched,
            str(key),
        )
        return
    report.check("a message is recorded once", key not in first_results, str(key))
    first_results[key] = enriched
    sender = step.data["sender"]
    report.inbound[sender] += 1
    report.check(
        "senders are classified by the tenant's seller phones",
        enriched["messageType"] == sender,
        str(key),
    )
    if sender == "seller":
        report.check(
            "a seller message always lands in a session",
            enriched["liveSessionId"] is not None,
            str(key),
        )
    if step.data.get("order") and enriched["liveSessionId"] is not None:
        queue_outbound_message(
            uow_factory=uow_factory,
            tenant_id=payload["tenantId"],
            to=payload["from"],
            body="Merci ! Votre commande est notée.",
            correlation_id=payload["correlationId"],
            clock=clock,
            ids=ids,
        )
        report.outbound["queued"] += 1


def _check_sessions(store: MemoryStore, report: Report, closed_ids: set[str]) -> None:
    active = Counter(s.tenant_id for s in store.sessions.values() if s.is_active)
    report.check(
        "at most one active session per tenant",
        all(n <= 1 for n in active.values()),
        str(dict(active)),
    )
    for session in store.sessions.values():
        if session.status is SessionStatus.CLOSED:
            closed_ids.add(session.id)
        elif session.id in closed_ids:
            report.check("a closed session is never reopened", False, session.id)


def _final_checks(
    store: MemoryStore,
    report: Report,
    provider: SimulatedMessagingProvider,
    policy: RetryPolicy,
) -> None:
    opened = [e for e in store.events if e.event_type == "live_session.opened"]
    closed = [e for e in store.events if e.event_type == "live_session.closed"]
    report.sessions["opened"] = len(opened)
    report.sessions["closed_stale"] = sum(1 for e in closed) - report.sessions["closed_by_job"]
    seller_corr = {
        r.message.correlation_id
        for r in store.inbound.values()
        if r.message_type is not None and r.message_type.value == "seller"
    }
    report.check("only sellers open sessions", all(e.correlation_id in seller_corr for e in opened))
    report.check(
        "every session is closed after the seller went quiet",
        not any(s.is_active for s in store.sessions.values()),
    )
    report.check(
        "one closed event per closed session",
        len(closed) == sum(1 for s in store.sessions.values() if not s.is_active),
    )
    classified = sum(1 for e in store.events if e.event_type == "message.classified")
    report.check("one classified event per recorded message", classified == len(store.inbound))
    rejected = [d for d in store.dead_letters.values() if d.source.value == "webhook-processing"]
    report.check(
        "every rejected payload has its dead letter", len(rejected) == report.inbound["rejected"]
    )
    statuses = Counter(m.status for m in store.outbox.values())
    report.check(
        "every outbound message ends sent or dead",
        set(statuses) <= {OutboxStatus.SENT, OutboxStatus.DEAD},
        str(dict(statuses)),
    )
    report.check(
        "no attempt beyond the maximum",
        all(m.attempts <= policy.max_attempts for m in store.outbox.values()),
    )
    sent_ids = Counter(r.outbox_id for r in provider.sent)
    report.check("no message is sent twice", all(n == 1 for n in sent_ids.values()))
    report.check(
        "the provider's accepted sends are the sent rows",
        set(sent_ids) == {m.id for m in store.outbox.values() if m.status is OutboxStatus.SENT},
    )
    dead_outbox = [d for d in store.dead_letters.values() if d.source.value == "messages_out"]
    report.check(
        "every dead message has its dead letter",
        len(dead_outbox) == statuses.get(OutboxStatus.DEAD, 0),
    )
    quiet_clients = {
        r.message.correlation_id for r in store.inbound.values() if r.message.body == "bonjour ?"
    }
    report.check(
        "clients writing before the live join no session",
        all(
            r.live_session_id is None
            for r in store.inbound.values()
            if r.message.correlation_id in quiet_clients
        ),
    )


def _next_due(store: MemoryStore) -> datetime | None:
    pending = [
        m.next_attempt_at
        for m in store.outbox.values()
        if m.status in (OutboxStatus.PENDING, OutboxStatus.FAILED)
    ]
    return min(pending) if pending else None
