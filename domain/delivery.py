"""Delivery reports: what the provider says became of an outbound message after it was sent.

Twilio reports each message's status to a callback URL, in no guaranteed order and sometimes more
than once. The stored status only moves forward (``queued < sending < sent < delivered < read``);
``failed`` and ``undelivered`` are final and keep the provider's error code. A report that would
move the status backwards, sideways or out of a final state changes nothing.

The delivery status is separate from the outbox ``status``: that one says whether *we* handed the
message to the provider; this one says what the provider did with it afterwards.
"""

from __future__ import annotations

import enum
from datetime import datetime

import attrs


class DeliveryStatus(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    UNDELIVERED = "undelivered"

    @classmethod
    def from_provider(cls, raw: str) -> DeliveryStatus | None:
        """The status for a provider's ``MessageStatus`` value, or None when it is not one we
        track (``accepted`` and ``scheduled`` read as ``queued``)."""
        value = raw.strip().lower()
        if value in ("accepted", "scheduled"):
            return cls.QUEUED
        try:
            return cls(value)
        except ValueError:
            return None

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES

    def may_replace(self, current: DeliveryStatus | None) -> bool:
        """True when a report of ``self`` moves a message that is at ``current`` forward."""
        if current is None:
            return True
        if current.is_final:
            return False
        if self.is_final:
            return True
        return _RANK[self] > _RANK[current]

    def replaceable(self) -> frozenset[DeliveryStatus]:
        """Every stored status a report of ``self`` may replace (None, no status yet, aside): the
        condition of the one conditional write that stores the report."""
        return frozenset(s for s in DeliveryStatus if self.may_replace(s))


FINAL_STATUSES = frozenset({DeliveryStatus.FAILED, DeliveryStatus.UNDELIVERED})
_RANK = {
    DeliveryStatus.QUEUED: 0,
    DeliveryStatus.SENDING: 1,
    DeliveryStatus.SENT: 2,
    DeliveryStatus.DELIVERED: 3,
    DeliveryStatus.READ: 4,
}


@attrs.frozen(kw_only=True)
class DeliveryReport:
    """One status report for an outbound message; ``error_code`` only with a final status."""

    status: DeliveryStatus
    updated_at: datetime
    error_code: str | None = None

    @classmethod
    def of(
        cls, status: DeliveryStatus, now: datetime, error_code: str | None = None
    ) -> DeliveryReport:
        """A report; an error code is kept only for ``failed`` and ``undelivered``."""
        code = error_code.strip() if error_code and error_code.strip() else None
        return cls(status=status, updated_at=now, error_code=code if status.is_final else None)
