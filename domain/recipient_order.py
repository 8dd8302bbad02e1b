"""Order per recipient: messages to one customer go out in the order they were written (ADR 0020).

A recipient is ``(tenant_id, to_phone)``; written order is ``(created_at, id)``. A message is
*queued* while its status is one of ``QUEUED_STATUSES`` (pending, failed awaiting its retry, or
sending under a lease); any other status is terminal (sent, dead, and any terminal status added
later, such as expired) and releases the messages written after it. Only the *head* of a
recipient's queue, its earliest queued message, may be claimed; the others wait behind it.

Optional pacing (``OUTBOX_RECIPIENT_MIN_GAP_SECONDS``, ADR 0025): a head is not claimed until the
gap has passed since the recipient's last message was sent (its ``sent_at``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from domain.outbox import OutboxMessage, OutboxStatus

QUEUED_STATUSES = frozenset({OutboxStatus.PENDING, OutboxStatus.FAILED, OutboxStatus.SENDING})
"""The statuses that hold back the messages written after to the same recipient."""

Recipient = tuple[str, str]


def recipient_of(message: OutboxMessage) -> Recipient:
    return (message.tenant_id, message.to_phone)


def written_order(message: OutboxMessage) -> tuple[datetime, str]:
    return (message.created_at, message.id)


def paced_recipients(
    messages: Iterable[OutboxMessage], now: datetime, gap: timedelta
) -> set[Recipient]:
    """The recipients sent a message less than ``gap`` before ``now`` (ADR 0025): their next
    message waits until ``gap`` has passed since that ``sent_at``. Empty when ``gap`` is 0."""
    if gap <= timedelta(0):
        return set()
    since = now - gap
    return {
        recipient_of(m)
        for m in messages
        if m.status is OutboxStatus.SENT and m.sent_at is not None and m.sent_at > since
    }


def queue_heads(messages: Iterable[OutboxMessage]) -> dict[Recipient, OutboxMessage]:
    """Each recipient's earliest queued message (the only one of theirs that may be claimed)."""
    heads: dict[Recipient, OutboxMessage] = {}
    for message in messages:
        if message.status not in QUEUED_STATUSES:
            continue
        key = recipient_of(message)
        head = heads.get(key)
        if head is None or written_order(message) < written_order(head):
            heads[key] = message
    return heads
