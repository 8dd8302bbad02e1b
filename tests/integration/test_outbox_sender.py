"""The outbox sender loop on the real Postgres, in this process (one sender thread).

Providers are in-process: a scripted one (outcomes chosen per call), the simulated one, and the
Twilio adapter behind ``responses``. State is read back from the database.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest
import responses
import sqlalchemy as sa
from dependency_injector import providers
from sqlalchemy.engine import Engine

from adapters.simulated.provider import SimulatedMessagingProvider
from adapters.sqlalchemy.tables import messages_out
from adapters.twilio.provider import TwilioMessagingProvider
from application.outbox import claim_due_messages, queue_outbound_message
from domain.outbox import DeliveryFailure
from domain.tenants import Tenant
from entrypoints.container import build
from entrypoints.outbox_worker import OutboxSenderPart
from entrypoints.settings import Settings
from ports.messaging import DeliveryFailed, SendReceipt, SendRequest
from ports.unit_of_work import UnitOfWorkFactory

pytestmark = pytest.mark.timeout(120)

SHOP = "shop"
OTHER = "other-shop"
CLIENT = "+33612345678"
TWILIO_SID = "AC" + "1" * 32
TWILIO_URL = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"


# -- a provider whose outcome is scripted per call ---------------------------------------------


Script = Callable[[SendRequest, int], DeliveryFailure | None]


class ScriptedProvider:
    """Calls ``script(request, attempt)``: a DeliveryFailure is raised, None is a success."""

    def __init__(self, script: Script, latency: float = 0.0) -> None:
        self.script = script
        self.latency = latency
        self.calls: list[tuple[str, float]] = []
        self._lock = threading.Lock()

    def sender_key(self, request: SendRequest) -> str:
        return request.from_phone or "+15005550006"

    def send(self, request: SendRequest) -> SendReceipt:
        with self._lock:
            self.calls.append((request.outbox_id, time.monotonic()))
            attempt = sum(1 for i, _ in self.calls if i == request.outbox_id)
        if self.latency:
            time.sleep(self.latency)
        failure = self.script(request, attempt)
        if failure is not None:
            raise DeliveryFailed(failure)
        return SendReceipt(f"SM-{request.outbox_id}-{attempt}")

    def call_times(self, outbox_id: str) -> list[float]:
        with self._lock:
            return [t for i, t in self.calls if i == outbox_id]


def always_succeed(_request: SendRequest, _attempt: int) -> DeliveryFailure | None:
    return None


# -- running a sender --------------------------------------------------------------------------


@attrs.define
class RunningSender:
    sender: OutboxSenderPart
    stop: threading.Event
    thread: threading.Thread
    errors: list[BaseException]

    def halt(self, timeout: float = 30.0) -> float:
        """Set stop and wait for ``run`` to return; returns how long that took."""
        started = time.monotonic()
        self.stop.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the sender did not stop"
        assert [] == self.errors
        return time.monotonic() - started


@pytest.fixture
def start_sender(
    postgres_url: str, pg_uow_factory: UnitOfWorkFactory
) -> Iterator[Callable[..., RunningSender]]:
    running: list[RunningSender] = []

    def start(
        provider: Any, uow_factory: UnitOfWorkFactory | None = None, **settings: Any
    ) -> RunningSender:
        options: dict[str, Any] = {
            "database_url": postgres_url,
            "outbox_poll_interval_seconds": 5.0,
            "outbox_batch_size": 10,
            "outbox_send_concurrency": 16,
            "outbox_rate_limit_per_second": 10000.0,
        }
        options.update(settings)
        container = build(Settings(**options), store="memory")
        container.uow_factory.override(providers.Object(uow_factory or pg_uow_factory))
        container.messaging_provider.override(providers.Object(provider))
        sender = container.outbox_part()
        sender.start()
        stop = threading.Event()
        errors: list[BaseException] = []

        def target() -> None:
            try:
                sender.run(stop)
            except BaseException as exc:  # surfaced by halt()
                errors.append(exc)

        thread = threading.Thread(target=target, name="outbox-sender-test", daemon=True)
        thread.start()
        run = RunningSender(sender, stop, thread, errors)
        running.append(run)
        if sender.wakeup is not None:
            assert sender.wakeup.connected.wait(5)  # type: ignore[attr-defined]
        return run

    yield start
    for run in running:
        if run.thread.is_alive():
            run.halt()


# -- data --------------------------------------------------------------------------------------


def add_tenant(
    uow_factory: UnitOfWorkFactory, tenant_id: str = SHOP, number: str | None = None
) -> None:
    with uow_factory() as uow:
        uow.tenants.add(
            Tenant.register(
                id=tenant_id, name=tenant_id, now=datetime.now(UTC), whatsapp_number=number
            )
        )
        uow.commit()


class _Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class _Ids:
    def __init__(self) -> None:
        from adapters.system.clock import TimeOrderedIds

        self._ids = TimeOrderedIds()

    def new_id(self) -> str:
        return self._ids.new_id()


def queue(
    uow_factory: UnitOfWorkFactory, tenant_id: str = SHOP, body: str = "hello", to: str = CLIENT
) -> str:
    return queue_outbound_message(
        uow_factory=uow_factory,
        tenant_id=tenant_id,
        to=to,
        body=body,
        correlation_id=f"corr-{body}",
        clock=_Clock(),
        ids=_Ids(),
    )


def bulk_insert(engine: Engine, tenant_id: str, count: int, *, at: datetime) -> list[str]:
    """``count`` pending rows written in one statement, all due since ``at`` (ids in order), each
    to a customer of its own (one customer's messages go one at a time, ADR 0020)."""
    ids = _Ids()
    rows = [
        {
            "id": f"{tenant_id}-{n:06d}-{ids.new_id()}",
            "tenant_id": tenant_id,
            "to_phone": f"+336{n:08d}",
            "from_phone": None,
            "body": f"bulk {n}",
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": at,
            "correlation_id": f"bulk-{tenant_id}-{n}",
            "created_at": at,
            "updated_at": at,
        }
        for n in range(count)
    ]
    with engine.begin() as connection:
        connection.execute(sa.insert(messages_out), rows)
    return [r["id"] for r in rows]


def row(engine: Engine, message_id: str) -> sa.Row[Any]:
    with engine.connect() as connection:
        found = connection.execute(
            sa.select(messages_out).where(messages_out.c.id == message_id)
        ).one()
    return found


def statuses(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT status, count(*) FROM messages_out GROUP BY status")
        ).all()
    return dict(rows)


def events_of(engine: Engine, message_id: str) -> list[tuple[str, dict[str, Any], datetime]]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT event_type, payload, created_at FROM event_logs"
                " WHERE subject_id = :id ORDER BY id"
            ),
            {"id": message_id},
        ).all()
    return [(r[0], dict(r[1]), r[2]) for r in rows]


