"""Repositories: the core's view of stored state. Every method is scoped to a tenant except the
system scans named as such (the closing job's stale scan, the outbox's due claim), which then
change each row under its own ``tenant_id``.

Errors a repository raises on purpose are defined here; an adapter never leaks its driver's.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple, Protocol

from domain.dead_letters import DeadLetter, DeadLetterSource
from domain.delivery import DeliveryReport
from domain.events import Event
from domain.inbound import RECEIVED_STATE, InboundRecord, InboundState
from domain.live_sessions import LiveSession
from domain.outbox import OutboxMessage, OutboxStatus
from domain.senders import SenderType
from domain.tenants import Seller, Tenant


class RepositoryError(Exception):
    """Base of the errors repositories raise on purpose."""


class AlreadyExists(RepositoryError, ValueError):
    """A row with the same unique key is already stored."""


class ActiveSessionExists(AlreadyExists):
    """The tenant already has an active live session (``live_sessions_tenant_id_active_key``).

    Raised by ``LiveSessionRepository.add``; the unit of work stays usable so the caller can read
    the winner of the race.
    """


class DuplicateInboundMessage(AlreadyExists):
    """``(tenant_id, provider_message_id)`` is already recorded; the unit of work stays usable."""


class StoreUnavailable(RepositoryError, ConnectionError):
    """The store could not be reached or the transaction failed for a transient reason."""


class TenantRepository(Protocol):
    def get(self, tenant_id: str) -> Tenant | None: ...

    def find_by_whatsapp_number(self, number_e164: str) -> Tenant | None: ...

    def find_by_meta_phone_number_id(self, phone_number_id: str) -> Tenant | None:
        """The tenant served by Meta under this business phone-number id (Meta's webhook)."""
        ...

    def add(self, tenant: Tenant) -> None:
        """Store a new tenant. Raises AlreadyExists for a taken id, WhatsApp number or Meta
        phone-number id."""
        ...

    def list(self) -> Sequence[Tenant]:
        """Every tenant, by id (operators' view)."""
        ...

    def get_many(self, tenant_ids: Collection[str]) -> dict[str, Tenant]:
        """The tenants with these ids, by id, in one read (unknown ids are left out)."""
        ...

    def update_window_policy(self, tenant: Tenant) -> bool:
        """Store the tenant's ``window_policy``, ``fallback_content_sid`` and
        ``fallback_variable``, nothing else; False when no tenant has its id."""
        ...


class SellerDirectory(Protocol):
    def find_by_key(self, tenant_id: str, phone_key: str) -> Seller | None:
        """The tenant's seller whose number has this canonical key (``domain.phones.phone_key``),
        or None: the sender-classification lookup, whatever form of the number WhatsApp sent."""
        ...

    def add(self, seller: Seller) -> None:
        """Raises AlreadyExists when the tenant already has a seller with this phone or with
        another form of the same number (the same ``phone_key``), and
        ``domain.errors.UnknownTenant`` when no tenant has the seller's ``tenant_id``."""
        ...

    def list(self, tenant_id: str) -> Sequence[Seller]: ...


class InboundFacts(NamedTuple):
    """What the inbound job reads before it writes: the message's inbox record, the seller with
    the sender's phone key, the tenant's active session (each None when there is none)."""

    record: InboundRecord | None
    seller: Seller | None
    active_session: LiveSession | None


class TouchedWrite(enum.Enum):
    """What ``InboundLookup.record_touching`` did."""

    WRITTEN = "written"
    """The session was touched and the record written, with its events."""
    SESSION_GONE = "session_gone"
    """The session was no longer active (closed meanwhile): nothing was written."""
    RECORD_TAKEN = "record_taken"
    """A concurrent job wrote the record first. The session may have been touched: the caller
    rolls the unit of work back."""


class InboundLookup(Protocol):
    """The inbound job's reads, and its writes on its fast path, each in one round trip in SQL."""

    def inbound_facts(
        self, tenant_id: str, provider_message_id: str, phone_key: str
    ) -> InboundFacts:
        """``inbound.get``, ``sellers.find_by_key`` and ``sessions.get_active`` of the tenant at
        once (one round trip in SQL): the same answers as those three reads."""
        ...

    def tenant_and_facts(
        self, tenant_id: str, provider_message_id: str, phone_key: str
    ) -> tuple[Tenant | None, InboundFacts]:
        """``tenants.get`` and ``inbound_facts`` at once (one round trip in SQL), for a sender
        whose phone key does not depend on the tenant's region (an international number). The
        facts of an unknown tenant are three Nones."""
        ...

    def record_touching(
        self,
        record: InboundRecord,
        *,
        was: InboundState | None,
        session_id: str,
        at: datetime,
        sender: SenderType,
    ) -> TouchedWrite:
        """``sessions.touch(record.tenant_id, session_id, at, sender)`` and, only if that touched
        an active session, ``inbound.add(record)`` (``was`` None: a new record) or
        ``inbound.save(record, was=was)``, with the record's events: one round trip in SQL
        (ADR 0028). A session closed meanwhile is never touched, so never reopened."""
        ...


class LiveSessionRepository(Protocol):
    def get(self, tenant_id: str, session_id: str) -> LiveSession | None: ...

    def get_active(self, tenant_id: str) -> LiveSession | None:
        """The tenant's active session, current or stale, or None."""
        ...

    def add(self, session: LiveSession) -> None:
        """Store a newly opened session and its events.

        Raises ActiveSessionExists when the tenant already has an active one (a concurrent
        creator won); nothing is stored then and the unit of work stays usable.
        """
        ...

    def touch(
        self, tenant_id: str, session_id: str, now: datetime, sender: SenderType
    ) -> LiveSession | None:
        """Record activity on an *active* session in one conditional write.

        ``now`` is the instant the message was received (ADR 0012). ``last_activity_at`` becomes
        ``max(last_activity_at, now)``, ``started_at`` becomes ``min(started_at, now)`` and the
        sender's message count grows by one, only where ``id``, ``tenant_id`` match and ``status =
        'active'``. Returns the session as stored after the write, or None when it was closed
        meanwhile (it is never reopened).
        """
        ...

    def close(self, session: LiveSession) -> bool:
        """Store a closure made by ``LiveSession.close`` with its events, only if the stored row is
        still active and unchanged since it was read (no touch in between). Returns False, storing
        nothing, otherwise.
        """
        ...

    def claim_stale(self, cutoff: datetime, limit: int, window: timedelta) -> Sequence[LiveSession]:
        """System scan: up to ``limit`` active sessions, any tenant, idle since before ``cutoff``,
        leaving out every session with messages received inside its window still waiting: an
        inbound record of its tenant still ``received`` with ``started_at <= received_at <=
        last_activity_at + window`` (ADR 0012).

        Rows returned stay locked to this unit of work where the store can lock; concurrent
        callers get disjoint rows (Postgres: ``FOR UPDATE SKIP LOCKED``).
        """
        ...

    def count_active(self) -> dict[str, int]:
        """Active sessions per tenant (operators' view)."""
        ...


class InboundMessageRepository(Protocol):
    def get(self, tenant_id: str, provider_message_id: str) -> InboundRecord | None: ...

    def add(self, record: InboundRecord) -> None:
        """Store a new record and its events. Raises DuplicateInboundMessage when
        ``(tenant_id, provider_message_id)`` is taken; the unit of work stays usable.
        """
        ...

    def save(self, record: InboundRecord, *, was: InboundState = RECEIVED_STATE) -> bool:
        """Store the outcome (processed or rejected) of a record, with its events, only if the
        stored row is still in state ``was`` (status and dead letter as read). Returns False,
        storing nothing, when a concurrent job moved it first.
        """
        ...

    def list_received_before(
        self, cutoff: datetime, limit: int, *, after: tuple[datetime, str] | None = None
    ) -> Sequence[InboundRecord]:
        """System scan: up to ``limit`` records still ``received`` since before ``cutoff``, in
        ``(received_at, id)`` order, starting after the key ``after`` (keyset paging: the
        reconciler walks every waiting record, however many older ones there are)."""
        ...

    def has_waiting(self, tenant_id: str, since: datetime, until: datetime) -> bool:
        """Whether a record of the tenant received in ``[since, until]`` is still ``received``
        (not processed yet): a live session whose window holds one is not closed (ADR 0012)."""
        ...

    def last_received_from(
        self, recipients: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], datetime]:
        """System read, one query for a claimed batch: for each ``(tenant_id, phone)`` asked, when
        the tenant last received a message from that phone, whatever its state, in any of the
        number's forms (``domain.phones.phone_forms``). Phones that never wrote are left out
        (the customer-service window, ADR 0021)."""
        ...


