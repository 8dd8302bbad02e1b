# ruff: noqa: F811 - pytest fixtures imported from tests.support.webhook are parameters here
"""How fast work resumes after a fault (ADR 0013), measured on real processes and the real
Postgres and Redis:

- messages the webhook accepted while Redis was cut are processed within 15 s of Redis answering
  again, with the reconciler's threshold left at its 60 s default (the reconciler probes Redis
  every second and enqueues, once, what was received during the outage);
- a job a worker took from the queue (RQ's LMOVE into the intermediate queue,
  https://python-rq.org/docs/workers/ "intermediate queue") and never started, because the worker
  was SIGKILLed, runs within 15 s on another worker, with no attempt spent (RQ 2.12's own cleanup
  fails it after one minute).

Requests are signed as Twilio signs them (https://www.twilio.com/docs/usage/webhooks/
webhooks-security) with the inbound WhatsApp parameter set
(https://www.twilio.com/docs/messaging/guides/webhook-request). Every process is started by the
test and stopped by its pid.
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
from urllib.parse import urlencode

import httpx
import pytest
import sqlalchemy as sa
from rq.job import Job, JobStatus

from adapters.rq.spec import QUEUE_NAME
from adapters.system.clock import SystemClock
from application.tenants import add_tenant
from entrypoints.container import Container
from ports.unit_of_work import UnitOfWorkFactory
from tests.support.redis_db import RedisTestDb
from tests.support.tcp_proxy import TcpProxy
from tests.support.twilio_webhook import BASE, SHOP_NUMBER, TOKEN, signed_headers, twilio_form
from tests.support.webhook import (  # noqa: F401 - fixtures
    RqState,
    client_phone,
    count,
    payload,
    redis_db,
    redis_test_db,
    rq_state,
    webhook_container,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = "/webhooks/twilio/messages"
BOUND_SECONDS = 15.0
TENANT = "shop-a"
DOOMED_WORKER = """
import sys, time
from redis import Redis
from rq import Queue
from adapters.rq.spec import JobSpec, QUEUE_NAME
from domain.retry import RetryPolicy
url, tenant, phone = sys.argv[1:4]
connection = Redis.from_url(url)
queue = Queue(QUEUE_NAME, connection=connection)
spec = JobSpec.webhook_processing(RetryPolicy())
payload = {"tenantId": tenant, "providerMessageId": "SM-taken", "from": "whatsapp:" + phone,
           "body": "Je prends le 3 !", "correlationId": "corr-taken"}
job = queue.create_job(spec.function, args=(payload,), **spec.enqueue_options())
with connection.pipeline() as pipe:
    job.save(pipeline=pipe)
    pipe.rpush(queue.intermediate_queue_key, job.id)
    pipe.execute()
print("taken", job.id, flush=True)
time.sleep(120)
"""


class Process:
    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)


def wait_for(condition: Callable[[], object], timeout: float, what: str, log: str = "") -> float:
    """Seconds until ``condition`` held; fails after ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{log[-4000:]}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def redis_proxy() -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", 6379) as proxy:
        yield proxy


@pytest.fixture
def livesell(postgres_url: str, tmp_path: Path) -> Iterator[Callable[..., Process]]:
    started: list[Process] = []

    def start(*args: str, redis_url: str, **env: str) -> Process:
        environ = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TWILIO_", "WEBHOOK_", "INBOX_", "DATABASE_", "REDIS_"))
        }
        environ.update(
            {
                "DATABASE_URL": postgres_url,
                "REDIS_URL": redis_url,
                "TWILIO_AUTH_TOKEN": TOKEN,
                "WEBHOOK_PUBLIC_BASE_URL": BASE,
                "INBOX_RECONCILE_AFTER_SECONDS": "60",
                "MESSAGING_PROVIDER": "simulated",
                "PYTHONUNBUFFERED": "1",
                **env,
            }
        )
        process = Process(
            [sys.executable, "-m", "entrypoints.cli", *args],
            environ,
            tmp_path / f"{args[0]}-{len(started)}.log",
        )
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


@pytest.fixture
def shop(pg_uow_factory: UnitOfWorkFactory) -> UnitOfWorkFactory:
    add_tenant(
        uow_factory=pg_uow_factory,
        clock=SystemClock(),
        tenant_id=TENANT,
        name="Shop A",
        whatsapp_number=SHOP_NUMBER,
    )
    return pg_uow_factory


