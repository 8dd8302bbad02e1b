"""The one composition root (STYLE rule 9): every object, its lifetime, and which adapter serves.

Nothing here connects, reads the environment or builds an engine at import time: ``build``
fills the configuration from validated Settings, and providers create objects on first use.
Tests and the simulation override providers (``container.uow_factory.override(...)``).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import attrs
from dependency_injector import containers, providers

from adapters.memory.store import MemoryStore, MemoryUnitOfWorkFactory
from adapters.rq.connection import redis_connection
from adapters.rq.health import RedisQueueHealth
from adapters.rq.queue import RqInboundQueue
from adapters.rq.rate_limit import RedisRateLimiter, rate_limit_client
from adapters.rq.spec import JOB_TIMEOUT_SECONDS, JobSpec
from adapters.rq.spool import RedisSpool
from adapters.simulated.provider import SimulatedMessagingProvider
from adapters.sqlalchemy.engine import build_engine, statement_timeout_for
from adapters.sqlalchemy.unit_of_work import SqlUnitOfWorkFactory
from adapters.system.clock import SystemClock, TimeOrderedIds
from adapters.system.rate_limit import TokenBucketRateLimiter
from adapters.twilio.provider import TwilioMessagingProvider
from domain.live_sessions import InactivityWindow
from domain.retry import RetryPolicy
from entrypoints.settings import Settings

log = logging.getLogger("livesell.container")


def twilio_provider(settings: Settings | None, **options: Any) -> TwilioMessagingProvider:
    """The Twilio provider; raises ConfigError naming a missing Twilio variable (ADR 0011)."""
    if settings is not None:
        settings.check_messaging_provider()
    return TwilioMessagingProvider(**options)


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
    # The per-sender-number limit (ADR 0018): shared by every sender through Redis (the
    # producers' server, on a client of its own with short timeouts), falling back to
    # rate / OUTBOX_SENDER_INSTANCES in the process; the in-memory store keeps it in the process.
    rate_limiter = providers.Selector(
        config.store,
        memory=providers.Singleton(
            TokenBucketRateLimiter, rate=config.outbox_rate_limit_per_second
        ),
        sql=providers.Singleton(
            RedisRateLimiter,
            providers.Singleton(rate_limit_client, queue_redis),
            rate=config.outbox_rate_limit_per_second,
            instances=config.outbox_sender_instances,
            fallback=providers.Object(TokenBucketRateLimiter),
        ),
    )


def build(settings: Settings | None = None, *, store: str = "sql") -> Container:
    """A container configured from ``settings`` (read from the environment when None).

    ``store`` is ``sql`` (on ``DATABASE_URL``) or ``memory`` (the in-memory adapters).
    """
    settings = settings or Settings.from_env()
    container = Container()
    container.config.from_dict({**attrs.asdict(settings), "store": store})
    container.settings.override(providers.Object(settings))
    return container