class OutboxRepository(Protocol):
    def add(self, message: OutboxMessage) -> None:
        """Write a new pending message in the caller's transaction."""
        ...

    def get(self, tenant_id: str, message_id: str) -> OutboxMessage | None: ...

    def claim_due(
        self,
        now: datetime,
        lease: timedelta,
        limit: int,
        recipient_gap: timedelta = timedelta(0),
    ) -> Sequence[OutboxMessage]:
        """System claim: up to ``limit`` due messages of any tenant, each moved to ``sending``
        with ``locked_until = now + lease`` and one more attempt, as ``OutboxMessage.claim`` says.

        Concurrent callers never claim the same row. Tenants are served fairly: a tenant's
        backlog cannot take a whole batch while another tenant has due messages. Only the head of
        each recipient's queue is claimed (ADR 0020); with a positive ``recipient_gap``, not
        before that long after the recipient's last ``sent`` message (``sent_at``; ADR 0025).
        """
        ...

    def save_outcome(self, message: OutboxMessage) -> bool:
        """Store the outcome of an attempt and its events, only if the row is still ``sending``
        under the claim it was sent with: ``attempts = claimed_attempt`` and ``locked_until =
        claimed_until`` (the fencing token). Returns False, storing nothing, when a later claim
        took the row over.
        """
        ...

    def save_outcomes(self, messages: Sequence[OutboxMessage]) -> list[bool]:
        """``save_outcome`` for many messages in one write where the store allows it; returns, in
        order, whether each was stored.
        """
        ...

    def requeue(self, message: OutboxMessage) -> bool:
        """Store an operator's requeue of a dead message; False if it was no longer dead."""
        ...

    def count_by_status(self) -> dict[OutboxStatus, int]: ...

    def oldest_due_at(self, now: datetime) -> datetime | None:
        """When the longest-waiting due message became due (the outbox lag)."""
        ...

    def record_delivery_status(
        self, tenant_id: str, message_id: str, report: DeliveryReport
    ) -> bool:
        """Merge a provider's delivery report into the stored one in one conditional write, as
        ``DeliveryReport.merged_into`` says: only where ``id`` and ``tenant_id`` match and the
        report moves the status to a higher rank or brings a greater error code, so concurrent
        reports never move it backwards and the result does not depend on their order. Returns
        False, storing nothing, for an unknown message or a report that changes nothing.
        Leaves the outbox ``status`` and every sender column alone.
        """
        ...

    def find_by_provider_message_id(self, tenant_id: str, provider_message_id: str) -> str | None:
        """The id of the tenant's message the provider knows as ``provider_message_id`` (its
        MessageSid), or None."""
        ...

    def locate_provider_message(self, provider_message_id: str) -> tuple[str, str] | None:
        """System lookup: ``(tenant_id, message_id)`` of the one message of any tenant the provider
        knows as ``provider_message_id``; None when no message has it (or, impossibly for a
        provider's unique id, several do)."""
        ...

    def delivery_report(self, tenant_id: str, message_id: str) -> DeliveryReport | None:
        """The delivery report stored for the message, or None (no report yet, or no message)."""
        ...