def dead_letters_of(engine: Engine, message_id: str) -> list[tuple[str | None, int, str]]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT error_code, attempts, source FROM dead_letter_jobs WHERE source_id = :id"
            ),
            {"id": message_id},
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def settled(engine: Engine, message_id: str, status: str) -> Callable[[], bool]:
    return lambda: row(engine, message_id).status == status


# -- the tests ---------------------------------------------------------------------------------


class TestTheRetrySchedule:
    @pytest.mark.slow
    def test_a_message_that_keeps_failing_is_retried_after_1_2_4_8_seconds_then_dead_lettered(
        self, pg_uow_factory: UnitOfWorkFactory, pg_engine: Engine, start_sender: Any
    ) -> None:
        add_tenant(pg_uow_factory)
        message_id = queue(pg_uow_factory)
        provider = ScriptedProvider(
            lambda _r, n: DeliveryFailure(transient=True, code="20500", message=f"down {n}")
        )

        start_sender(provider, outbox_poll_interval_seconds=30.0)
        wait_for(settled(pg_engine, message_id, "dead"), 25, "the message to die")

        stored = row(pg_engine, message_id)
        events = events_of(pg_engine, message_id)
        retries = [p for kind, p, _ in events if kind == "message.retry_scheduled"]
        waits = [
            (datetime.fromisoformat(p["nextAttemptAt"]) - at).total_seconds()
            for kind, p, at in events
            if kind == "message.retry_scheduled"
        ]
        assert (5, "20500", None) == (stored.attempts, stored.last_error_code, stored.sent_at)
        assert [1, 2, 3, 4] == [p["attempts"] for p in retries]
        assert [1.0, 2.0, 4.0, 8.0] == [round(w, 1) for w in waits]
        assert ["message.dead_lettered"] == [k for k, _, _ in events][-1:]
        assert [("20500", 5, "messages_out")] == dead_letters_of(pg_engine, message_id)
        calls = provider.call_times(message_id)
        spacing = [later - earlier for earlier, later in itertools.pairwise(calls)]
        assert 5 == len(calls)
        for expected, actual in zip([1, 2, 4, 8], spacing, strict=True):
            assert expected - 0.05 <= actual <= expected + 0.6, spacing

    def test_a_message_that_fails_once_is_sent_on_its_second_attempt(
        self, pg_uow_factory: UnitOfWorkFactory, pg_engine: Engine, start_sender: Any
    ) -> None:
        add_tenant(pg_uow_factory)
        message_id = queue(pg_uow_factory)
        provider = ScriptedProvider(
            lambda _r, n: (
                DeliveryFailure(transient=True, code="20500", message="blip") if n == 1 else None
            )
        )

        start_sender(provider, outbox_poll_interval_seconds=30.0)
        wait_for(settled(pg_engine, message_id, "sent"), 10, "the message to be sent")

        stored = row(pg_engine, message_id)
        assert (2, f"SM-{message_id}-2", None) == (
            stored.attempts,
            stored.provider_message_id,
            stored.last_error_code,
        )
        assert ["message.retry_scheduled", "message.sent"] == [
            k for k, _, _ in events_of(pg_engine, message_id)
        ]


