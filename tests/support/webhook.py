# ruff: noqa: F811 - the Redis fixtures imported below are parameters of the fixtures here
"""Fixtures and helpers of the webhook-processor suites (integration and end-to-end).

Test modules import the fixtures they use by name (``from tests.support.webhook import ...``), so
``tests/conftest.py`` stays as it is. Postgres comes from its fixtures (``postgres_url``,
``pg_uow_factory``); Redis is a logical database claimed for the run (``tests.support.redis_db``).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
import sqlalchemy as sa
from dependency_injector import providers
from rq import Queue
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from adapters.rq.connection import redis_connection
from adapters.rq.queue import RqInboundQueue
from adapters.rq.spec import QUEUE_NAME, JobSpec
from application.tenants import add_seller, add_tenant
from entrypoints.container import Container, build
from entrypoints.jobs import install_container
from entrypoints.settings import Settings
from ports.unit_of_work import UnitOfWorkFactory
from tests.support.redis_db import (  # noqa: F401 - fixtures the test modules import from here
    RedisTestDb,
    redis_db,
    redis_test_db,
)

SELLER_PHONE = "+33612345678"
OTHER_SELLER_PHONE = "+33698765432"
_sequence = itertools.count(1)


def wait_until(
    predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05
) -> None:
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout} s: {getattr(predicate, '__name__', '')}")


def payload(
    tenant_id: str,
    sender: str,
    *,
    message_id: str | None = None,
    body: str = "Je prends le 3 !",
    **extra: Any,
) -> dict[str, Any]:
    """A valid inbound job payload (SPEC §2)."""
    number = next(_sequence)
    return {
        "tenantId": tenant_id,
        "providerMessageId": message_id or f"SM{number:032d}",
        "from": f"whatsapp:{sender}",
        "body": body,
        "correlationId": f"corr-{number}",
        **extra,
    }


def client_phone(n: int) -> str:
    return f"+336{20000000 + n:08d}"


def seed_tenant(
    container: Container, tenant_id: str, sellers: tuple[str, ...] = (SELLER_PHONE,)
) -> None:
    uow_factory = container.uow_factory()
    clock = container.clock()
    add_tenant(uow_factory=uow_factory, clock=clock, tenant_id=tenant_id, name=tenant_id)
    for phone in sellers:
        add_seller(
            uow_factory=uow_factory,
            clock=container.clock(),
            ids=container.ids(),
            tenant_id=tenant_id,
            phone=phone,
        )


def webhook_settings(database_url: str, redis_url: str, **env: str) -> Settings:
    return Settings.from_env({"DATABASE_URL": database_url, "REDIS_URL": redis_url, **env})


def container_on(settings: Settings, uow_factory: UnitOfWorkFactory) -> Container:
    """The production container with its units of work on ``uow_factory``."""
    container = build(settings, store="memory")
    container.uow_factory.override(providers.Object(uow_factory))
    return container


class RqState:
    """RQ's view of queue ``webhook-processing`` in the test's Redis database."""

    def __init__(self, redis_url: str) -> None:
        self.connection = redis_connection(redis_url)
        self.queue = Queue(QUEUE_NAME, connection=self.connection)

    def waiting(self) -> int:
        return int(self.connection.llen(self.queue.key))

    def started(self) -> int:
        return int(self.connection.zcard(StartedJobRegistry(queue=self.queue).key))

    def scheduled(self) -> int:
        return int(self.connection.zcard(ScheduledJobRegistry(queue=self.queue).key))

    def failed(self) -> int:
        return int(self.connection.zcard(FailedJobRegistry(queue=self.queue).key))

    def idle(self) -> bool:
        """Nothing waiting, running or scheduled for a retry."""
        return self.waiting() == 0 and self.started() == 0 and self.scheduled() == 0


class RunningWorker:
    """The webhook worker part running in a thread of the test process, as the runner runs it,
    with all its slots in this process (the end-to-end suite runs the child processes)."""

    def __init__(self, container: Container) -> None:
        self.part = container.webhook_part(processes=1)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.part.run, args=(self.stop,), daemon=True)

    def __enter__(self) -> RunningWorker:
        self.part.start()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=35)
        assert not self.thread.is_alive(), "the worker did not stop within 35 s"
        install_container(None)


def count(engine: sa.Engine, sql: str, params: Mapping[str, Any] | None = None) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.text(sql), dict(params or {})).scalar_one())


def rows(engine: sa.Engine, sql: str, params: Mapping[str, Any] | None = None) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(sa.text(sql), dict(params or {})).mappings())


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def webhook_container(
    postgres_url: str, pg_uow_factory: UnitOfWorkFactory, redis_db: RedisTestDb
) -> Iterator[Container]:
    """The production container on the test database (emptied) and the run's Redis database."""
    container = container_on(webhook_settings(postgres_url, redis_db.url), pg_uow_factory)
    yield container
    install_container(None)


@pytest.fixture
def inbound_queue(webhook_container: Container, redis_db: RedisTestDb) -> RqInboundQueue:
    return RqInboundQueue(
        redis_connection(redis_db.url),
        JobSpec.webhook_processing(webhook_container.retry_policy()),
    )


@pytest.fixture
def rq_state(redis_db: RedisTestDb) -> RqState:
    return RqState(redis_db.url)
