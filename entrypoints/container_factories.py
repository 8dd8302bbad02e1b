"""The composition root's factory functions (``entrypoints.container`` wires them into the
``Container``): which provider, wakeup and metrics observers a process gets, and the readiness
checks. Part of the composition root: like the container, it builds adapters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from adapters.meta.provider import MetaMessagingProvider
from adapters.rq.spec import QUEUE_NAME
from adapters.simulated.provider import SimulatedMessagingProvider
from adapters.twilio.provider import TwilioMessagingProvider
from application.provider_router import ProviderRouter
from application.stats import read_store_stats
from domain.tenants import META, TWILIO
from entrypoints.schema import check_schema
from entrypoints.settings import Settings
from ports.messaging import MessagingProvider
from ports.wakeup import Wakeup

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

    from adapters.prometheus.observer import PrometheusObserver
    from entrypoints.container import Container
    from ports.clock import Clock
    from ports.queue_monitor import QueueMonitor
    from ports.unit_of_work import UnitOfWorkFactory

log = logging.getLogger("livesell.container")

NO_DEFAULT_PHONE_NUMBER_ID = "0"


def twilio_provider(settings: Settings | None, **options: Any) -> TwilioMessagingProvider:
    """The Twilio provider; raises ConfigError naming a missing Twilio variable (ADR 0011)."""
    if settings is not None:
        settings.check_messaging_provider()
    return TwilioMessagingProvider(**options)


def meta_provider(settings: Settings | None, **options: Any) -> MetaMessagingProvider:
    """The Meta Cloud API provider; raises ConfigError naming a missing Meta variable (ADR 0019).
    Its default sender is never used: every Meta tenant's message names its phone-number id."""
    if settings is not None:
        settings.check_meta_provider()
    return MetaMessagingProvider(phone_number_id=NO_DEFAULT_PHONE_NUMBER_ID, **options)


def provider_router(
    settings: Settings | None,
    uow_factory: UnitOfWorkFactory,
    *,
    default: Callable[[], MessagingProvider],
    meta: Callable[[], MessagingProvider],
) -> ProviderRouter:
    """Each tenant's provider (ADR 0019). ``default`` is ``messaging_provider`` (Twilio, or the
    simulated provider, which then stands in for Meta too); Meta is built and checked at
    start-up (a missing variable is a ConfigError) when one of its variables is set or a tenant
    is on it."""
    if settings is None or settings.messaging_provider != "twilio":
        return ProviderRouter({TWILIO: default, META: default}, default=TWILIO)
    if settings.meta_variables_set or _any_tenant_on_meta(uow_factory):
        settings.check_meta_provider()
        meta()
    return ProviderRouter({TWILIO: default, META: meta}, default=TWILIO, owns=(META,))


def _any_tenant_on_meta(uow_factory: UnitOfWorkFactory) -> bool:
    with uow_factory() as uow:
        return any(tenant.provider == META for tenant in uow.tenants.list())


def simulated_provider(settings: Settings | None, **options: Any) -> SimulatedMessagingProvider:
    """The simulated provider; in a process that has Twilio variables (MESSAGING_PROVIDER set to
    ``simulated`` explicitly, the only way to get here then) it says so at start, once."""
    present = settings.twilio_variables_set if settings is not None else ()
    if present:
        log.warning(
            "Simulated messaging provider selected although Twilio is configured: outbound "
            "messages are marked sent and go nowhere",
            extra={"context": {"messagingProvider": "simulated", "twilioVariablesSet": present}},
        )
    return SimulatedMessagingProvider(**options)


def outbox_wakeup_kind(database_url: str) -> str:
    """``listen_notify`` on Postgres, whose trigger notifies on every write to ``messages_out``
    (ADR 0006); ``polling`` elsewhere (SQLite, the memory store: nobody notifies)."""
    return "listen_notify" if database_url.startswith("postgresql") else "polling"


def postgres_wakeup(database_url: str, on_wake: Callable[[], None]) -> Wakeup:
    from adapters.sqlalchemy.notify import PostgresOutboxWakeup  # psycopg only where it listens

    return PostgresOutboxWakeup(database_url, on_wake)


def metrics_observers(metrics_port: int | None) -> list[PrometheusObserver]:
    """What a worker part counts its events with: the Prometheus observer when ``METRICS_PORT``
    is set (the endpoint then serves what it counts), nothing otherwise. Prometheus is imported
    only then (``livesell stats`` loads none of it)."""
    if metrics_port is None:
        return []
    from adapters.prometheus.observer import PrometheusObserver
    from adapters.rq.spec import QUEUE_NAME

    return [PrometheusObserver(job_queue=QUEUE_NAME)]


def child_metrics_observers(metrics_port: int | None) -> list[PrometheusObserver]:
    """A webhook worker child's observers: its counters reach the endpoint only through the
    multi-process directory, so none without one."""
    from adapters.prometheus.metrics import multiprocess_dir

    return metrics_observers(metrics_port) if multiprocess_dir() else []


def store_metrics_collector(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    monitor: Callable[..., QueueMonitor],
    *,
    queue: bool,
    cache_seconds: float,
) -> Collector:
    """What ``/metrics`` reads at scrape time: the store's levels and, with ``queue``, the
    queue's depths (its own Redis client), as ``livesell stats`` reads them."""
    from adapters.prometheus.collectors import StoreCollector

    return StoreCollector(
        read_store=lambda: read_store_stats(uow_factory=uow_factory, clock=clock),
        monitor=monitor(client_name="livesell-metrics") if queue else None,
        queues=(QUEUE_NAME,),
        cache_seconds=cache_seconds,
    )


def ping_database(engine: sa.Engine) -> None:
    """Raises unless the database answers a ``SELECT 1`` (readiness, ADR 0015)."""
    with engine.connect() as connection:
        connection.execute(sa.text("SELECT 1"))


def check_database_schema(engine: sa.Engine) -> None:
    """Raises SchemaNotAtHead unless the database is at this build's head (ADR 0015)."""
    with engine.connect() as connection:
        check_schema(connection)


def nothing_to_check() -> None:
    """The in-memory store always answers."""


def forget_process(pid: int) -> None:
    """Drop a stopped process's multi-process metrics files (none when metrics are off)."""
    from adapters.prometheus.metrics import mark_process_dead

    mark_process_dead(pid)


def prepare_for_jobs(container: Container) -> None:
    """Install ``container`` for this process's RQ jobs (``entrypoints.jobs``) and open its pool."""
    from entrypoints.jobs import install_container

    install_container(container)
    container.uow_factory()


def dead_letter_undecodable_job(*args: Any, **kwargs: Any) -> Any:
    """``entrypoints.jobs.dead_letter_undecodable_job`` (imported late: jobs imports this)."""
    from entrypoints.jobs import dead_letter_undecodable_job as dead_letter

    return dead_letter(*args, **kwargs)


def rebuildable_from_settings(container: Container) -> bool:
    """Child processes build their container from Settings: that gives them the same one only
    when it was built by ``build(settings)`` on the SQL store with nothing overridden that a
    child would not see (tests and the demo override the store or the queue's Redis connections,
    or use the in-memory store, and stay in one process)."""
    overridable = (
        container.uow_factory,
        container.engine,
        container.queue_redis,
        container.worker_redis,
    )
    return container.store() == "sql" and not any(p.overridden for p in overridable)
