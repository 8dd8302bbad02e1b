"""The demo's invariants, written once against the ports and checked by both engines.

Each invariant compares what the store holds, read through one unit of work (never an adapter's
tables), with what the script did (a ``Ledger``) and what the provider accepted. The first two
hold at every moment and are checked while a scenario runs too (``Invariant.while_running``), as
often as the engine can afford: after every step on the memory engine, while the embedded demo
waits for its workers. All of them are checked once the scenario has ended. A breach is one line
naming the message, session or row that breaks the invariant.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from functools import cached_property

import attrs

from domain.dead_letters import DeadLetterSource
from domain.inbound import InboundRecord, InboundStatus
from domain.live_sessions import LiveSession, SessionStatus
from domain.outbox import OutboxMessage, OutboxStatus
from domain.senders import SenderType
from ports.unit_of_work import UnitOfWork, UnitOfWorkFactory

EVERYTHING = 1_000_000_000
"""The ``limit`` that lists every row (the operators' list methods page by default)."""
FINAL = frozenset({OutboxStatus.SENT, OutboxStatus.DEAD})


EventSeen = tuple[str | None, str, dict[str, object], str]
"""(tenant id, subject id, payload, correlation id) of a stored event."""


def events_of(uow: UnitOfWork, event_type: str) -> list[EventSeen]:
    """Every stored event of this type, of every tenant and of none."""
    return [
        (tenant, subject, payload, correlation)
        for tenant_id in [*(tenant.id for tenant in uow.tenants.list()), None]
        for _type, tenant, subject, payload, correlation in uow.events.list(
            tenant_id=tenant_id, event_type=event_type, limit=EVERYTHING
        )
    ]


@attrs.frozen
class Scripted:
    """One inbound message the script sent (a redelivery sends the same one again)."""

    tenant_id: str
    provider_message_id: str
    correlation_id: str
    sender: SenderType
    early: bool = False
    """Written before the live began: it joins no session."""


@attrs.define
class Ledger:
    """What the script did, for the invariants to compare the store with."""

    max_attempts: int
    messages: dict[tuple[str, str], Scripted] = attrs.field(factory=dict)
    rejects: int = 0
    """Payloads sent that must be rejected: malformed, or for a tenant that does not exist."""
    outbox: dict[str, str] = attrs.field(factory=dict)
    """Outbound messages queued: outbox id -> tenant id."""

    def wrote(
        self,
        tenant_id: str,
        provider_message_id: str,
        correlation_id: str,
        sender: SenderType,
        *,
        early: bool = False,
    ) -> None:
        key = (tenant_id, provider_message_id)
        self.messages[key] = Scripted(tenant_id, provider_message_id, correlation_id, sender, early)

    def sent_bad(self) -> None:
        self.rejects += 1

    def queued(self, tenant_id: str, message_id: str) -> None:
        self.outbox[message_id] = tenant_id


@attrs.define
class SessionWatch:
    """The sessions seen so far, across checks: a session once seen closed must stay closed."""

    seen: dict[str, str] = attrs.field(factory=dict)
    """session id -> tenant id"""
    closed: set[str] = attrs.field(factory=set)


class Evidence:
    """The store as one unit of work reads it, with the script's ledger and the provider's
    accepted sends; each figure is read once, when an invariant first asks for it."""

    def __init__(
        self,
        uow: UnitOfWork,
        ledger: Ledger,
        accepted: Counter[str],
        sessions: SessionWatch,
        *,
        final: bool,
    ) -> None:
        self.uow = uow
        self.final = final
        """The scenario is over (else it is still running)."""
        self.ledger = ledger
        self.accepted = accepted
        """outbox id -> how many times the provider accepted it"""
        self.sessions = sessions
        self._events: dict[str, list[EventSeen]] = {}

    @cached_property
    def tenant_ids(self) -> list[str]:
        return [tenant.id for tenant in self.uow.tenants.list()]

    @cached_property
    def records(self) -> dict[tuple[str, str], InboundRecord | None]:
        """The stored record of each scripted message (None: never recorded)."""
        return {key: self.uow.inbound.get(*key) for key in self.ledger.messages}

    @cached_property
    def outbox(self) -> dict[str, OutboxMessage | None]:
        """Each queued outbound message as stored (None: not stored)."""
        return {mid: self.uow.outbox.get(tid, mid) for mid, tid in self.ledger.outbox.items()}

    @cached_property
    def opened(self) -> dict[str, LiveSession | None]:
        """Every session an ``live_session.opened`` event names, as stored now."""
        return {
            subject: self.uow.sessions.get(tenant, subject)
            for tenant, subject, _payload, _correlation in self.events("live_session.opened")
            if tenant is not None
        }

    def events(self, event_type: str) -> list[EventSeen]:
        if event_type not in self._events:
            self._events[event_type] = events_of(self.uow, event_type)
        return self._events[event_type]

    def scripted_records(self) -> Iterator[tuple[Scripted, InboundRecord]]:
        for key, scripted in self.ledger.messages.items():
            record = self.records[key]
            if record is not None:
                yield scripted, record


def _at_most_one_active_session(e: Evidence) -> Iterator[str]:
    for tenant, count in sorted(e.uow.sessions.count_active().items()):
        if count > 1:
            yield f"tenant {tenant} has {count} active sessions"


def _closed_sessions_stay_closed(e: Evidence) -> Iterator[str]:
    watch = e.sessions
    for tenant in e.tenant_ids:
        active = e.uow.sessions.get_active(tenant)
        if active is not None:
            watch.seen.setdefault(active.id, tenant)
    if e.final:  # those opened and closed between two checks too
        watch.seen.update({sid: s.tenant_id for sid, s in e.opened.items() if s is not None})
    for session_id, tenant in watch.seen.items():
        session = e.uow.sessions.get(tenant, session_id)
        if session is None:
            continue
        if session.status is SessionStatus.CLOSED:
            watch.closed.add(session_id)
        elif session_id in watch.closed:
            yield f"session {session_id} of {tenant} is {session.status} again after it closed"


def _every_message_recorded_once(e: Evidence) -> Iterator[str]:
    classified = Counter(subject for _t, subject, _p, _c in e.events("message.classified"))
    for (tenant, provider_id), record in e.records.items():
        if record is None:
            yield f"message {provider_id} of {tenant} was never recorded"
        elif classified[record.id] != 1:
            yield f"message {provider_id} of {tenant} was classified {classified[record.id]} times"
    recorded = {record.id for record in e.records.values() if record is not None}
    for subject in sorted(set(classified) - recorded):
        yield f"record {subject} was classified but the script never sent its message"


def _senders_classified_by_seller_phones(e: Evidence) -> Iterator[str]:
    for scripted, record in e.scripted_records():
        if record.message_type is not scripted.sender:
            yield (
                f"message {scripted.provider_message_id} of a {scripted.sender} was classified"
                f" {record.message_type}"
            )


def _seller_messages_land_in_a_session(e: Evidence) -> Iterator[str]:
    for scripted, record in e.scripted_records():
        if scripted.sender is SenderType.SELLER and record.live_session_id is None:
            yield f"seller message {scripted.provider_message_id} joined no session"


def _early_clients_join_no_session(e: Evidence) -> Iterator[str]:
    for scripted, record in e.scripted_records():
        if scripted.early and record.live_session_id is not None:
            yield (
                f"message {scripted.provider_message_id}, written before the live, joined"
                f" session {record.live_session_id}"
            )


def _only_sellers_open_sessions(e: Evidence) -> Iterator[str]:
    sellers = {
        m.correlation_id for m in e.ledger.messages.values() if m.sender is SenderType.SELLER
    }
    for _tenant, subject, _payload, correlation in e.events("live_session.opened"):
        if correlation not in sellers:
            yield f"session {subject} was opened by {correlation}, not a seller's message"


def _sessions_count_each_message_once(e: Evidence) -> Iterator[str]:
    attached: Counter[tuple[str, SenderType]] = Counter()
    for scripted, record in e.scripted_records():
        if record.live_session_id is not None:
            attached[record.live_session_id, scripted.sender] += 1
    for session_id, session in e.opened.items():
        if session is None:
            continue
        counted = (session.seller_message_count, session.client_message_count)
        holds = (attached[session_id, SenderType.SELLER], attached[session_id, SenderType.CLIENT])
        if counted != holds:
            yield (
                f"session {session_id} counts {counted[0]} seller and {counted[1]} client"
                f" messages but holds {holds[0]} and {holds[1]}"
            )


def _only_bad_payloads_rejected(e: Evidence) -> Iterator[str]:
    for scripted, record in e.scripted_records():
        if record.status is not InboundStatus.PROCESSED:
            yield f"message {scripted.provider_message_id} ended {record.status}, not processed"
    rejected = len(e.events("inbound.rejected"))
    if rejected != e.ledger.rejects:
        yield f"{rejected} rejections for the {e.ledger.rejects} bad payloads the script sent"


def _rejected_payloads_have_dead_letters(e: Evidence) -> Iterator[str]:
    source = DeadLetterSource.WEBHOOK_PROCESSING
    stored = {d.id for d in e.uow.dead_letters.list(source=source, limit=EVERYTHING)}
    for _tenant, subject, payload, _correlation in e.events("inbound.rejected"):
        if payload.get("deadLetterId") not in stored:
            yield f"rejected payload {subject} has no {source} dead letter"
    if len(stored) != e.ledger.rejects:
        yield f"{len(stored)} {source} dead letters for {e.ledger.rejects} bad payloads"


def _every_session_closed(e: Evidence) -> Iterator[str]:
    for tenant, count in sorted(e.uow.sessions.count_active().items()):
        yield f"tenant {tenant} still has {count} active session(s)"


def _one_closed_event_per_closed_session(e: Evidence) -> Iterator[str]:
    opened = Counter(subject for _t, subject, _p, _c in e.events("live_session.opened"))
    closed = Counter(subject for _t, subject, _p, _c in e.events("live_session.closed"))
    for session_id, session in e.opened.items():
        want = 1 if session is not None and session.status is SessionStatus.CLOSED else 0
        if (opened[session_id], closed[session_id]) != (1, want):
            yield (
                f"session {session_id} has {opened[session_id]} opened and"
                f" {closed[session_id]} closed events"
            )


def _outbound_ends_sent_or_dead(e: Evidence) -> Iterator[str]:
    for message_id, message in e.outbox.items():
        if message is None:
            yield f"outbound message {message_id} was never stored"
        elif message.status not in FINAL:
            yield f"outbound message {message_id} ended {message.status}"
    others = {s: n for s, n in e.uow.outbox.count_by_status().items() if s not in FINAL and n}
    if others:
        yield "the outbox still holds " + ", ".join(f"{n} {s}" for s, n in sorted(others.items()))


def _no_attempt_beyond_the_maximum(e: Evidence) -> Iterator[str]:
    for message_id, message in e.outbox.items():
        if message is not None and message.attempts > e.ledger.max_attempts:
            yield (
                f"outbound message {message_id} took {message.attempts} attempts"
                f" (at most {e.ledger.max_attempts})"
            )


def _no_message_sent_twice(e: Evidence) -> Iterator[str]:
    for message_id, times in sorted(e.accepted.items()):
        if times > 1:
            yield f"outbound message {message_id} was accepted {times} times"


def _accepted_sends_are_the_sent_rows(e: Evidence) -> Iterator[str]:
    sent = {mid for mid, m in e.outbox.items() if m is not None and m.status is OutboxStatus.SENT}
    for message_id in sorted(set(e.accepted) - sent):
        yield f"the provider accepted {message_id}, which is not stored as sent"
    for message_id in sorted(sent - set(e.accepted)):
        yield f"outbound message {message_id} is stored as sent, but the provider never took it"
    stored = e.uow.outbox.count_by_status().get(OutboxStatus.SENT, 0)
    if stored != len(sent):
        yield f"{stored} messages stored as sent, {len(sent)} of them queued by the script"


def _dead_messages_have_dead_letters(e: Evidence) -> Iterator[str]:
    source = DeadLetterSource.MESSAGES_OUT
    dead = [m for m in e.outbox.values() if m is not None and m.status is OutboxStatus.DEAD]
    for message in dead:
        if e.uow.dead_letters.find_open(source, message.tenant_id, message.id) is None:
            yield f"dead message {message.id} has no {source} dead letter"
    letters = len(e.uow.dead_letters.list(source=source, limit=EVERYTHING))
    if letters != len(dead):
        yield f"{letters} {source} dead letters for {len(dead)} dead messages"


@attrs.frozen
class Invariant:
    name: str
    breaches: Callable[[Evidence], Iterable[str]]
    """Every breach found, one line each; none when the invariant holds."""
    while_running: bool = False
    """Holds at every moment, not only once the scenario has ended."""


INVARIANTS: tuple[Invariant, ...] = (
    Invariant("at most one active session per tenant", _at_most_one_active_session, True),
    Invariant("a closed session is never reopened", _closed_sessions_stay_closed, True),
    Invariant("every message is recorded once", _every_message_recorded_once),
    Invariant(
        "senders are classified by the tenant's seller phones",
        _senders_classified_by_seller_phones,
    ),
    Invariant("a seller message always lands in a session", _seller_messages_land_in_a_session),
    Invariant("clients writing before the live join no session", _early_clients_join_no_session),
    Invariant("only sellers open sessions", _only_sellers_open_sessions),
    Invariant("a session counts each of its messages once", _sessions_count_each_message_once),
    Invariant(
        "only malformed payloads and unknown tenants are rejected", _only_bad_payloads_rejected
    ),
    Invariant("every rejected payload has its dead letter", _rejected_payloads_have_dead_letters),
    Invariant("every session is closed after the seller went quiet", _every_session_closed),
    Invariant("one closed event per closed session", _one_closed_event_per_closed_session),
    Invariant("every outbound message ends sent or dead", _outbound_ends_sent_or_dead),
    Invariant("no attempt beyond the maximum", _no_attempt_beyond_the_maximum),
    Invariant("no message is sent twice", _no_message_sent_twice),
    Invariant("the provider's accepted sends are the sent rows", _accepted_sends_are_the_sent_rows),
    Invariant("every dead message has its dead letter", _dead_messages_have_dead_letters),
)


class InvariantChecker:
    """Checks ``invariants`` against the store behind ``uow_factory`` and keeps every breach
    found (each once, however many checks see it)."""

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        ledger: Ledger,
        invariants: tuple[Invariant, ...] = INVARIANTS,
    ) -> None:
        self._uow_factory = uow_factory
        self.ledger = ledger
        self.invariants = invariants
        self._sessions = SessionWatch()
        self._breaches: dict[str, dict[str, None]] = {i.name: {} for i in invariants}

    def while_running(self) -> None:
        """Check the invariants that hold at every moment."""
        self._check([i for i in self.invariants if i.while_running], Counter(), final=False)

    def at_end(self, accepted: Iterable[str]) -> dict[str, list[str]]:
        """Check every invariant once the scenario is over. ``accepted``: the outbox id of each
        send the provider accepted. Returns each invariant's breaches by name, in order (an empty
        list: it held), those found while running included."""
        self._check(self.invariants, Counter(accepted), final=True)
        return {name: list(found) for name, found in self._breaches.items()}

    def _check(
        self, invariants: Iterable[Invariant], accepted: Counter[str], *, final: bool
    ) -> None:
        with self._uow_factory() as uow:
            evidence = Evidence(uow, self.ledger, accepted, self._sessions, final=final)
            for invariant in invariants:
                found = self._breaches[invariant.name]
                found.update(dict.fromkeys(invariant.breaches(evidence)))
