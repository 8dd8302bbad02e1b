"""The customer-service window in the outbox sender (ADR 0021): claim a batch and decide, in the
claim's transaction, what each message does given when its customer last wrote.

Only messages of tenants whose policy is not ``send`` are looked at; for them one read of
``inbound_messages`` serves the whole batch. A template message is never changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import attrs

from domain.outbox import DeliveryFailure, OutboxMessage
from domain.service_window import (
    OUTSIDE_WINDOW_CODE,
    DropOutsideWindow,
    SendAsWritten,
    WindowDecision,
    WindowPolicy,
    decide_window,
)
from ports.clock import Clock
from ports.unit_of_work import UnitOfWork, UnitOfWorkFactory


@attrs.frozen
class Claim:
    """A claimed message and what the window policy says it does."""

    message: OutboxMessage
    window: WindowDecision = attrs.field(factory=SendAsWritten)


def claim_due_in_window(
    *,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    lease: timedelta,
    limit: int,
    recipient_gap: timedelta = timedelta(0),
) -> list[Claim]:
    """Claim up to ``limit`` due messages (none to a recipient sent a message less than
    ``recipient_gap`` ago, ADR 0025), decide each one's window, commit before any is sent."""
    with uow_factory() as uow:
        now = clock.now()
        claimed = uow.outbox.claim_due(now, lease, limit, recipient_gap)
        decisions = window_decisions(uow, claimed, now)
        uow.commit()
    return [Claim(m, decisions.get(m.id, SendAsWritten())) for m in claimed]


def window_decisions(
    uow: UnitOfWork, messages: Sequence[OutboxMessage], now: datetime
) -> dict[str, WindowDecision]:
    """By message id, the decision for each free-form message of a tenant whose policy is not
    ``send``; messages left out go as written."""
    if not messages:
        return {}
    tenants = uow.tenants.get_many({m.tenant_id for m in messages})
    guarded = [
        m
        for m in messages
        if m.tenant_id in tenants
        and tenants[m.tenant_id].window_policy is not WindowPolicy.SEND
        and m.content_sid is None
    ]
    if not guarded:
        return {}
    last = uow.inbound.last_received_from({(m.tenant_id, m.to_phone) for m in guarded})
    decisions: dict[str, WindowDecision] = {}
    for message in guarded:
        tenant = tenants[message.tenant_id]
        decisions[message.id] = decide_window(
            is_template=False,
            body=message.body,
            last_inbound_at=last.get((message.tenant_id, message.to_phone)),
            now=now,
            policy=tenant.window_policy,
            fallback=tenant.fallback_template(),
        )
    return decisions


def outside_window_failure(drop: DropOutsideWindow) -> DeliveryFailure:
    """The permanent failure a dropped message is recorded with: dead at once, its dead letter
    written, code ``outside_window``; the provider was never called."""
    return DeliveryFailure(transient=False, message=drop.error(), code=OUTSIDE_WINDOW_CODE)