class TestTwilioRefusals:
    @pytest.mark.parametrize("code", ["21211", "21610", "63016", "20003"])
    @responses.activate
    def test_a_permanent_code_dead_letters_the_message_on_its_first_attempt(
        self, code: str, pg_uow_factory: UnitOfWorkFactory, pg_engine: Engine, start_sender: Any
    ) -> None:
        responses.post(
            TWILIO_URL,
            json={"code": int(code), "message": "refused", "more_info": "", "status": 400},
            status=400,
        )
        add_tenant(pg_uow_factory, number="+33199000001")
        message_id = queue(pg_uow_factory)

        start_sender(_twilio())
        wait_for(settled(pg_engine, message_id, "dead"), 10, "the message to die")

        stored = row(pg_engine, message_id)
        assert (1, code) == (stored.attempts, stored.last_error_code)
        assert [(code, 1, "messages_out")] == dead_letters_of(pg_engine, message_id)
        assert [("message.dead_lettered", True)] == [
            (k, p["permanent"]) for k, p, _ in events_of(pg_engine, message_id)
        ]
        assert "From=whatsapp%3A%2B33199000001" in str(responses.calls[0].request.body)

    @responses.activate
    def test_retry_after_from_twilio_delays_the_next_attempt(
        self, pg_uow_factory: UnitOfWorkFactory, pg_engine: Engine, start_sender: Any
    ) -> None:
        responses.post(
            TWILIO_URL,
            json={"code": 20429, "message": "Too Many Requests", "status": 429},
            status=429,
            headers={"Retry-After": "3"},
        )
        responses.post(TWILIO_URL, json={"sid": "SM" + "f" * 32, "status": "queued"}, status=201)
        add_tenant(pg_uow_factory)
        message_id = queue(pg_uow_factory)

        start_sender(_twilio(), outbox_poll_interval_seconds=30.0)
        wait_for(lambda: row(pg_engine, message_id).status == "failed", 5, "the first failure")
        failed = row(pg_engine, message_id)
        first_failure_at = time.monotonic()
        wait_for(settled(pg_engine, message_id, "sent"), 10, "the message to be sent")
        second_attempt_after = time.monotonic() - first_failure_at

        scheduled = (failed.next_attempt_at - failed.updated_at).total_seconds()
        assert ("20429", 3.0, 0) == (failed.last_error_code, round(scheduled, 1), failed.attempts)
        assert failed.rate_limited_since is not None
        assert 2.5 <= second_attempt_after <= 4.5
        # The 429 was never processed by Twilio, so it spent no attempt (ADR 0015).
        assert ("SM" + "f" * 32, 1) == (
            row(pg_engine, message_id).provider_message_id,
            row(pg_engine, message_id).attempts,
        )


