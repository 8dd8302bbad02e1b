"""A scripted live-selling scenario run through the real use cases under a virtual clock.

Tenants with sellers and a few hundred clients; clients write before the live (no session), a
seller goes live and posts products, clients answer in bursts and order (each order queues a
confirmation in the outbox), Twilio redelivers some messages, a few payloads are malformed, the
provider is flaky, then the seller goes quiet past the inactivity window and the closing job ends
the live. Invariants are checked as it runs; the report says what happened and what held.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from adapters.memory.clock import FixedClock, SequentialIds
from adapters.memory.store import MemoryStore, MemoryUnitOfWorkFactory
from adapters.simulated.provider import SimulatedMessagingProvider
from application.inbound import Processed, Rejected, process_inbound_message
from application.live_sessions import close_inactive_sessions
from application.outbox import queue_outbound_message, send_due_messages
from application.tenants import add_seller, add_tenant
from domain.live_sessions import InactivityWindow, SessionStatus
from domain.outbox import OutboxStatus
from domain.retry import RetryPolicy
from entrypoints.demo.report import Report
from entrypoints.demo.scenario import START, Scenario, Script, Step, distinct_phones


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
        sellers = distinct_phones(rng, scenario.sellers_per_tenant, used)
        for phone in sellers:
            # sellers are registered in national format: classification must still match them
            add_seller(
                uow_factory=uow_factory,
                clock=clock,
                ids=ids,
                tenant_id=tenant_id,
                phone="0" + phone[3:],
            )
        clients = distinct_phones(rng, per_tenant, used)
        tenants.append({"id": tenant_id, "number": number, "sellers": sellers, "clients": clients})

    steps = Script(scenario, rng).build(tenants)
    first_results: dict[tuple[str, str], dict[str, Any]] = {}
    closed_ids: set[str] = set()

    def send_due_until(limit: datetime) -> None:
        """Run the sender every virtual second up to ``limit`` while anything is due."""
        while True:
            report_batch = send_due_messages(
                uow_factory=uow_factory,
                provider=provider,
                clock=clock,
                ids=ids,
                policy=policy,
                batch_size=scenario.batch_size,
            )
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
    step: Step,
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
