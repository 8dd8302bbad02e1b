"""A scripted live-selling scenario run through the real use cases under a virtual clock.

Tenants with sellers and a few hundred clients; clients write before the live (no session), a
seller goes live and posts products, clients answer in bursts and order (each order queues a
confirmation in the outbox), Twilio redelivers some messages, a few payloads are malformed, the
provider is flaky, then the seller goes quiet past the inactivity window and the closing job ends
the live. The invariants (``invariants.py``) are checked after every step and at the end; the
report says what happened and what held.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from adapters.memory.clock import FixedClock, SequentialIds
from adapters.memory.store import MemoryStore, MemoryUnitOfWorkFactory
from adapters.memory.waiting import VirtualWaiter
from adapters.simulated.provider import SimulatedMessagingProvider
from adapters.system.executor import InlineExecutor
from application.inbound import Rejected, process_inbound_message
from application.live_sessions import close_inactive_sessions
from application.outbox import DEFAULT_LEASE, queue_outbound_message
from application.outbox_sender import OutboxSender
from application.provider_router import ProviderRouter
from application.tenants import add_seller, add_tenant
from domain.live_sessions import InactivityWindow
from domain.outbox import OutboxStatus
from domain.retry import RetryPolicy
from domain.senders import SenderType
from domain.tenants import META, TWILIO
from entrypoints.demo.invariants import InvariantChecker, Ledger, events_of
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
    on_meta = range(scenario.tenants - scenario.meta_tenants, scenario.tenants)
    for index in range(scenario.tenants):
        tenant_id = f"shop-{index + 1}"
        number = f"+3375{index:07d}"
        add_tenant(
            uow_factory=uow_factory,
            clock=clock,
            tenant_id=tenant_id,
            name=f"Boutique {index + 1}",
            whatsapp_number=number,
            provider=META if index in on_meta else TWILIO,
            meta_phone_number_id=f"10654035{index:07d}" if index in on_meta else None,
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
    ledger = Ledger(max_attempts=policy.max_attempts)
    checker = InvariantChecker(uow_factory, ledger)

    sender = OutboxSender(  # the production sender; its sends inline, so runs repeat exactly
        uow_factory=uow_factory,
        # The production router, the simulated provider standing in for Twilio and Meta.
        provider=ProviderRouter({TWILIO: lambda: provider, META: lambda: provider}, default=TWILIO),
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
            _inbound(step, report, ledger, uow_factory, clock, ids, window)
        checker.while_running()
    send_due_until(clock.now() + timedelta(hours=1))
    if progress is not None:
        progress(len(steps), len(steps))

    report.record(checker.at_end(r.outbox_id for r in provider.sent))
    if scenario.meta_tenants:
        report.providers.update(store.outbox[r.outbox_id].provider or TWILIO for r in provider.sent)
    with uow_factory() as uow:
        report.sessions["opened"] = len(events_of(uow, "live_session.opened"))
        ended = len(events_of(uow, "live_session.closed"))
    report.sessions["closed_stale"] = ended - report.sessions["closed_by_job"]
    report.virtual_minutes = (clock.now() - START).total_seconds() / 60
    report.wall_seconds = time.perf_counter() - wall
    return report


def _inbound(
    step: Step,
    report: Report,
    ledger: Ledger,
    uow_factory: MemoryUnitOfWorkFactory,
    clock: FixedClock,
    ids: SequentialIds,
    window: InactivityWindow,
) -> None:
    payload = step.data["payload"]
    if step.data.get("bad"):
        ledger.sent_bad()
    elif not step.data.get("duplicate"):
        ledger.wrote(
            payload["tenantId"],
            payload["providerMessageId"],
            payload["correlationId"],
            SenderType(step.data["sender"]),
            early=step.data.get("early", False),
        )
    outcome = process_inbound_message(
        payload, uow_factory=uow_factory, clock=clock, ids=ids, window=window
    )
    if isinstance(outcome, Rejected):
        report.inbound["rejected"] += 1
        return
    if outcome.duplicate:
        report.inbound["duplicate"] += 1
        return
    report.inbound[step.data["sender"]] += 1
    if step.data.get("order") and outcome.enriched["liveSessionId"] is not None:
        message_id = queue_outbound_message(
            uow_factory=uow_factory,
            tenant_id=payload["tenantId"],
            to=payload["from"],
            body="Merci ! Votre commande est notée.",
            correlation_id=payload["correlationId"],
            clock=clock,
            ids=ids,
        )
        ledger.queued(payload["tenantId"], message_id)
        report.outbound["queued"] += 1


def _next_due(store: MemoryStore) -> datetime | None:
    pending = [
        m.next_attempt_at
        for m in store.outbox.values()
        if m.status in (OutboxStatus.PENDING, OutboxStatus.FAILED)
    ]
    return min(pending) if pending else None
