"""Delivery reports: what the provider says became of an outbound message after it was sent.

Twilio reports each message's status to a callback URL, in no guaranteed order and sometimes more
than once; WhatsApp reports per device, so a ``read`` may follow an ``undelivered`` (ADR 0011).
The stored report is the *join* of every report received, so it is the same whatever order they
arrive in, and it never moves back:

- the status is the furthest one reported, in the order of Twilio's lifecycle
  ``scheduled < accepted < queued < sending < sent < partially_delivered < canceled < failed <
  undelivered < delivered < read``: a ``delivered`` or ``read`` report wins over a failure (the
  customer did get the message), a failure wins over every earlier step;
- the error code is the one carried by a failure report (``canceled``, ``failed``,
  ``undelivered``), and it stays recorded when a later ``delivered`` or ``read`` wins; of two
  different codes for one message the greater is kept (numerically for Twilio's numeric codes),
  so that too is independent of the arrival order.

The delivery status is separate from the outbox ``status``: that one says whether *we* handed the
message to the provider; this one says what the provider did with it afterwards.
"""

from __future__ import annotations

import enum
from datetime import datetime

import attrs


class DeliveryStatus(enum.StrEnum):
    """Twilio's outbound ``MessageStatus`` values, in the order of the message's lifecycle."""

    SCHEDULED = "scheduled"
    ACCEPTED = "accepted"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    PARTIALLY_DELIVERED = "partially_delivered"
    CANCELED = "canceled"
    FAILED = "failed"
    UNDELIVERED = "undelivered"
    DELIVERED = "delivered"
    READ = "read"

    @classmethod
    def from_provider(cls, raw: str) -> DeliveryStatus | None:
        """The status for a provider's ``MessageStatus`` value, or None when it is not an
        outbound status (``receiving`` and ``received`` are inbound ones)."""
        try:
            return cls(raw.strip().lower())
        except ValueError:
            return None

    @property
    def rank(self) -> int:
        """The position in the order above: a report only ever moves the status to a higher
        rank."""
        return _RANKS[self]

    @property
    def is_failure(self) -> bool:
        """A status that carries the provider's error code."""
        return self in FAILURE_STATUSES


_RANKS = {status: rank for rank, status in enumerate(DeliveryStatus)}
FAILURE_STATUSES = frozenset(
    {DeliveryStatus.CANCELED, DeliveryStatus.FAILED, DeliveryStatus.UNDELIVERED}
)


def error_code_key(code: str) -> tuple[int, str]:
    """The order of error codes when two differ: numeric for digit strings (``30008`` <
    ``63016``), then by text."""
    return (len(code), code)


def greater_error_code(current: str | None, reported: str | None) -> str | None:
    """The code to keep of the stored one and a reported one."""
    if reported is None:
        return current
    if current is None:
        return reported
    return max(current, reported, key=error_code_key)


@attrs.frozen(kw_only=True)
class DeliveryReport:
    """The delivery report of an outbound message: its status, the provider's error code if a
    failure was ever reported, and when it last changed."""

    status: DeliveryStatus
    updated_at: datetime
    error_code: str | None = None

    @classmethod
    def of(
        cls, status: DeliveryStatus, now: datetime, error_code: str | None = None
    ) -> DeliveryReport:
        """A report as received; an error code is kept only with a failure status."""
        code = error_code.strip() if error_code and error_code.strip() else None
        return cls(status=status, updated_at=now, error_code=code if status.is_failure else None)

    def merged_into(self, stored: DeliveryReport | None) -> DeliveryReport | None:
        """What ``stored`` becomes once this report is received, or None when it changes nothing
        (a repeated, late or stale report). Commutative: the reports of a message give the same
        status and code in every order."""
        if stored is None:
            return self
        status = self.status if self.status.rank > stored.status.rank else stored.status
        code = greater_error_code(stored.error_code, self.error_code)
        if (status, code) == (stored.status, stored.error_code):
            return None
        return DeliveryReport(status=status, updated_at=self.updated_at, error_code=code)
