# ruff: noqa: F811 - pytest fixtures imported from tests.support.webhook are parameters here
"""The webhook as a real service: ``livesell webhook`` and ``livesell worker --only
webhook,reconciler`` as processes on the real Postgres and Redis, Redis behind a TCP proxy the
test cuts. Requests are signed as Twilio signs them, over the public URL the service is told it
has (``WEBHOOK_PUBLIC_BASE_URL``), and posted to 127.0.0.1.

Every process here is started by the test and stopped by its pid.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import attrs
import httpx
import pytest
import sqlalchemy as sa

from adapters.system.clock import SystemClock, TimeOrderedIds
from adapters.twilio.provider import TwilioMessagingProvider
from application.outbox import queue_outbound_message
from application.tenants import add_tenant
from ports.messaging import SendRequest
from ports.unit_of_work import UnitOfWorkFactory
from tests.support.redis_db import RedisTestDb
from tests.support.tcp_proxy import TcpProxy
from tests.support.twilio_webhook import (
    BASE,
    SHOP_NUMBER,
    TOKEN,
    signed_headers,
    twilio_form,
)
from tests.support.webhook import redis_db, redis_test_db, rows  # noqa: F401 - fixtures

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = "/webhooks/twilio/messages"


@attrs.define
class Service:
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 35) -> int:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            raise


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    condition: Callable[[], object], timeout: float, what: str, log: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{log()[-4000:]}")


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def redis_proxy() -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", 6379) as proxy:
        yield proxy


@pytest.fixture
def shop(pg_uow_factory: UnitOfWorkFactory) -> UnitOfWorkFactory:
    add_tenant(
        uow_factory=pg_uow_factory,
        clock=SystemClock(),
        tenant_id="shop-a",
        name="Shop A",
        whatsapp_number=SHOP_NUMBER,
    )
    return pg_uow_factory


@pytest.fixture
def start(
    postgres_url: str, redis_db: RedisTestDb, redis_proxy: TcpProxy, tmp_path: Path
) -> Iterator[Callable[..., Service]]:
    """Starts ``livesell`` commands on the test database and the proxied Redis database; kills
    (by pid) any still running at the end."""
    started: list[Service] = []

    def run(*args: str, port: int | None = None, **env: str) -> Service:
        environ = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("TWILIO_", "WEBHOOK_", "INBOX_", "DATABASE_", "REDIS_"))
        }
        environ.update(
            {
                "DATABASE_URL": postgres_url,
                "REDIS_URL": f"redis://127.0.0.1:{redis_proxy.port}/{redis_db.db}",
                "TWILIO_AUTH_TOKEN": TOKEN,
                "WEBHOOK_PUBLIC_BASE_URL": BASE,
                "INBOX_RECONCILE_AFTER_SECONDS": "1",
                "MESSAGING_PROVIDER": "simulated",
                "PYTHONUNBUFFERED": "1",
                **env,
            }
        )
        log_path = tmp_path / f"{args[0]}-{len(started)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "entrypoints.cli", *args],
                cwd=ROOT,
                env=environ,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        service = Service(process, log_path, port)
        started.append(service)
        return service

    yield run
    for service in started:
        if service.process.poll() is None:
            os.kill(service.process.pid, signal.SIGKILL)
            service.process.wait(10)


@pytest.fixture
def webhook(start: Callable[..., Service], shop: UnitOfWorkFactory) -> Service:
    port = free_port()
    service = start("webhook", "--host", "127.0.0.1", "--port", str(port), port=port)
    wait_for(lambda: answers(f"{service.url}/healthz"), 20, "the webhook to answer", service.log)
    return service


@pytest.fixture
def worker(start: Callable[..., Service], shop: UnitOfWorkFactory) -> Service:
    service = start("worker", "--only", "webhook,reconciler")
    wait_for(
        lambda: (
            "Inbox reconciler started" in service.log()
            and "Worker started successfully" in service.log()
        ),
        20,
        "the worker to start",
        service.log,
    )
    return service


def post_message(service: Service, sid: str) -> httpx.Response:
    form = twilio_form(sid)
    return httpx.post(
        service.url + MESSAGES,
        content=urlencode(form),
        headers=signed_headers(BASE + MESSAGES, form),
        timeout=10,
    )


def inbound_status(engine: sa.Engine) -> dict[str, str]:
    found = rows(engine, "SELECT provider_message_id, status FROM inbound_messages")
    return {r.provider_message_id: r.status for r in found}


class TestTheWebhookService:
    def test_a_signed_message_is_answered_with_twiml_and_processed_by_the_worker(
        self, webhook: Service, worker: Service, pg_engine: sa.Engine
    ) -> None:
        response = post_message(webhook, "SM-e2e-1")

        assert (200, "text/xml") == (
            response.status_code,
            response.headers["content-type"].split(";")[0],
        )
        assert "<Response/>" in response.text
        wait_for(
            lambda: inbound_status(pg_engine) == {"SM-e2e-1": "processed"},
            30,
            "the message to be processed",
            worker.log,
        )
        assert 200 == httpx.get(webhook.url + "/readyz", timeout=5).status_code

    def test_while_redis_is_cut_messages_are_answered_and_processed_after_it_returns(
        self,
        webhook: Service,
        worker: Service,
        redis_proxy: TcpProxy,
        pg_engine: sa.Engine,
    ) -> None:
        redis_proxy.cut()
        started = time.monotonic()
        during = [post_message(webhook, f"SM-cut-{n}") for n in range(5)]
        elapsed = time.monotonic() - started
        ready = httpx.get(webhook.url + "/readyz", timeout=10)

        assert [200] * 5 == [r.status_code for r in during]
        assert elapsed < 5, f"answers took {elapsed:.1f}s with Redis down"
        assert (503, ["redis"]) == (ready.status_code, ready.json()["failed"])
        assert {f"SM-cut-{n}": "received" for n in range(5)} == inbound_status(pg_engine)

        redis_proxy.restore()
        wait_for(
            lambda: set(inbound_status(pg_engine).values()) == {"processed"},
            60,
            "the reconciled messages to be processed",
            lambda: worker.log() + webhook.log(),
        )
        # The reconciler enqueued them again: its recovery pass as Redis answers (ADR 0013), or a
        # regular pass once they are older than the threshold.
        log = worker.log()
        assert "Queue answers again, inbox reconciled" in log or "Inbox reconciled" in log

    def test_status_callbacks_at_the_url_the_twilio_provider_sets_move_forward_only(
        self, webhook: Service, shop: UnitOfWorkFactory, pg_engine: sa.Engine
    ) -> None:
        outbox_id = queue_outbound_message(
            uow_factory=shop,
            tenant_id="shop-a",
            to="+33612345678",
            body="Merci !",
            correlation_id="corr-e2e",
            clock=SystemClock(),
            ids=TimeOrderedIds(),
        )
        provider = TwilioMessagingProvider(
            account_sid="AC" + "1" * 32,
            auth_token=TOKEN,
            default_sender=SHOP_NUMBER,
            status_callback_base_url=BASE,
        )
        callback = provider.status_callback(
            SendRequest(
                outbox_id=outbox_id,
                tenant_id="shop-a",
                to_phone="+33612345678",
                body="Merci !",
                correlation_id="corr-e2e",
            )
        )
        assert callback is not None
        parts = urlsplit(callback)

        codes = []
        for status in ("delivered", "sent", "read", "delivered"):
            form = {"MessageSid": "SM" + "c" * 32, "MessageStatus": status}
            codes.append(
                httpx.post(
                    f"{webhook.url}{parts.path}?{parts.query}",
                    content=urlencode(form),
                    headers=signed_headers(callback, form),
                    timeout=10,
                ).status_code
            )

        assert [200, 200, 200, 200] == codes
        ((stored),) = rows(
            pg_engine,
            "SELECT delivery_status FROM messages_out WHERE id = :id",
            {"id": outbox_id},
        )
        assert "read" == stored.delivery_status

    def test_sigterm_stops_the_service_with_exit_code_zero(self, webhook: Service) -> None:
        assert 0 == webhook.stop()
        assert "Webhook stopped" in webhook.log()

    def test_without_an_auth_token_the_service_refuses_to_start(
        self, start: Callable[..., Service]
    ) -> None:
        service = start("webhook", "--port", str(free_port()), TWILIO_AUTH_TOKEN="")

        assert 2 == service.process.wait(20)
        assert "TWILIO_AUTH_TOKEN" in service.log()
        assert "--insecure-skip-signature" in service.log()
