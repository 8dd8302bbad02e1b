"""The one composition root (STYLE rule 9): every object, its lifetime, and which adapter serves.

Nothing here connects, reads the environment or builds an engine at import time: ``build``
fills the configuration from validated Settings, and providers create objects on first use.
Tests and the simulation override providers (``container.uow_factory.override(...)``). The
factory functions the providers call are in ``entrypoints.container_factories``.
"""

from __future__ import annotations

import functools
from datetime import timedelta

from dependency_injector import containers, providers

from adapters.memory.store import MemoryStore, MemoryUnitOfWorkFactory
from adapters.rq.connection import queue_errors, redis_connection
from adapters.rq.health import RedisQueueHealth
from adapters.rq.monitor import RqQueueMonitor
from adapters.rq.queue import RqInboundQueue
from adapters.rq.rate_limit import RedisRateLimiter, rate_limit_client
from adapters.rq.spec import JOB_TIMEOUT_SECONDS, QUEUE_NAME, JobSpec
from adapters.rq.spool import RedisSpool
from adapters.rq.worker import ThreadedRqWorker
from adapters.sqlalchemy.engine import build_engine, statement_timeout_for
from adapters.sqlalchemy.unit_of_work import SqlUnitOfWorkFactory
from adapters.system.clock import SystemClock, TimeOrderedIds
from adapters.system.executor import ThreadPool
from adapters.system.rate_limit import TokenBucketRateLimiter
from adapters.system.waiting import ThreadWaiter
from application.outbox_sender import OutboxSender
from domain.live_sessions import InactivityWindow
from domain.retry import RetryPolicy
from entrypoints.closer import SessionCloser
from entrypoints.container_factories import (
    check_database_schema,
    child_metrics_observers,
    dead_letter_undecodable_job,
    forget_process,
    meta_provider,
    metrics_observers,
    nothing_to_check,
    outbox_wakeup_kind,
    ping_database,
    postgres_wakeup,
    prepare_for_jobs,
    provider_router,
    rebuildable_from_settings,
    simulated_provider,
    store_metrics_collector,
    twilio_provider,
)
from entrypoints.inbox_reconciler import InboxReconciler
from entrypoints.logs import current_worker
from entrypoints.observability import job_scope
from entrypoints.outbox_worker import OutboxSenderPart
from entrypoints.settings import Settings
from entrypoints.spool_drainer import SpoolDrainer
from entrypoints.webhook_processor import WebhookProcessor, name_thread
from entrypoints.webhook_worker import WebhookWorker

WEBHOOK_QUEUE = QUEUE_NAME
"""The queue webhooks are processed on, as operators read it (``livesell stats``, ``/metrics``)."""


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
    # Per-recipient pacing (ADR 0025): 0 = off, the default.
    outbox_recipient_gap = providers.Factory(
        lambda seconds: timedelta(seconds=seconds),
        settings.provided.outbox_recipient_min_gap_seconds,
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
        recipient_gap=outbox_recipient_gap,
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
