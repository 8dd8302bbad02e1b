"""The demo's invariants (``entrypoints/demo/invariants.py``), written once against the ports: a
small live that keeps every one of them, then each one broken on purpose in the store, the script's
ledger or the provider's sends, and reported under its name with a line that says what broke."""

from __future__ import annotations

from collections.abc import Callable

import attrs
import pytest

from domain.dead_letters import DeadLetterSource
from domain.inbound import InboundStatus
from domain.live_sessions import LiveSession, SessionStatus
from domain.outbox import OutboxMessage, OutboxStatus
from domain.senders import SenderType
from entrypoints.demo.invariants import INVARIANTS, InvariantChecker, Ledger
from entrypoints.demo.report import Report
from entrypoints.demo.scenario import Scenario
from tests.unit.builders import (
    CLIENT_PHONE,
    OK,
    OTHER_CLIENT_PHONE,
    SELLER_PHONE,
    ScriptedProvider,
    World,
    permanent,
)


@attrs.define
class Live:
    """A finished live on the memory adapters, with the script's ledger and the sends the
    provider accepted, and the names of what it made."""

    world: World
    ledger: Ledger
    checker: InvariantChecker
    accepted: list[str]
    session_id: str
    early: str  # provider ids of the inbound messages
    seller: str
    order: str
    sent: str  # outbox ids
    dead: str

    def breaches(self) -> dict[str, list[str]]:
        """Only the invariants that broke, with their lines."""
        return {name: found for name, found in self.checker.at_end(self.accepted).items() if found}

    def session(self) -> LiveSession:
        return self.world.store.sessions[self.session_id]

    def outbox(self, message_id: str) -> OutboxMessage:
        return self.world.store.outbox[message_id]


def _say(world: World, ledger: Ledger, sender: str, *, early: bool = False) -> str:
    payload = world.payload("shop-a", sender)
    kind = SenderType.SELLER if sender == SELLER_PHONE else SenderType.CLIENT
    ledger.wrote(
        "shop-a", payload["providerMessageId"], payload["correlationId"], kind, early=early
    )
    world.receive(payload)
    return str(payload["providerMessageId"])


@pytest.fixture
def live(shop: World) -> Live:
    """A client writes before the live, the seller opens it, a client orders (and Twilio
    redelivers the order), two bad payloads are rejected, one confirmation is sent and one dies,
    the seller goes quiet and the closing job ends the live."""
    world = shop
    ledger = Ledger(max_attempts=world.policy.max_attempts)
    checker = InvariantChecker(world.uow_factory, ledger)
    early = _say(world, ledger, CLIENT_PHONE, early=True)
    seller = _say(world, ledger, SELLER_PHONE)
    checker.while_running()
    order = _say(world, ledger, OTHER_CLIENT_PHONE)
    world.receive(world.payload("shop-a", OTHER_CLIENT_PHONE, provider_message_id=order))
    world.receive({"tenantId": "shop-a", "providerMessageId": "", "body": 42})
    world.receive(world.payload("no-such-shop", CLIENT_PHONE, provider_message_id="SMnobody"))
    ledger.sent_bad()
    ledger.sent_bad()
    sent, dead = world.queue(OTHER_CLIENT_PHONE), world.queue(CLIENT_PHONE)
    ledger.queued("shop-a", sent)
    ledger.queued("shop-a", dead)
    provider = ScriptedProvider(OK, permanent())
    world.send_due(provider)
    checker.while_running()
    world.advance(minutes=world.window.minutes + 1)
    assert 1 == world.close_inactive().closed_count
    session_id = world.store.inbound["shop-a", seller].live_session_id
    assert session_id is not None
    return Live(
        world,
        ledger,
        checker,
        [r.outbox_id for r in provider.accepted],
        session_id,
        early,
        seller,
        order,
        sent,
        dead,
    )


class TestALiveThatKeepsThem:
    def test_every_invariant_holds(self, live: Live) -> None:
        assert {} == live.breaches()

    def test_every_invariant_is_checked_and_named_once(self, live: Live) -> None:
        names = [invariant.name for invariant in INVARIANTS]

        assert names == list(live.checker.at_end(live.accepted))
        assert len(set(names)) == len(names)


def _another_active_session(live: Live, session_id: str) -> None:
    session = attrs.evolve(live.session(), id=session_id, status=SessionStatus.ACTIVE)
    live.world.store.sessions[session_id] = session


def _duplicate_event(live: Live, event_type: str, subject: str) -> None:
    (row,) = [e for e in live.world.events(event_type) if e.subject_id == subject]
    live.world.store.events.append(row)


def _dead_letter_of(live: Live, source: DeadLetterSource, source_id: str) -> str:
    (letter,) = [
        d
        for d in live.world.store.dead_letters.values()
        if d.source is source and d.source_id == source_id
    ]
    return letter.id


def _break_two_active(live: Live) -> list[str]:
    _another_active_session(live, "extra-1")
    _another_active_session(live, "extra-2")
    return ["tenant shop-a has 2 active sessions"]


def _break_reopened(live: Live) -> list[str]:
    live.session().status = SessionStatus.ACTIVE
    return [f"session {live.session_id} of shop-a is active again after it closed"]


def _break_recorded_once(live: Live) -> list[str]:
    record = live.world.store.inbound["shop-a", live.early]
    _duplicate_event(live, "message.classified", record.id)
    return [f"message {live.early} of shop-a was classified 2 times"]


def _break_classification(live: Live) -> list[str]:
    live.world.store.inbound["shop-a", live.early].message_type = SenderType.SELLER
    return [f"message {live.early} of a client was classified seller"]