class TestClaimingAndLeases:
    def test_a_row_left_sending_by_a_dead_sender_is_sent_once_its_lease_passes(
        self, pg_uow_factory: UnitOfWorkFactory, pg_engine: Engine, start_sender: Any
    ) -> None:
        add_tenant(pg_uow_factory)
        message_id = queue(pg_uow_factory)
        claim_due_messages(
            uow_factory=pg_uow_factory, clock=_Clock(), lease=timedelta(seconds=2), limit=10
        )  # a sender that claimed, then died before sending
        provider = ScriptedProvider(always_succeed)

        start_sender(provider, outbox_poll_interval_seconds=0.5)
        time.sleep(1.0)
        during_lease = row(pg_engine, message_id).status
        wait_for(settled(pg_engine, message_id, "sent"), 10, "the message to be sent")

        assert ("sending", 2, 1) == (
            during_lease,
            row(pg_engine, message_id).attempts,
            len(provider.call_times(message_id)),
        )

    @pytest.mark.slow
    def test_a_tenants_backlog_of_ten_thousand_does_not_hold_back_another_tenant(
        self, pg_uow_factory: UnitOfWorkFactory, pg_engine: Engine, start_sender: Any
    ) -> None:
        add_tenant(pg_uow_factory, SHOP)
        add_tenant(pg_uow_factory, OTHER)
        now = datetime.now(UTC)
        bulk_insert(pg_engine, SHOP, 10_000, at=now - timedelta(minutes=5))
        provider = SimulatedMessagingProvider(latency_ms=2)
        batch = 10

        start_sender(provider, outbox_batch_size=batch, outbox_send_concurrency=2 * batch)
        wait_for(lambda: len(provider.sent) >= 500, 30, "the backlog to be flowing")
        late = [queue(pg_uow_factory, OTHER, f"late {n}", f"+3361000{n:04d}") for n in range(3)]
        sent_before = len(provider.sent)
        wait_for(
            lambda: all(row(pg_engine, i).status == "sent" for i in late), 10, "the late messages"
        )

        order = [r.outbox_id for r in provider.sent]
        last_late = max(order.index(i) for i in late)
        backlog_sent_in_between = sum(1 for i in order[sent_before:last_late] if i not in late)
        # the claims in flight when they were written (2 batches), plus at most one more
        assert backlog_sent_in_between <= 3 * batch, backlog_sent_in_between
        assert statuses(pg_engine)["pending"] > 5_000

    def test_a_batch_with_both_tenants_due_interleaves_them(
        self, pg_uow_factory: UnitOfWorkFactory, pg_engine: Engine, start_sender: Any
    ) -> None:
        add_tenant(pg_uow_factory, SHOP)
        add_tenant(pg_uow_factory, OTHER)
        now = datetime.now(UTC)
        bulk_insert(pg_engine, SHOP, 2_000, at=now - timedelta(minutes=5))
        others = bulk_insert(pg_engine, OTHER, 5, at=now)
        provider = SimulatedMessagingProvider()
        batch = 10

        start_sender(provider, outbox_batch_size=batch, outbox_send_concurrency=batch)
        wait_for(lambda: all(row(pg_engine, i).status == "sent" for i in others), 10, "others")

        order = [r.outbox_id for r in provider.sent]
        assert max(order.index(i) for i in others) < batch


class TestWakingUp:
    def test_a_message_written_while_idle_is_sent_at_once_not_at_the_next_poll(
        self, pg_uow_factory: UnitOfWorkFactory, pg_engine: Engine, start_sender: Any
    ) -> None:
        add_tenant(pg_uow_factory)
        provider = ScriptedProvider(always_succeed)
        running = start_sender(provider, outbox_poll_interval_seconds=60.0)
        time.sleep(0.5)  # the first (empty) claim is done: the sender sleeps for a minute

        written = time.monotonic()
        message_id = queue(pg_uow_factory)
        wait_for(settled(pg_engine, message_id, "sent"), 5, "the message to be sent")

        assert time.monotonic() - written < 1.0
        assert running.sender.wakeup is not None
        assert running.sender.wakeup.wakeups >= 2  # type: ignore[attr-defined]

    def test_every_message_written_while_idle_is_sent_within_a_poll_even_without_notify(
        self, pg_uow_factory: UnitOfWorkFactory, pg_engine: Engine, start_sender: Any
    ) -> None:
        add_tenant(pg_uow_factory)
        provider = ScriptedProvider(always_succeed)
        with pg_engine.begin() as connection:  # a writer whose rows notify nobody
            connection.exec_driver_sql(
                "ALTER TABLE messages_out DISABLE TRIGGER messages_out_inserted_notify"
            )
        try:
            start_sender(provider, outbox_poll_interval_seconds=1.0)
            time.sleep(0.3)
            message_id = queue(pg_uow_factory)
            wait_for(settled(pg_engine, message_id, "sent"), 3, "the message to be sent")
        finally:
            with pg_engine.begin() as connection:
                connection.exec_driver_sql(
                    "ALTER TABLE messages_out ENABLE TRIGGER messages_out_inserted_notify"
                )


