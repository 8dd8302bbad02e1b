# mypy: disable-error-code="no-untyped-call"
"""What one run of a job came to, and storing it in RQ's data model (ADR 0007): each outcome in
one pipelined transaction, with the RQ methods ``Worker.handle_job_success`` and
``handle_job_failure`` call."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import attrs
from redis import Redis
from rq import Queue, SimpleWorker
from rq.defaults import DEFAULT_RESULT_TTL
from rq.executions import Execution
from rq.job import Job, JobStatus


@attrs.frozen
class JobOutcome:
    """What happened to one run of a job, for logs, metrics and error reporting."""

    job_id: str
    payload: object
    succeeded: bool
    result: object
    error: str | None
    processing_seconds: float
    attempts_made: int
    attempts_remaining: int
    retry_scheduled: bool
    enqueued_at: datetime | None
    ended_at: datetime
    queue: str = ""
    exception: BaseException | None = None
    """What the job raised (its traceback attached), for error reporting."""


class JobObserver(Protocol):
    """Told of every run of a job once its outcome is stored (metrics)."""

    def job_finished(self, outcome: JobOutcome) -> None:
        """Called in the worker thread that ran the job; must not raise."""
        ...


def store_success(
    connection: Redis, queue: Queue, registration: SimpleWorker, job: Job, execution: Execution
) -> None:
    """Store a finished run in one transaction (RQ: ``Worker.handle_job_success``): the result,
    repeats or cleanup, the execution removed, the worker's counters; then the dependents."""
    assert job.ended_at is not None
    assert job.started_at is not None
    result_ttl = job.get_result_ttl(DEFAULT_RESULT_TTL)
    with connection.pipeline() as pipe:
        if result_ttl != 0:
            job._handle_success(
                result_ttl,
                pipeline=pipe,
                worker_name=registration.name,
                execution_id=execution.id,
                execution_started_at=execution.created_at,
                execution_ended_at=job.ended_at,
            )
        if job.repeats_left is not None and job.repeats_left > 0:
            from rq.repeat import Repeat

            Repeat.schedule(job, queue, pipeline=pipe)
        else:
            job.cleanup(result_ttl, pipeline=pipe, remove_from_queue=False)
        execution.delete(job=job, pipeline=pipe)
        registration.increment_successful_job_count(pipeline=pipe)
        registration.increment_total_working_time(job.ended_at - job.started_at, pipe)
        pipe.scard(job.dependents_key)
        has_dependents = pipe.execute()[-1]
    if has_dependents:
        queue.enqueue_dependents(job)


def store_failure(
    connection: Redis,
    queue: Queue,
    registration: SimpleWorker,
    job: Job,
    execution: Execution,
    exc_string: str,
) -> bool:
    """Store a failed run in one transaction (RQ: ``Worker.handle_job_failure``): a retry through
    the scheduler, or the failed registry; the execution removed, the worker's counters; then the
    dependents and the ``failed`` webhooks. True when a retry was scheduled."""
    retry = job.should_retry
    with connection.pipeline() as pipe:
        if retry:
            job.retry(queue, pipe)
        else:
            job.set_status(JobStatus.FAILED, pipeline=pipe)
            job._handle_failure(
                exc_string,
                pipeline=pipe,
                worker_name=registration.name,
                execution_id=execution.id,
                execution_started_at=execution.created_at,
                execution_ended_at=job.ended_at,
            )
        execution.delete(job=job, pipeline=pipe)
        registration.increment_failed_job_count(pipeline=pipe)
        if job.started_at and job.ended_at:
            registration.increment_total_working_time(job.ended_at - job.started_at, pipe)
        pipe.scard(job.dependents_key)
        has_dependents = pipe.execute()[-1]
    if has_dependents and not retry:
        queue.enqueue_dependents(job)
    if not retry:
        job.send_webhooks(JobStatus.FAILED, exc_string=exc_string)
    return bool(retry)
