"""The one composition root (STYLE rule 9): every object, its lifetime, and which adapter serves.

Nothing here connects, reads the environment or builds an engine at import time: ``build``
fills the configuration from validated Settings, and providers create objects on first use.
Tests and the simulation override providers (``container.uow_factory.override(...)``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from dependency_injector import containers, providers

from adapters.memory.store import MemoryStore, MemoryUnitOfWorkFactory
from adapters.meta.provider import MetaMessagingProvider
from adapters.rq.connection import queue_errors, redis_connection
from adapters.rq.health import RedisQueueHealth
from adapters.rq.monitor import RqQueueMonitor
from adapters.rq.queue import RqInboundQueue
from adapters.rq.rate_limit import RedisRateLimiter, rate_limit_client
from adapters.rq.spec import JOB_TIMEOUT_SECONDS, QUEUE_NAME, JobSpec
from adapters.rq.spool import RedisSpool
from adapters.rq.worker import ThreadedRqWorker
from adapters.simulated.provider import SimulatedMessagingProvider
from adapters.sqlalchemy.engine import build_engine, statement_timeout_for
from adapters.sqlalchemy.unit_of_work import SqlUnitOfWorkFactory
from adapters.system.clock import SystemClock, TimeOrderedIds
from adapters.system.executor import ThreadPool
from adapters.system.rate_limit import TokenBucketRateLimiter
from adapters.system.waiting import ThreadWaiter
from adapters.twilio.provider import TwilioMessagingProvider
from application.outbox_sender import OutboxSender
from application.provider_router import ProviderRouter
from application.stats import read_store_stats
from domain.live_sessions import InactivityWindow
from domain.retry import RetryPolicy
from domain.tenants import META, TWILIO
from entrypoints.closer import SessionCloser
from entrypoints.inbox_reconciler import InboxReconciler
from entrypoints.logs import current_worker
from entrypoints.observability import job_scope
from entrypoints.outbox_worker import OutboxSenderPart
from entrypoints.schema import check_schema
from entrypoints.settings import Settings
from entrypoints.spool_drainer import SpoolDrainer
from entrypoints.webhook_processor import WebhookProcessor, name_thread
from entrypoints.webhook_worker import WebhookWorker
from ports.messaging import MessagingProvider
from ports.wakeup import Wakeup

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

    from adapters.prometheus.observer import PrometheusObserver
    from ports.clock import Clock
    from ports.queue_monitor import QueueMonitor
    from ports.unit_of_work import UnitOfWorkFactory

WEBHOOK_QUEUE = QUEUE_NAME
"""The queue webhooks are processed on, as operators read it (``livesell stats``, ``/metrics``)."""

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


class Container(containers.DeclarativeContainer):
    __self__ = providers.Self()

    # The one configuration channel: the validated Settings (ADR 0017). ``store`` is how the
    # container was built (``sql`` on DATABASE_URL, or ``memory``), not a setting.
    settings: providers.Object[Settings] = providers.Object(None)
    store: providers.Object[str] = providers.Object("sql")

    clock = providers.Singleton(SystemClock)
    ids = providers.Singleton(TimeOrderedIds)

    window = providers.Singleton(
        InactivityWindow, settings.provided.live_session_inactivity_window_minutes
    )
    retry_policy = providers.Singleton(
        RetryPolicy,
        max_attempts=settings.provided.outbox_max_attempts,
        rate_limited_ceiling=providers.Factory(
            lambda seconds: timedelta(seconds=seconds),
            settings.provided.outbox_rate_limited_max_seconds,
        ),
    )
    outbox_lease = providers.Factory(
        lambda seconds: timedelta(seconds=seconds), settings.provided.outbox_lease_seconds
    )

    memory_store = providers.Singleton(MemoryStore)
    engine = providers.Singleton(
        build_engine,
        settings.provided.database_url,
        settings.provided.database_pool_size,
        statement_timeout_ms=statement_timeout_for(JOB_TIMEOUT_SECONDS),  # ADR 0014
    )
    uow_factory = providers.Selector(
        store,
        memory=providers.Singleton(MemoryUnitOfWorkFactory, memory_store),
        sql=providers.Singleton(SqlUnitOfWorkFactory, engine),
    )

    messaging_provider = providers.Selector(
        settings.provided.messaging_provider,
        simulated=providers.Singleton(
            simulated_provider,
            settings,
            latency_ms=settings.provided.simulated_latency_ms,
            transient_failure_rate=settings.provided.simulated_transient_failure_rate,
            permanent_failure_rate=settings.provided.simulated_permanent_failure_rate,
            seed=settings.provided.simulated_seed,
            sent_log=settings.provided.simulated_sent_log,
        ),
        twilio=providers.Singleton(
            twilio_provider,
            settings,
            account_sid=settings.provided.twilio_account_sid,
            auth_token=settings.provided.twilio_auth_token,
            default_sender=settings.provided.twilio_whatsapp_number,
            timeout_seconds=settings.provided.twilio_timeout_seconds,
            status_callback_base_url=settings.provided.webhook_public_base_url,
            pool_size=settings.provided.outbox_send_concurrency,
        ),
    )
    meta_provider = providers.Singleton(
        meta_provider,
        settings,
        access_token=settings.provided.meta_access_token,
        base_url=settings.provided.meta_graph_base_url,
        timeout_seconds=settings.provided.meta_timeout_seconds,
        pool_size=settings.provided.outbox_send_concurrency,
    )
    # What the outbox sends through: each message's provider, its tenant's (ADR 0019).
    provider_router = providers.Singleton(
        provider_router,
        settings,
        uow_factory,
        default=messaging_provider.provider,
        meta=meta_provider.provider,
    )
    # Producers of webhook-processing jobs (the webhook, the inbox reconciler). Nothing connects
    # until the first enqueue; an unreachable Redis raises ports.queue.QueueUnavailable then.
    queue_redis = providers.Singleton(
        redis_connection,
        settings.provided.redis_url,
        settings.provided.redis_token,
        client_name="livesell-producer",
    )
    # The webhook-processor's own client (its worker blocks on the queue; producers never wait).
    worker_redis = providers.Singleton(
        redis_connection,
        settings.provided.redis_url,
        settings.provided.redis_token,
        client_name="webhook-processor",
    )
    webhook_job_spec = providers.Singleton(JobSpec.webhook_processing, retry_policy)
    inbound_queue = providers.Singleton(RqInboundQueue, queue_redis, webhook_job_spec)
    # What the database could not take waits here (ADR 0013); the queue's liveness and epoch.
    spool = providers.Singleton(RedisSpool, queue_redis)
    queue_health = providers.Singleton(RedisQueueHealth, queue_redis)
    # The per-sender-number limit (ADR 0018): shared by every sender through Redis (the
    # producers' server, on a client of its own with short timeouts), falling back to
    # rate / OUTBOX_SENDER_INSTANCES in the process; the in-memory store keeps it in the process.
    rate_limiter = providers.Selector(
        store,
        memory=providers.Singleton(
            TokenBucketRateLimiter, rate=settings.provided.outbox_rate_limit_per_second
        ),
        sql=providers.Singleton(
            RedisRateLimiter,
            providers.Singleton(rate_limit_client, queue_redis),
            rate=settings.provided.outbox_rate_limit_per_second,
            instances=settings.provided.outbox_sender_instances,
            fallback=providers.Object(TokenBucketRateLimiter),
        ),
    )

    # The outbox sender (application.outbox_sender), one per part; its sizes are read from the
    # settings when it is made. ``outbox_wakeup(on_wake=...)`` is None where nothing notifies.
    outbox_wakeup = providers.Selector(
        providers.Callable(outbox_wakeup_kind, settings.provided.database_url),
        listen_notify=providers.Factory(postgres_wakeup, settings.provided.database_url),
        polling=providers.Object(None),
    )
    outbox_executor = providers.Factory(
        ThreadPool,
        max_workers=settings.provided.outbox_send_concurrency,
        thread_name_prefix="outbox-send",
        inherit=providers.Object((current_worker,)),
    )
    outbox_sender = providers.Factory(
        OutboxSender,
        uow_factory=uow_factory,
        provider=provider_router,
        clock=clock,
        ids=ids,
        policy=retry_policy,
        lease=outbox_lease,
        batch_size=settings.provided.outbox_batch_size,
        concurrency=settings.provided.outbox_send_concurrency,
        poll_interval=settings.provided.outbox_poll_interval_seconds,
        executor=outbox_executor,
        waiter=providers.Factory(ThreadWaiter),
        rate_limiter=rate_limiter,
        job_scope=providers.Object(job_scope),
    )

    # What the queue holds, for operators (livesell stats, /metrics); each reader has its own
    # client, named at the call: ``container.queue_monitor(client_name="stats")``.
    queue_monitor = providers.Factory(
        RqQueueMonitor.connect, settings.provided.redis_url, settings.provided.redis_token
    )

    metrics_collector = providers.Factory(
        store_metrics_collector, uow_factory, clock, queue_monitor.provider
    )

    # Readiness checks (``/readyz`` of the webhook and of the worker): each raises when its
    # dependency does not answer.
    store_check = providers.Selector(
        store,
        memory=providers.Object(nothing_to_check),
        sql=providers.Factory(functools.partial, ping_database, engine),
    )
    schema_check = providers.Factory(functools.partial, check_database_schema, engine)
    queue_check = queue_redis.provided.ping

    # The worker parts (``livesell worker``, entrypoints.runner.PARTS), each given its
    # collaborators; the parts never see the container (ADR 0017).
    part_observers = providers.Callable(metrics_observers, settings.provided.metrics_port)
    child_part_observers = providers.Callable(
        child_metrics_observers, settings.provided.metrics_port
    )
    outbox_part = providers.Factory(
        OutboxSenderPart,
        make_sender=outbox_sender.provider,
        make_wakeup=outbox_wakeup.provider,
        observers=part_observers,
        rate_limit_per_second=settings.provided.outbox_rate_limit_per_second,
        longest_send_seconds=settings.provided.longest_send_seconds.call(),
        provider_name=settings.provided.messaging_provider,
    )
    closer_part = providers.Factory(
        SessionCloser,
        uow_factory=uow_factory,
        clock=clock,
        ids=ids,
        window=window,
        interval_minutes=settings.provided.close_interval_minutes,
        batch_limit=settings.provided.close_batch_limit,
        observers=part_observers,
    )
    reconciler_part = providers.Factory(
        InboxReconciler,
        uow_factory=uow_factory,
        queue=inbound_queue,
        queue_health=queue_health,
        clock=clock,
        reconcile_after_seconds=settings.provided.inbox_reconcile_after_seconds,
    )
    spool_part = providers.Factory(SpoolDrainer, spool, uow_factory, inbound_queue, clock, ids)
    # The webhook worker: this process's engine over ``worker_redis``, and the children, which
    # rebuild the container from Settings when that gives the same one.
    webhook_engine = providers.Factory(
        ThreadedRqWorker,
        worker_redis,
        webhook_job_spec,
        thread_initializer=providers.Object(name_thread),
        on_undecodable=providers.Object(dead_letter_undecodable_job),
    )
    webhook_processor = providers.Factory(
        WebhookProcessor,
        prepare=providers.Factory(functools.partial, prepare_for_jobs, __self__),
        make_engine=webhook_engine.provider,
        monitor=providers.Singleton(RqQueueMonitor, worker_redis),
        queue_errors=providers.Object(queue_errors),
    )
    webhook_part = providers.Factory(
        WebhookWorker,
        settings=settings,
        make_processor=webhook_processor.provider,
        rebuildable=providers.Callable(rebuildable_from_settings, __self__),
        forget_process=providers.Object(forget_process),
        observers=part_observers,
    )


def build(settings: Settings | None = None, *, store: str = "sql") -> Container:
    """A container configured from ``settings`` (read from the environment when None).

    ``store`` is ``sql`` (on ``DATABASE_URL``) or ``memory`` (the in-memory adapters).
    """
    settings = settings or Settings.from_env()
    container = Container()
    container.settings.override(providers.Object(settings))
    container.store.override(providers.Object(store))
    return container
