"""The one composition root (STYLE rule 9): every object, its lifetime, and which adapter serves.

Nothing here connects, reads the environment or builds an engine at import time: ``build``
fills the configuration from validated Settings, and providers create objects on first use.
Tests and the simulation override providers (``container.uow_factory.override(...)``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import attrs
from dependency_injector import containers, providers

from adapters.memory.store import MemoryStore, MemoryUnitOfWorkFactory
from adapters.meta.provider import MetaMessagingProvider
from adapters.rq.connection import redis_connection
from adapters.rq.health import RedisQueueHealth
from adapters.rq.monitor import RqQueueMonitor
from adapters.rq.queue import RqInboundQueue
from adapters.rq.spec import JOB_TIMEOUT_SECONDS, JobSpec
from adapters.rq.spool import RedisSpool
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
from domain.live_sessions import InactivityWindow
from domain.retry import RetryPolicy
from domain.tenants import META, TWILIO
from entrypoints.logs import current_worker
from entrypoints.observability import job_scope
from entrypoints.settings import Settings
from ports.messaging import MessagingProvider
from ports.unit_of_work import UnitOfWorkFactory
from ports.wakeup import Wakeup

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


class Container(containers.DeclarativeContainer):
    config = providers.Configuration(strict=True)

    settings: providers.Object[Settings | None] = providers.Object(None)

    clock = providers.Singleton(SystemClock)
    ids = providers.Singleton(TimeOrderedIds)

    window = providers.Singleton(InactivityWindow, config.live_session_inactivity_window_minutes)
    retry_policy = providers.Singleton(
        RetryPolicy,
        max_attempts=config.outbox_max_attempts,
        rate_limited_ceiling=providers.Factory(
            lambda seconds: timedelta(seconds=seconds), config.outbox_rate_limited_max_seconds
        ),
    )
    outbox_lease = providers.Factory(
        lambda seconds: timedelta(seconds=seconds), config.outbox_lease_seconds
    )

    memory_store = providers.Singleton(MemoryStore)
    engine = providers.Singleton(
        build_engine,
        config.database_url,
        config.database_pool_size,
        statement_timeout_ms=statement_timeout_for(JOB_TIMEOUT_SECONDS),  # ADR 0014
    )
    uow_factory = providers.Selector(
        config.store,
        memory=providers.Singleton(MemoryUnitOfWorkFactory, memory_store),
        sql=providers.Singleton(SqlUnitOfWorkFactory, engine),
    )

    messaging_provider = providers.Selector(
        config.messaging_provider,
        simulated=providers.Singleton(
            simulated_provider,
            settings,
            latency_ms=config.simulated_latency_ms,
            transient_failure_rate=config.simulated_transient_failure_rate,
            permanent_failure_rate=config.simulated_permanent_failure_rate,
            seed=config.simulated_seed,
            sent_log=config.simulated_sent_log,
        ),
        twilio=providers.Singleton(
            twilio_provider,
            settings,
            account_sid=config.twilio_account_sid,
            auth_token=config.twilio_auth_token,
            default_sender=config.twilio_whatsapp_number,
            timeout_seconds=config.twilio_timeout_seconds,
            status_callback_base_url=config.webhook_public_base_url,
            pool_size=config.outbox_send_concurrency,
        ),
    )
    meta_provider = providers.Singleton(
        meta_provider,
        settings,
        access_token=config.meta_access_token,
        base_url=config.meta_graph_base_url,
        timeout_seconds=config.meta_timeout_seconds,
        pool_size=config.outbox_send_concurrency,
    )
    # What the outbox sends through: each message's provider, its tenant's (ADR 0019).
    provider_router = providers.Singleton(
        provider_router,
        settings,
        uow_factory,
        default=messaging_provider.provider,
        meta=meta_provider.provider,
    )
    rate_limiter = providers.Singleton(
        TokenBucketRateLimiter, rate=config.outbox_rate_limit_per_second
    )

    # The outbox sender (application.outbox_sender), one per part; its sizes are read from the
    # settings when it is made. ``outbox_wakeup(on_wake=...)`` is None where nothing notifies.
    outbox_wakeup = providers.Selector(
        providers.Callable(outbox_wakeup_kind, config.database_url),
        listen_notify=providers.Factory(postgres_wakeup, config.database_url),
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

    # Producers of webhook-processing jobs (the webhook, the inbox reconciler). Nothing connects
    # until the first enqueue; an unreachable Redis raises ports.queue.QueueUnavailable then.
    queue_redis = providers.Singleton(
        redis_connection, config.redis_url, config.redis_token, client_name="livesell-producer"
    )
    # The webhook-processor's own client (its worker blocks on the queue; producers never wait).
    worker_redis = providers.Singleton(
        redis_connection, config.redis_url, config.redis_token, client_name="webhook-processor"
    )
    webhook_job_spec = providers.Singleton(JobSpec.webhook_processing, retry_policy)
    inbound_queue = providers.Singleton(RqInboundQueue, queue_redis, webhook_job_spec)
    # What the database could not take waits here (ADR 0013); the queue's liveness and epoch.
    spool = providers.Singleton(RedisSpool, queue_redis)
    queue_health = providers.Singleton(RedisQueueHealth, queue_redis)
    # What the queue holds, for operators (livesell stats, /metrics); each reader has its own
    # client, named at the call: ``container.queue_monitor(client_name="stats")``.
    queue_monitor = providers.Factory(RqQueueMonitor.connect, config.redis_url, config.redis_token)


def build(settings: Settings | None = None, *, store: str = "sql") -> Container:
    """A container configured from ``settings`` (read from the environment when None).

    ``store`` is ``sql`` (on ``DATABASE_URL``) or ``memory`` (the in-memory adapters).
    """
    settings = settings or Settings.from_env()
    container = Container()
    container.config.from_dict({**attrs.asdict(settings), "store": store})
    container.settings.override(providers.Object(settings))
    return container