class TestStopping:
    def test_stop_finishes_and_records_the_sends_in_flight_and_claims_nothing_new(
        self, pg_uow_factory: UnitOfWorkFactory, pg_engine: Engine, start_sender: Any
    ) -> None:
        add_tenant(pg_uow_factory)
        bulk_insert(pg_engine, SHOP, 200, at=datetime.now(UTC))
        provider = ScriptedProvider(always_succeed, latency=0.5)
        running = start_sender(provider, outbox_batch_size=10, outbox_send_concurrency=20)
        wait_for(lambda: len(provider.calls) >= 20, 5, "sends in flight")

        took = running.halt()

        counts = statuses(pg_engine)
        assert took < 2.0
        assert "sending" not in counts
        assert len(provider.calls) == counts["sent"]
        assert 200 == counts["sent"] + counts["pending"]
        assert counts["pending"] >= 150


def _twilio() -> TwilioMessagingProvider:
    return TwilioMessagingProvider(
        account_sid=TWILIO_SID,
        auth_token="token",
        default_sender="+14155238886",
        timeout_seconds=5,
    )


class TestSustainedRateLimits:
    """ADR 0015: Twilio "Requests that receive 429 responses aren't processed and are safe to retry"
    (https://www.twilio.com/docs/api/errors/20429), so a rate limit spends no attempt; only the
    ceiling of time rate limited (``OUTBOX_RATE_LIMITED_MAX_SECONDS``) ends the message."""

    @staticmethod
    def too_many(_request: SendRequest, _attempt: int) -> DeliveryFailure:
        return DeliveryFailure(
            transient=True,
            code="20429",
            message="Twilio HTTP 429: Too many requests",
            retry_after=timedelta(seconds=0.2),
            rate_limited=True,
        )

    def test_twelve_rate_limits_in_a_row_spend_no_attempt_and_write_no_dead_letter(
        self, pg_uow_factory: UnitOfWorkFactory, pg_engine: Engine, start_sender: Any
    ) -> None:
        add_tenant(pg_uow_factory)
        message_id = queue(pg_uow_factory)
        provider = ScriptedProvider(self.too_many)

        running = start_sender(provider, outbox_poll_interval_seconds=30.0)
        wait_for(lambda: len(provider.call_times(message_id)) >= 12, 15, "twelve sends")
        running.halt()

        stored = row(pg_engine, message_id)
        assert ("failed", 0, "20429") == (stored.status, stored.attempts, stored.last_error_code)
        assert [] == dead_letters_of(pg_engine, message_id)

    def test_past_the_ceiling_the_message_is_dead_with_its_dead_letter(
        self, pg_uow_factory: UnitOfWorkFactory, pg_engine: Engine, start_sender: Any
    ) -> None:
        add_tenant(pg_uow_factory)
        message_id = queue(pg_uow_factory)
        provider = ScriptedProvider(self.too_many)
        policy_ceiling = 1.5

        running = start_sender(
            provider, outbox_poll_interval_seconds=30.0, outbox_rate_limited_max_seconds=1.5
        )
        wait_for(settled(pg_engine, message_id, "dead"), 10, "the message to die")
        running.halt()

        calls = provider.call_times(message_id)
        assert [("20429", 1, "messages_out")] == dead_letters_of(pg_engine, message_id)
        assert policy_ceiling - 0.3 <= calls[-1] - calls[0] <= policy_ceiling + 1.0