def statuses(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as connection:
        found = connection.execute(
            sa.text("SELECT provider_message_id, status FROM inbound_messages")
        )
        return {row.provider_message_id: row.status for row in found}


class TestRecoveryAfterRedisWasDown:
    def test_messages_accepted_while_redis_was_cut_are_processed_within_15_s_of_its_return(
        self,
        livesell: Callable[..., Process],
        shop: UnitOfWorkFactory,
        redis_db: RedisTestDb,
        redis_proxy: TcpProxy,
        pg_engine: sa.Engine,
    ) -> None:
        redis_url = f"redis://127.0.0.1:{redis_proxy.port}/{redis_db.db}"
        port = free_port()
        webhook = livesell(
            "webhook", "--host", "127.0.0.1", "--port", str(port), redis_url=redis_url
        )
        worker = livesell("worker", "--only", "webhook,reconciler", redis_url=redis_url)
        url = f"http://127.0.0.1:{port}{MESSAGES}"

        def post(sid: str) -> int:
            form = twilio_form(sid)
            response = httpx.post(
                url,
                content=urlencode(form),
                headers=signed_headers(BASE + MESSAGES, form),
                timeout=10,
            )
            return int(response.status_code)

        def logs() -> str:
            return worker.log() + webhook.log()

        wait_for(lambda: "Worker started successfully" in worker.log(), 30, "the worker", logs())
        wait_for(lambda: _answers(port), 30, "the webhook", logs())
        assert 200 == post("SM-before")
        wait_for(lambda: statuses(pg_engine) == {"SM-before": "processed"}, 30, "warm-up", logs())

        redis_proxy.cut()
        cut_at = time.monotonic()
        answers = [post(f"SM-cut-{n}") for n in range(10)]
        time.sleep(max(0.0, 5.0 - (time.monotonic() - cut_at)))
        assert [200] * 10 == answers
        assert {"received"} == {s for sid, s in statuses(pg_engine).items() if sid != "SM-before"}
        redis_proxy.restore()
        elapsed = wait_for(
            lambda: set(statuses(pg_engine).values()) == {"processed"},
            60,
            "the messages of the outage to be processed",
            logs(),
        )

        assert elapsed <= BOUND_SECONDS, f"processed {elapsed:.1f}s after Redis answered again"
        assert 11 == len(statuses(pg_engine))
        assert 10 == worker.log().count("Inbound message enqueued again by the reconciler"), (
            "each message of the outage enqueued once, the one before it not again"
        )


class TestJobsOfAKilledWorker:
    def test_a_job_taken_but_not_started_by_a_killed_worker_runs_within_15_s_elsewhere(
        self,
        livesell: Callable[..., Process],
        webhook_container: Container,
        shop: UnitOfWorkFactory,
        redis_db: RedisTestDb,
        rq_state: RqState,
        pg_engine: sa.Engine,
        tmp_path: Path,
    ) -> None:
        worker = livesell("worker", "--only", "webhook", redis_url=redis_db.url)
        wait_for(lambda: "Worker started successfully" in worker.log(), 30, "the worker")
        intermediate = f"rq:queue:{QUEUE_NAME}:intermediate"
        # Another worker enqueues-and-takes a job in one transaction (the job hash, and its id
        # straight into the intermediate queue, as its LMOVE leaves it), then dies before it marks
        # the job started. The running worker never sees the job in the queue.
        doomed = Process(
            [sys.executable, "-c", DOOMED_WORKER, redis_db.url, TENANT, client_phone(3)],
            dict(os.environ),
            tmp_path / "doomed.log",
        )
        wait_for(lambda: "taken" in doomed.log(), 20, "the doomed worker to take the job")
        doomed.kill()
        killed_at = time.monotonic()
        job_id = doomed.log().split()[-1]
        wait_for(
            lambda: statuses(pg_engine).get("SM-taken") == "processed",
            60,
            "the taken job to run",
            worker.log(),
        )
        elapsed = time.monotonic() - killed_at

        assert elapsed <= BOUND_SECONDS, f"ran {elapsed:.1f}s after its worker was killed"
        job = Job.fetch(job_id, connection=redis_db.client)
        assert JobStatus.FINISHED == job.get_status()
        assert (0, 4) == (rq_state.failed(), job.retries_left), "no attempt spent"
        assert 0 == redis_db.client.llen(intermediate)


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
