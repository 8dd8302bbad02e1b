"""The outbox sender as real processes (``livesell worker --only outbox``) on the real Postgres,
with the simulated provider's JSON-lines log as the record of what was sent.

Every process here is started by the test and stopped by its pid; 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from adapters.sqlalchemy.tables import messages_out, tenants
from adapters.system.clock import TimeOrderedIds
from ports.unit_of_work import UnitOfWorkFactory
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
FINAL = ("sent", "dead")


@attrs.define
class SenderProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_started(self, timeout: float = 20.0) -> None:
        wait_for(
            lambda: "Outbox sender worker started successfully" in self.log(),
            timeout,
            "the sender to start",
            on_fail=self.log,
        )
        assert self.process.poll() is None, self.log()


@pytest.fixture
def senders(
    postgres_url: str, pg_uow_factory: UnitOfWorkFactory, tmp_path: Path
) -> Iterator[Callable[..., SenderProcess]]:
    """Starts ``livesell worker --only outbox`` processes; kills (by pid) any still running."""
    started: list[SenderProcess] = []

    def start(database_url: str | None = None, **env: Any) -> SenderProcess:
        environ = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("OUTBOX_", "SIMULATED_", "TWILIO_", "DATABASE_"))
        }
        environ.update(
            {
                "DATABASE_URL": database_url or postgres_url,
                "MESSAGING_PROVIDER": "simulated",
                "SIMULATED_SENT_LOG": str(tmp_path / "sent.jsonl"),
                "OUTBOX_POLL_INTERVAL_SECONDS": "1",
                "OUTBOX_RATE_LIMIT_PER_SECOND": "10000",
                "LOG_LEVEL": "info",
                "PYTHONUNBUFFERED": "1",
            }
        )
        environ.update({key.upper(): str(value) for key, value in env.items()})
        log_path = tmp_path / f"sender-{len(started)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "entrypoints.cli", "worker", "--only", "outbox"],
                cwd=ROOT,
                env=environ,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        sender = SenderProcess(process, log_path)
        started.append(sender)
        return sender

    yield start
    for sender in started:
        if sender.process.poll() is None:
            os.kill(sender.pid, signal.SIGKILL)
            sender.process.wait(10)


# -- helpers -----------------------------------------------------------------------------------


def wait_for(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    on_fail: Callable[[], str] | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    detail = f"\n{on_fail()[-3000:]}" if on_fail else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")


def add_tenants(engine: Engine, *tenant_ids: str) -> None:
    with engine.begin() as connection:
        connection.execute(
            sa.insert(tenants),
            [
                {
                    "id": t,
                    "name": t,
                    "whatsapp_number": None,
                    "default_region": "FR",
                    "created_at": datetime.now(UTC),
                }
                for t in tenant_ids
            ],
        )


def recipient(n: int) -> str:
    return f"+336{n:08d}"


def write_messages(
    engine: Engine, tenant_ids: list[str], count: int, recipients: int | None = None
) -> set[str]:
    """``count`` pending messages spread over the tenants, written in one transaction, in turn
    to ``recipients`` customers (by default one each: messages to one customer go one at a time,
    ADR 0020)."""
    ids = TimeOrderedIds()
    now = datetime.now(UTC)
    rows = [
        {
            "id": ids.new_id(),
            "tenant_id": tenant_ids[n % len(tenant_ids)],
            "to_phone": recipient(n % (recipients or count)),
            "from_phone": None,
            "body": f"message {n}",
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "correlation_id": f"e2e-{n}",
            "created_at": now,
            "updated_at": now,
        }
        for n in range(count)
    ]
    with engine.begin() as connection:
        connection.execute(sa.insert(messages_out), rows)
    return {r["id"] for r in rows}


def by_status(engine: Engine) -> dict[str, set[str]]:
    with engine.connect() as connection:
        rows = connection.execute(sa.select(messages_out.c.id, messages_out.c.status)).all()
    out: dict[str, set[str]] = {}
    for message_id, status in rows:
        out.setdefault(status, set()).add(message_id)
    return out


def all_final(engine: Engine, expected: int) -> Callable[[], bool]:
    def check() -> bool:
        with engine.connect() as connection:
            done = connection.execute(
                sa.select(sa.func.count()).where(messages_out.c.status.in_(FINAL))
            ).scalar_one()
        return bool(done == expected)

    return check


def sent_lines(path: Path) -> list[dict[str, Any]]:
    """The provider's log, one accepted send a line, in the order they were accepted."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def written_order(engine: Engine) -> dict[str, list[str]]:
    """Each recipient's message ids in the order they were written (created_at, then id)."""
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(messages_out.c.to_phone, messages_out.c.id).order_by(
                messages_out.c.created_at, messages_out.c.id
            )
        ).all()
    order: dict[str, list[str]] = {}
    for to_phone, message_id in rows:
        order.setdefault(to_phone, []).append(message_id)
    return order


