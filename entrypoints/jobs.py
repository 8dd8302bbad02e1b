"""RQ job functions. Other services enqueue ``entrypoints.jobs.process_webhook_message`` by name.

Thin on purpose (STYLE rule 9): run the use case through this process's container and map its
outcome to the job's result in one place. The container is built once per process, on the first
job or when the worker installs its own at start-up, and reused by every job after that: one
engine and connection pool per process, never one per job. Nothing is built at import time.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any

from adapters.rq.intake import UndecodableJob
from application.inbound import (
    InboundOutcome,
    Processed,
    RejectReason,
    process_inbound_message,
    reject_inbound,
)
from application.spool import dead_letter_or_park
from entrypoints.container import Container, build

log = logging.getLogger("livesell.jobs")

_container: Container | None = None
_container_lock = threading.Lock()


def install_container(container: Container | None) -> None:
    """Make ``container`` the one this process's jobs run on (None: build lazily again)."""
    global _container
    with _container_lock:
        _container = container


def current_container() -> Container:
    """This process's container, built from the environment on first use."""
    global _container
    container = _container
    if container is None:
        with _container_lock:
            if _container is None:
                _container = build()
            container = _container
    return container


def job_result(outcome: InboundOutcome) -> dict[str, Any]:
    """The job's return value: the EnrichedInboundMessage, or why the payload was rejected."""
    if isinstance(outcome, Processed):
        return outcome.enriched
    return {
        "status": "rejected",
        "reason": outcome.reason,
        "error": outcome.error,
        "deadLetterId": outcome.dead_letter_id,
    }


def process_webhook_message(payload: dict[str, Any]) -> dict[str, Any]:
    """Classify and record one inbound message (SPEC §3).

    A bad payload, an unknown tenant or an invalid phone ends the job with a ``rejected`` result
    (dead letter and ``inbound.rejected`` event written); any other error is raised so RQ retries.
    """
    container = current_container()
    outcome = process_inbound_message(
        payload,
        uow_factory=container.uow_factory(),
        clock=container.clock(),
        ids=container.ids(),
        window=container.window(),
    )
    return job_result(outcome)


def on_webhook_job_failure(
    job: Any,
    connection: Any,
    exc_type: type[BaseException],
    exc_value: BaseException,
    traceback: TracebackType | Any,
) -> None:
    """RQ's ``on_failure`` callback, called after every failed attempt (and for a job abandoned by
    a dead worker). Only the attempt that leaves no retry writes the ``retries_exhausted`` dead
    letter, so a job that fails five times gets exactly one. When the database cannot take it
    (the outage that exhausted the retries), it is parked in the spool and the spool drainer
    writes it when the database answers (ADR 0013); when Redis cannot take it either, this
    raises, and the engine logs it.
    """
    if job.retries_left:
        return
    container = current_container()
    policy = container.retry_policy()
    attempts = 1 if job.retries_left is None else policy.max_attempts
    payload = job.args[0] if job.args else None
    try:
        dead_letter_or_park(
            payload,
            RejectReason.RETRIES_EXHAUSTED,
            f"{exc_type.__name__}: {exc_value}",
            attempts=attempts,
            uow_factory=container.uow_factory(),
            spool=container.spool(),
            clock=container.clock(),
            ids=container.ids(),
        )
    except Exception:
        log.exception(
            "Dead letter neither written nor parked; the job stays in RQ's failed registry",
            extra={"context": {"jobId": job.id}},
        )
        raise


def dead_letter_undecodable_job(job: UndecodableJob) -> None:
    """The engine's writer for a job it will not run (ADR 0014): a ``webhook-processing`` dead
    letter whose payload is ``{"rqJobId": ..., "rawHash": {...}}``, the hash as Redis held it, and
    whose reason is ``undecodable_job`` or ``foreign_job``. Raises when it cannot be written."""
    container = current_container()
    reject_inbound(
        {"rqJobId": job.job_id, "rawHash": job.raw},
        job.reason,
        job.error,
        uow_factory=container.uow_factory(),
        clock=container.clock(),
        ids=container.ids(),
        attempts=0,
    )
