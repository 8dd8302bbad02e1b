# mypy: disable-error-code="no-untyped-call"
"""A job's lifecycle in RQ's data model, one function per RQ step (ADR 0007, 0014).

This is the one module of the engine that touches RQ's private members (``Job._status``,
``Job._result``, ``Job._execute``, ``Job._handle_success``, ``Job._handle_failure``, the failure
callback's private fields, ``rq.job._job_stack``). Each function names the ``rq`` method it
mirrors, and ``MIRRORS`` lists them: when ``rq`` is upgraded from ``AUDITED_RQ_VERSION``, compare
each function with the method it names in the new release (``tests/unit/test_rq_audit.py`` fails
until ``AUDITED_RQ_VERSION`` says that was done). The engine batches and pipelines what RQ does
in a dozen round trips per job; the order of the writes, and what they write, are RQ's.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from redis import Redis
from rq import Queue, SimpleWorker
from rq.defaults import CALLBACK_TIMEOUT, DEFAULT_RESULT_TTL
from rq.executions import Execution
from rq.job import Job, JobStatus, _job_stack
from rq.registry import StartedJobRegistry
from rq.utils import now
from rq.worker import WorkerStatus

from adapters.rq.spec import JobSpec
from adapters.rq.watchdog import NoSignalDeathPenalty, Watchdog

AUDITED_RQ_VERSION = "2.12.0"
"""The ``rq`` release whose methods the functions below were compared with."""

MIRRORS = {
    "apply_spec_defaults": "Job.create (retry, on_failure, result_ttl, failure_ttl)",
    "prepare_job_execution": "Worker.prepare_execution, Worker.prepare_job_execution",
    "perform": "Job.perform (Job._execute under Worker.perform_job's death penalty)",
    "finish": "Worker.perform_job (success: Job._result, FINISHED, Job.execute_success_callback)",
    "fail": "Worker.perform_job (failure: FAILED, Job.execute_failure_callback)",
    "handle_jobs_success": "Worker.handle_job_success (a batch of jobs in one transaction)",
    "handle_job_failure": "Worker.handle_job_failure",
    "maintain_heartbeats": "Worker.maintain_heartbeats",
}
"""Each function of this module and the ``rq`` methods it mirrors."""


def apply_spec_defaults(job: Job, spec: JobSpec, pipe: Any) -> None:
    """RQ: what ``Job.create`` sets from ``retry``, ``on_failure``, ``result_ttl`` and
    ``failure_ttl``. A job enqueued by another service with only the function name gets our
    retries, TTLs and failure callback, so it is retried and dead-lettered like ours."""
    if job.func_name != spec.function:
        return
    changed: dict[str, Any] = {}
    retry = spec.retry()
    if job.retries_left is None and job.retry_intervals is None and retry is not None:
        job.retries_left = retry.max
        job.retry_intervals = retry.intervals
        changed["retries_left"] = retry.max
        changed["retry_intervals"] = json.dumps(retry.intervals)
    if job._failure_callback_name is None:
        job._failure_callback_name = spec.failure_callback
        job._failure_callback_timeout = CALLBACK_TIMEOUT
        changed["failure_callback_name"] = spec.failure_callback
        changed["failure_callback_timeout"] = CALLBACK_TIMEOUT
    if job.result_ttl is None:
        job.result_ttl = spec.result_ttl
        changed["result_ttl"] = spec.result_ttl
    if job.failure_ttl is None:
        job.failure_ttl = spec.failure_ttl
        changed["failure_ttl"] = spec.failure_ttl
    if changed:
        pipe.hset(job.key, mapping=changed)


def prepare_job_execution(
    job: Job, pipe: Any, *, worker_name: str, execution_ttl: int, intermediate_key: str
) -> Execution:
    """RQ: ``Worker.prepare_execution`` (the ``Execution`` in the StartedJobRegistry), then
    ``Worker.prepare_job_execution`` (``Job.prepare_for_execution``, the id removed from the
    intermediate queue) and the ``persist`` of ``Job.perform``, in the batch's transaction."""
    execution = Execution.create(job, execution_ttl, pipeline=pipe, worker_name=worker_name)
    job.prepare_for_execution(worker_name, pipe)
    pipe.lrem(intermediate_key, 1, job.id)
    pipe.persist(job.key)
    return execution