def sent_log(path: Path) -> Counter[str]:
    """How many times the provider accepted each outbox id."""
    if not path.exists():
        return Counter()
    counts: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        counts[json.loads(line)["outboxId"]] += 1
    return counts


# -- the tests ---------------------------------------------------------------------------------


class TestSeveralSenders:
    def test_three_senders_deliver_three_thousand_messages_each_exactly_once(
        self, senders: Any, pg_engine: Engine, tmp_path: Path
    ) -> None:
        add_tenants(pg_engine, "shop-a", "shop-b", "shop-c")
        written = write_messages(pg_engine, ["shop-a", "shop-b", "shop-c"], 3000)
        processes = [
            senders(
                simulated_transient_failure_rate="0.1",
                simulated_seed=str(seed),
                simulated_latency_ms="5",
                outbox_batch_size="20",
                outbox_send_concurrency="40",
            )
            for seed in (1, 2, 3)
        ]
        for process in processes:
            process.wait_started()

        wait_for(all_final(pg_engine, 3000), 120, "every message to end sent or dead")

        final = by_status(pg_engine)
        log = sent_log(tmp_path / "sent.jsonl")
        assert written == final.get("sent", set()) | final.get("dead", set())
        assert final.get("sent", set()) == set(log)
        assert [] == [i for i, n in log.items() if n > 1]
        assert all("Message send failed, will retry" in p.log() for p in processes)
        assert all("Message sent successfully" in p.log() for p in processes)


class TestOrderPerRecipient:
    def test_three_senders_hand_each_recipients_messages_over_in_written_order_once(
        self, senders: Any, pg_engine: Engine, tmp_path: Path
    ) -> None:
        """ADR 0020: 30 customers with 50 messages each, three sender processes, 20 % transient
        failures (each retried after its backoff): every customer's messages reach the provider in
        the order they were written, none twice."""
        add_tenants(pg_engine, "shop-a", "shop-b", "shop-c")
        written = write_messages(pg_engine, ["shop-a", "shop-b", "shop-c"], 1500, recipients=30)
        processes = [
            senders(
                simulated_transient_failure_rate="0.2",
                simulated_seed=str(seed),
                simulated_latency_ms="5",
                outbox_batch_size="10",
                outbox_send_concurrency="20",
            )
            for seed in (11, 12, 13)
        ]
        for process in processes:
            process.wait_started()

        wait_for(all_final(pg_engine, 1500), 150, "every message to end sent or dead")

        final = by_status(pg_engine)
        lines = sent_lines(tmp_path / "sent.jsonl")
        delivered: dict[str, list[str]] = {}
        for line in lines:
            delivered.setdefault(line["to"], []).append(line["outboxId"])
        sent = final.get("sent", set())
        expected = {
            to: [i for i in ids if i in sent] for to, ids in written_order(pg_engine).items()
        }
        assert written == sent | final.get("dead", set())
        assert 30 == len(expected)
        assert expected == delivered
        assert len(lines) == len({line["outboxId"] for line in lines}) == len(sent)
        assert all("Message send failed, will retry" in p.log() for p in processes)
        assert all("Message sent successfully" in p.log() for p in processes)