def _break_seller_in_session(live: Live) -> list[str]:
    live.world.store.inbound["shop-a", live.seller].live_session_id = None
    return [f"seller message {live.seller} joined no session"]


def _break_early_client(live: Live) -> list[str]:
    live.world.store.inbound["shop-a", live.early].live_session_id = live.session_id
    return [f"message {live.early}, written before the live, joined session {live.session_id}"]


def _break_opened_by_seller(live: Live) -> list[str]:
    (opened,) = live.world.events("live_session.opened")
    live.world.store.events.remove(opened)
    live.world.store.events.append(attrs.evolve(opened, correlation_id="corr-client"))
    return [f"session {live.session_id} was opened by corr-client, not a seller's message"]


def _break_session_counts(live: Live) -> list[str]:
    live.session().client_message_count += 1
    return [f"session {live.session_id} counts 1 seller and 2 client messages but holds 1 and 1"]


def _break_only_bad_rejected(live: Live) -> list[str]:
    live.world.store.inbound["shop-a", live.order].status = InboundStatus.REJECTED
    return [f"message {live.order} ended rejected, not processed"]


def _break_rejection_dead_letter(live: Live) -> list[str]:
    source = DeadLetterSource.WEBHOOK_PROCESSING
    del live.world.store.dead_letters[_dead_letter_of(live, source, "SMnobody")]
    return [
        f"rejected payload SMnobody has no {source} dead letter",
        f"1 {source} dead letters for 2 bad payloads",
    ]


def _break_every_session_closed(live: Live) -> list[str]:
    _another_active_session(live, "never-closed")
    return ["tenant shop-a still has 1 active session(s)"]


def _break_one_closed_event(live: Live) -> list[str]:
    _duplicate_event(live, "live_session.closed", live.session_id)
    return [f"session {live.session_id} has 1 opened and 2 closed events"]


def _break_sent_or_dead(live: Live) -> list[str]:
    stray = attrs.evolve(live.outbox(live.sent), id="stray", status=OutboxStatus.PENDING)
    live.world.store.outbox["stray"] = stray
    return ["the outbox still holds 1 pending"]


def _break_attempts(live: Live) -> list[str]:
    live.outbox(live.dead).attempts = 6
    return [f"outbound message {live.dead} took 6 attempts (at most 5)"]


def _break_sent_twice(live: Live) -> list[str]:
    live.accepted.append(live.sent)
    return [f"outbound message {live.sent} was accepted 2 times"]


def _break_accepted_sends(live: Live) -> list[str]:
    live.accepted.append(live.dead)
    return [f"the provider accepted {live.dead}, which is not stored as sent"]


def _break_dead_letter(live: Live) -> list[str]:
    source = DeadLetterSource.MESSAGES_OUT
    del live.world.store.dead_letters[_dead_letter_of(live, source, live.dead)]
    return [
        f"dead message {live.dead} has no {source} dead letter",
        f"0 {source} dead letters for 1 dead messages",
    ]


BREAKS: dict[str, Callable[[Live], list[str]]] = {
    "at most one active session per tenant": _break_two_active,
    "a closed session is never reopened": _break_reopened,
    "every message is recorded once": _break_recorded_once,
    "senders are classified by the tenant's seller phones": _break_classification,
    "a seller message always lands in a session": _break_seller_in_session,
    "clients writing before the live join no session": _break_early_client,
    "only sellers open sessions": _break_opened_by_seller,
    "a session counts each of its messages once": _break_session_counts,
    "only malformed payloads and unknown tenants are rejected": _break_only_bad_rejected,
    "every rejected payload has its dead letter": _break_rejection_dead_letter,
    "every session is closed after the seller went quiet": _break_every_session_closed,
    "one closed event per closed session": _break_one_closed_event,
    "every outbound message ends sent or dead": _break_sent_or_dead,
    "no attempt beyond the maximum": _break_attempts,
    "no message is sent twice": _break_sent_twice,
    "the provider's accepted sends are the sent rows": _break_accepted_sends,
    "every dead message has its dead letter": _break_dead_letter,
}


class TestEachInvariantBrokenOnPurpose:
    def test_every_invariant_has_a_break(self) -> None:
        assert [invariant.name for invariant in INVARIANTS] == list(BREAKS)

    @pytest.mark.parametrize("name", list(BREAKS))
    def test_is_reported_under_its_name_with_what_broke(self, live: Live, name: str) -> None:
        live.checker.at_end(live.accepted)  # seen whole before it breaks
        expected = BREAKS[name](live)

        assert expected == live.breaches()[name]

    def test_a_session_reopened_between_two_checks_of_a_running_live_is_reported(
        self, live: Live
    ) -> None:
        live.checker.while_running()  # sees it closed
        live.session().status = SessionStatus.ACTIVE
        live.checker.while_running()

        assert [f"session {live.session_id} of shop-a is active again after it closed"] == (
            live.breaches()["a closed session is never reopened"]
        )


class TestTheReport:
    def test_a_broken_invariant_fails_the_report_and_prints_its_line(self, live: Live) -> None:
        live.accepted.append(live.sent)
        report = Report(Scenario(tenants=1, clients=2, seed=1))

        report.record(live.checker.at_end(live.accepted))

        assert not report.ok
        assert [f"no message is sent twice: outbound message {live.sent} was accepted 2 times"] == (
            report.violations
        )
        text = report.render()
        assert "  FAIL no message is sent twice" in text
        assert "  ok   every dead message has its dead letter" in text
        assert text.endswith("INVARIANTS BROKEN")