def perform(job: Job, watchdog: Watchdog) -> object:
    """RQ: ``Job.perform``: ``Job._execute`` with the job on RQ's job stack (what
    ``get_current_job`` reads), bounded by the watchdog where ``Worker.perform_job`` uses its
    death penalty."""
    _job_stack.push(job)
    try:
        watchdog.enter(job.timeout)
        try:
            return job._execute()
        finally:
            watchdog.leave()
    finally:
        _job_stack.pop()


def finish(job: Job, result: object) -> None:
    """RQ: ``Worker.perform_job`` once ``Job.perform`` returned: the result and the ``FINISHED``
    status on the job, then ``Job.execute_success_callback`` (a callback that raises fails the
    job, as in RQ)."""
    job.ended_at = now()
    job._result = result
    job._status = JobStatus.FINISHED
    if job.success_callback:
        job.execute_success_callback(NoSignalDeathPenalty, result)


def fail(job: Job, exc_info: Any, watchdog: Watchdog) -> str:
    """RQ: ``Worker.perform_job`` once the job raised: the ``FAILED`` status on the job, then
    ``Job.execute_failure_callback`` under the watchdog. Returns the traceback to store: the
    job's, or the callback's when it raised."""
    job._status = JobStatus.FAILED
    exc_string = "".join(traceback.format_exception(*exc_info))
    try:
        watchdog.enter(job.failure_callback_timeout)
        try:
            job.execute_failure_callback(NoSignalDeathPenalty, *exc_info)
        finally:
            watchdog.leave()
    except Exception:
        exc_string = "".join(traceback.format_exception(*sys.exc_info()))
    return exc_string


def handle_jobs_success(
    connection: Redis,
    queue: Queue,
    registration: SimpleWorker,
    done: Sequence[tuple[Job, Execution]],
) -> list[bool]:
    """RQ: ``Worker.handle_job_success``, for a batch of finished jobs in one transaction (one
    round trip where RQ spends one per job): each job's result, repeats or cleanup, and execution
    removed; the worker's counters once for the batch (RQ's ``successful_job_count`` and
    ``total_working_time`` fields, incremented by the batch's totals); then the dependents of the
    jobs that have some. Returns, per job, whether it had dependents."""
    if not done:
        return []
    working = 0.0
    replies: list[int] = []
    with connection.pipeline() as pipe:
        for job, execution in done:
            assert job.ended_at is not None
            assert job.started_at is not None
            result_ttl = job.get_result_ttl(DEFAULT_RESULT_TTL)
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
            working += (job.ended_at - job.started_at).total_seconds()
            pipe.scard(job.dependents_key)
            replies.append(len(pipe) - 1)
        pipe.hincrby(registration.key, "successful_job_count", len(done))
        pipe.hincrbyfloat(registration.key, "total_working_time", working)
        results = pipe.execute()
    dependents = [bool(results[index]) for index in replies]
    for (job, _execution), has_dependents in zip(done, dependents, strict=True):
        if has_dependents:
            queue.enqueue_dependents(job)
    return dependents


def handle_job_failure(
    connection: Redis,
    queue: Queue,
    registration: SimpleWorker,
    job: Job,
    execution: Execution,
    exc_string: str,
) -> bool:
    """RQ: ``Worker.handle_job_failure``, in one transaction: a retry through the scheduler, or
    the failed registry; the execution removed, the worker's counters; then the dependents and
    the ``failed`` webhooks. True when a retry was scheduled."""
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


def maintain_heartbeats(
    connection: Redis,
    queue: Queue,
    registration: SimpleWorker,
    in_flight: Sequence[tuple[Job, Execution]],
    *,
    execution_ttl: int,
    worker_ttl: int,
) -> None:
    """RQ: ``Worker.maintain_heartbeats``, for every job in flight in one transaction: the worker
    hash (idle when nothing runs), each execution and each job."""
    registry = StartedJobRegistry(queue=queue)
    with connection.pipeline() as pipe:
        registration.heartbeat(worker_ttl, pipeline=pipe)
        if not in_flight:
            registration.set_state(WorkerStatus.IDLE, pipeline=pipe)
        for job, execution in in_flight:
            execution.heartbeat(registry, execution_ttl, pipeline=pipe)
            job.heartbeat(now(), execution_ttl, pipeline=pipe)
        pipe.execute()