class DeadLetterRepository(Protocol):
    def add(self, dead_letter: DeadLetter) -> None: ...

    def get(self, dead_letter_id: str) -> DeadLetter | None: ...

    def list(
        self,
        *,
        tenant_id: str | None = None,
        source: DeadLetterSource | None = None,
        since: datetime | None = None,
        limit: int = 100,
        replayed: bool | None = None,
    ) -> Sequence[DeadLetter]:
        """Operators' view, newest first: at most ``limit`` dead letters created at or after
        ``since``, of one tenant and one source when given; ``replayed`` False keeps those not
        replayed yet, True those replayed, None both."""
        ...

    def count(self, *, since: datetime | None = None, replayed: bool | None = None) -> int:
        """How many dead letters were created at or after ``since`` (any tenant), with the same
        ``replayed`` filter as ``list`` (operators' view: ``livesell stats``, metrics)."""
        ...

    def mark_replayed(self, dead_letter: DeadLetter) -> bool:
        """Store ``replayed_at`` only if it was not replayed yet; False otherwise."""
        ...

    def find_open(
        self, source: DeadLetterSource, tenant_id: str | None, source_id: str
    ) -> DeadLetter | None:
        """The newest dead letter of ``source_id`` from ``source`` for ``tenant_id`` (None: those
        kept without a tenant) that is not replayed yet, or None: a rejection is written once per
        message until an operator replays it."""
        ...


class EventLog(Protocol):
    def append(self, events: Iterable[Event]) -> None:
        """Write events in the current transaction (they land with the change that made them)."""
        ...

    def list(
        self, *, tenant_id: str | None, event_type: str | None = None, limit: int = 1000
    ) -> Sequence[tuple[str, str | None, str, dict[str, object], str]]:
        """(event_type, tenant_id, subject_id, payload, correlation_id) in insertion order."""
        ...


def compose_record_touching(
    sessions: LiveSessionRepository,
    inbound: InboundMessageRepository,
    record: InboundRecord,
    *,
    was: InboundState | None,
    session_id: str,
    at: datetime,
    sender: SenderType,
) -> TouchedWrite:
    """``InboundLookup.record_touching`` spelled as the repository calls it stands for: the
    memory store's, and SQLite's (in-process, where a round trip costs nothing)."""
    if sessions.touch(record.tenant_id, session_id, at, sender) is None:
        return TouchedWrite.SESSION_GONE
    if was is None:
        try:
            inbound.add(record)
        except DuplicateInboundMessage:
            return TouchedWrite.RECORD_TAKEN
        return TouchedWrite.WRITTEN
    return TouchedWrite.WRITTEN if inbound.save(record, was=was) else TouchedWrite.RECORD_TAKEN