class TestCrashes:
    def test_a_sender_killed_mid_batch_loses_nothing_and_resends_only_what_was_in_flight(
        self, senders: Any, pg_engine: Engine, tmp_path: Path
    ) -> None:
        add_tenants(pg_engine, "shop")
        written = write_messages(pg_engine, ["shop"], 1500)
        options = {
            "simulated_latency_ms": "40",
            "outbox_batch_size": "10",
            "outbox_send_concurrency": "30",
            "outbox_lease_seconds": "2",
        }
        first = senders(**options)
        first.wait_started()
        # Killed while sends are in flight: between two claims a sender may briefly hold none
        # (a loaded machine stretches that gap), and a kill there would show nothing.
        wait_for(
            lambda: (
                sum(sent_log(tmp_path / "sent.jsonl").values()) >= 300
                and bool(by_status(pg_engine).get("sending"))
            ),
            30,
            "sends, some of them in flight",
        )

        os.kill(first.pid, signal.SIGKILL)
        first.process.wait(10)
        in_flight = by_status(pg_engine).get("sending", set())
        senders(**options).wait_started()
        wait_for(all_final(pg_engine, 1500), 90, "every message to end sent or dead")

        final = by_status(pg_engine)
        log = sent_log(tmp_path / "sent.jsonl")
        twice = {i for i, n in log.items() if n > 1}
        assert written == final.get("sent", set())
        assert written == set(log)
        assert twice <= in_flight
        assert 0 < len(in_flight) <= 30

    def test_sigterm_finishes_the_sends_in_flight_records_them_and_exits_zero(
        self, senders: Any, pg_engine: Engine, tmp_path: Path
    ) -> None:
        add_tenants(pg_engine, "shop")
        write_messages(pg_engine, ["shop"], 600)
        sender = senders(
            simulated_latency_ms="300", outbox_batch_size="10", outbox_send_concurrency="20"
        )
        sender.wait_started()
        wait_for(lambda: sum(sent_log(tmp_path / "sent.jsonl").values()) >= 40, 30, "sends")

        stopping = time.monotonic()
        os.kill(sender.pid, signal.SIGTERM)
        code = sender.process.wait(30)
        took = time.monotonic() - stopping

        final = by_status(pg_engine)
        log = sent_log(tmp_path / "sent.jsonl")
        assert (0, set()) == (code, final.get("sending", set()))
        assert final.get("sent", set()) == set(log)
        assert [] == [i for i, n in log.items() if n > 1]
        assert len(final.get("pending", set())) > 300
        assert took < 5.0
        assert "Outbox sender stopped" in sender.log()


class TestStoreOutages:
    def test_the_sender_survives_postgres_being_unreachable_and_resumes(
        self, senders: Any, pg_engine: Engine, postgres_url: str, tmp_path: Path
    ) -> None:
        url = sa.make_url(postgres_url)
        proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
        try:
            add_tenants(pg_engine, "shop")
            written = write_messages(pg_engine, ["shop"], 1000)
            sender = senders(
                database_url=url.set(port=proxy.port).render_as_string(hide_password=False),
                simulated_latency_ms="20",
                outbox_batch_size="10",
                outbox_send_concurrency="20",
            )
            sender.wait_started()
            wait_for(lambda: sum(sent_log(tmp_path / "sent.jsonl").values()) >= 200, 30, "sends")

            proxy.cut()
            during = write_messages(pg_engine, ["shop"], 100)  # written straight to Postgres
            time.sleep(4)
            alive_during_outage = sender.process.poll() is None
            proxy.restore()
            wait_for(all_final(pg_engine, 1100), 60, "every message to be sent", on_fail=sender.log)
        finally:
            proxy.close()

        final = by_status(pg_engine)
        log = sent_log(tmp_path / "sent.jsonl")
        assert alive_during_outage
        assert sender.process.poll() is None
        assert written | during == final.get("sent", set()) == set(log)
        assert [] == [i for i, n in log.items() if n > 1]
        assert "Outbox store unavailable, backing off" in sender.log()
