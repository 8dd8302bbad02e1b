# mypy: disable-error-code="no-untyped-call"
"""A threaded RQ worker: ``concurrency`` jobs in flight in one process, on RQ's own data model.

Stock RQ runs one job at a time per worker process (``SimpleWorker``) or forks a process per job
(``Worker``); ADR 0007 measures both against this engine. It keeps what operators rely on: the job
hashes, the queue, the intermediate queue, ``StartedJobRegistry`` with one ``Execution`` per run,
``FinishedJobRegistry`` / ``FailedJobRegistry`` with RQ ``Result`` records, ``Retry`` through
``ScheduledJobRegistry`` and the RQ scheduler, ``on_success`` / ``on_failure`` callbacks, job
dependents, and a worker hash, so ``rq info`` and rq-dashboard show it like any RQ worker.

What it changes is the bookkeeping's cost and the recovery time of abandoned jobs:

* jobs are dequeued, fetched and marked started in batches (one round trip each per batch) and each
  job's outcome is written in one pipelined transaction, where RQ spends about a dozen round trips;
* a housekeeping thread heartbeats the executions in flight every ``HEARTBEAT_SECONDS`` with a
  short ``EXECUTION_TTL_SECONDS``, sweeps the StartedJobRegistry every ``MAINTENANCE_SECONDS``
  (RQ: every 10 minutes, against leases of 90 to 240 s) and runs the scheduler with a
  ``SCHEDULER_LOCK_SECONDS`` lease (RQ: 61 s, re-acquired every 2 minutes), so a job abandoned by
  a killed worker runs again within about 15 seconds (RQ: 13 minutes, ADR 0007).

Under faults (ADR 0014): each job of a batch is decoded on its own, and one that cannot be
decoded or names another function is dead-lettered alone (``adapters.rq.intake``,
``adapters.rq.parked``); nothing but ``stop`` ends the loop; a job more than a heartbeat past its
deadline (stuck where the watchdog cannot reach it, in libpq) is no longer heartbeaten, so it is
re-run elsewhere; jobs run on daemon threads (``adapters.rq.slots``) and ``stop`` waits at most
``DRAIN_SECONDS`` for them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import attrs
from redis import Redis
from rq import Queue
from rq.defaults import CALLBACK_TIMEOUT
from rq.executions import Execution
from rq.job import Job, JobStatus, Retry, _job_stack
from rq.registry import (
    FailedJobRegistry,
    FinishedJobRegistry,
    StartedJobRegistry,
)
from rq.utils import now
from rq.worker import WorkerStatus
from rq.worker_registration import clean_worker_registry

from adapters.rq.connection import UNAVAILABLE_ERRORS
from adapters.rq.intake import UndecodableJob, fetch_jobs
from adapters.rq.intermediate import requeue_stuck
from adapters.rq.outcomes import JobOutcome, store_failure, store_success
from adapters.rq.parked import ParkedJobs
from adapters.rq.registration import LeasedScheduler, Registration
from adapters.rq.slots import NoSignalDeathPenalty, Slots, Watchdog
from adapters.rq.spec import JobSpec

__all__ = ["JobOutcome", "RetryReturned", "ThreadedRqWorker"]

log = logging.getLogger("livesell.rq.worker")

HEARTBEAT_SECONDS = 3.0
"""How often the executions in flight and the worker hash are heartbeaten."""
EXECUTION_TTL_SECONDS = 12
"""A started job whose worker stopped heartbeating is abandoned this long after the last beat."""
MAINTENANCE_SECONDS = 3.0
"""How often one worker of the queue sweeps the registries (abandoned jobs, expired entries)."""
SCHEDULER_TICK_SECONDS = 1.0
WORKER_KEY_TTL_SECONDS = 30
"""The worker hash (``rq info``) outlives the last heartbeat by this long."""
DEQUEUE_BLOCK_SECONDS = 1
"""Longest blocking wait for a job, so a stop request is seen within a second."""
REDIS_BACKOFF_MAX_SECONDS = 4.0
"""Longest wait between takes while Redis is unreachable: work resumes within seconds of it
answering again (ADR 0013)."""
DRAIN_SECONDS = 25.0
"""On stop, how long the jobs in flight may take to finish; the ones still running then are left
to be re-run elsewhere (their executions are no longer heartbeaten). Under the runner's 30 s."""


class RetryReturned(Exception):
    """The job returned ``rq.Retry``; this engine retries only jobs that raise (ADR 0014)."""


@attrs.define
class _Running:
    job: Job
    execution: Execution
    deadline: float | None = None
    """Monotonic time after which the job overran its timeout (set when it starts)."""
    overdue: bool = False

    def past_deadline(self, moment: float, margin: float) -> bool:
        return self.deadline is not None and moment > self.deadline + margin


class ThreadedRqWorker:
    """Drains one RQ queue with ``concurrency`` jobs in flight, in threads of this process.

    ``start()`` registers the worker and its scheduler in Redis; ``run(stop)`` works until ``stop``
    is set, then lets the jobs in flight finish and unregisters. ``on_job_done`` is called in the
    worker thread after each run's outcome is stored; ``thread_initializer`` runs once in each
    worker thread. ``on_undecodable`` writes the dead letter of a job that cannot be run (raises
    when it cannot: the job then waits in the parked list and is tried again).
    """

    def __init__(
        self,
        connection: Redis,
        spec: JobSpec,
        *,
        concurrency: int,
        name: str | None = None,
        on_job_done: Callable[[JobOutcome], None] | None = None,
        thread_initializer: Callable[[], None] | None = None,
        execution_ttl: int = EXECUTION_TTL_SECONDS,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        maintenance_seconds: float = MAINTENANCE_SECONDS,
        on_undecodable: Callable[[UndecodableJob], None] | None = None,
        drain_seconds: float = DRAIN_SECONDS,
        on_tick: Callable[[float], None] | None = None,
    ) -> None:
        """``on_tick(away)`` is called every time the taking loop goes round, ``away`` being how
        long it now waits on purpose (a liveness heartbeat)."""
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if heartbeat_seconds * 2 >= execution_ttl:
            raise ValueError("the execution TTL must cover at least two heartbeats")
        self.connection = connection
        self.spec = spec
        self.concurrency = concurrency
        self.name = name or f"{socket.gethostname()}.{os.getpid()}.{os.urandom(3).hex()}"
        self.on_job_done = on_job_done
        self.thread_initializer = thread_initializer
        self.execution_ttl = execution_ttl
        self.heartbeat_seconds = heartbeat_seconds
        self.maintenance_seconds = maintenance_seconds
        self.on_undecodable = on_undecodable
        self.drain_seconds = drain_seconds
        self.on_tick = on_tick or _no_tick
        self.queue = Queue(spec.queue, connection=connection, default_timeout=spec.timeout)
        self.intermediate_key = self.queue.intermediate_queue_key
        self.parked = ParkedJobs(connection, self.queue, spec, self.name, on_undecodable)
        self._running: dict[str, _Running] = {}
        self._taken: list[str] = []
        self._lock = threading.Condition()
        self._watchdog = Watchdog()
        self._housekeeping_stop = threading.Event()
        self._housekeeping: threading.Thread | None = None
        self._slots: Slots | None = None
        self._registration: Registration | None = None
        self._scheduler: LeasedScheduler | None = None
        self.completed = 0
        self.failed = 0

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Check Redis, register the worker and its scheduler, start housekeeping.

        Raises redis' ConnectionError when Redis cannot be reached.
        """
        self.connection.ping()
        self._registration = Registration(
            [self.queue],
            name=self.name,
            connection=self.connection,
            worker_ttl=WORKER_KEY_TTL_SECONDS,
            job_monitoring_interval=int(self.heartbeat_seconds),
        )
        self._registration.register_birth()
        self._registration.heartbeat(WORKER_KEY_TTL_SECONDS)
        self._registration.set_state(WorkerStatus.STARTED)
        self._scheduler = LeasedScheduler(
            [self.queue], connection=self.connection, name=f"{self.name}.scheduler"
        )
        self._scheduler.register_birth()
        self._slots = Slots(self.concurrency, f"{self.spec.queue}-job", self.thread_initializer)
        self._housekeeping = threading.Thread(
            target=self._housekeeping_loop, name=f"{self.spec.queue}-housekeeping", daemon=True
        )
        self._housekeeping.start()

    def run(self, stop: threading.Event) -> None:
        """Take jobs until ``stop`` is set; then wait for the jobs in flight (``drain_seconds`` at
        most) and unregister. Nothing but ``stop`` ends the loop: Redis being unreachable, or
        anything else going wrong while taking jobs, is logged and retried with a backoff."""
        if self._slots is None:
            raise RuntimeError("start() the worker before run()")
        backoff = 1.0
        try:
            while not stop.is_set():
                self.on_tick(DEQUEUE_BLOCK_SECONDS)
                free = self._wait_for_free_slots(stop)
                if free == 0:
                    continue
                try:
                    self._take(free)
                    self.parked.retry_due()
                    backoff = 1.0
                except UNAVAILABLE_ERRORS as exc:
                    log.error(  # noqa: TRY400 - the cause is the message; no traceback
                        "Worker error",
                        extra={
                            "context": {"error": f"Redis unavailable: {exc}", "retryIn": backoff}
                        },
                    )
                    self.on_tick(backoff)
                    stop.wait(backoff)
                    backoff = min(backoff * 2, REDIS_BACKOFF_MAX_SECONDS)
                except Exception:
                    log.exception(
                        "Worker error",
                        extra={"context": {"stage": "taking jobs", "retryIn": backoff}},
                    )
                    stop.wait(backoff)
                    backoff = min(backoff * 2, REDIS_BACKOFF_MAX_SECONDS)
        finally:
            self._drain()

    def _drain(self) -> None:
        deadline = time.monotonic() + self.drain_seconds
        with self._lock:
            while self._running and (left := deadline - time.monotonic()) > 0:
                self._lock.wait(min(left, 0.5))
            left_running = [item.job.id for item in self._running.values()]
        if left_running:
            log.error(
                "In-flight jobs did not finish in time; they will run again on another worker",
                extra={"context": {"jobIds": left_running, "drainSeconds": self.drain_seconds}},
            )
        if self._slots is not None:
            self._slots.close()
        self._housekeeping_stop.set()
        if self._housekeeping is not None:
            self._housekeeping.join(timeout=5)
        try:
            if self._scheduler is not None:
                self._scheduler.release_locks()
                self._scheduler.register_death()
            if self._registration is not None:
                self._registration.register_death()
        except UNAVAILABLE_ERRORS as exc:
            log.warning("Could not unregister from Redis", extra={"context": {"error": str(exc)}})

    def in_flight(self) -> int:
        with self._lock:
            return len(self._running)

    # -- taking jobs -----------------------------------------------------------------------------

    def _wait_for_free_slots(self, stop: threading.Event) -> int:
        with self._lock:
            while len(self._running) >= self.concurrency and not stop.is_set():
                self.on_tick(0.2)
                self._lock.wait(0.2)
            return 0 if stop.is_set() else self.concurrency - len(self._running)

    def _dequeue_ids(self, count: int) -> list[str]:
        """Move up to ``count`` job ids to the intermediate queue, as RQ's LMOVE dequeue does."""
        with self.connection.pipeline(transaction=False) as pipe:
            for _ in range(count):
                pipe.lmove(self.queue.key, self.intermediate_key)
            ids = [_text(item) for item in pipe.execute() if item is not None]
        if ids:
            return ids
        item = self.connection.blmove(self.queue.key, self.intermediate_key, DEQUEUE_BLOCK_SECONDS)
        return [] if item is None else [_text(item)]

    def _take(self, count: int) -> None:
        # Ids moved to the intermediate queue by a take that Redis failed half way are ours:
        # start them first (RQ's intermediate-queue cleanup would otherwise fail them after 1 min).
        ids, self._taken = self._taken[:count], self._taken[count:]
        if not ids:
            ids = self._dequeue_ids(count)
        if not ids:
            return
        try:
            undecodable = self._start(ids)
        except BaseException:
            self._taken = ids + self._taken
            raise
        for item in undecodable:
            self.parked.dead_letter(item)

    def _start(self, ids: list[str]) -> list[UndecodableJob]:
        """Mark the batch's jobs started and hand them to the slots, in one transaction that also
        moves the undecodable ones from the intermediate queue to the parked list; returns those
        (RQ: ``Worker.dequeue_job_and_maintain_ttl`` then ``prepare_job_execution``, per job)."""
        fetched = fetch_jobs(self.connection, ids, self.queue.serializer, self.spec.function)
        started: list[_Running] = []
        undecodable: list[UndecodableJob] = []
        assert self._registration is not None
        with self.connection.pipeline() as pipe:
            for job_id, job in zip(ids, fetched, strict=True):
                if job is None:
                    pipe.lrem(self.intermediate_key, 1, job_id)
                    continue
                if isinstance(job, UndecodableJob):
                    pipe.lrem(self.intermediate_key, 1, job_id)
                    pipe.rpush(self.parked.key, job_id)
                    undecodable.append(job)
                    continue
                self._apply_spec_defaults(job, pipe)
                execution = Execution.create(
                    job, self.execution_ttl, pipeline=pipe, worker_name=self.name
                )
                job.prepare_for_execution(self.name, pipe)
                pipe.lrem(self.intermediate_key, 1, job.id)
                pipe.persist(job.key)
                started.append(_Running(job, execution))
            if started:
                self._registration.set_state(WorkerStatus.BUSY, pipeline=pipe)
                self._registration.set_current_job_id(started[-1].job.id, pipeline=pipe)
            pipe.execute()
        assert self._slots is not None
        for running in started:
            with self._lock:
                self._running[running.execution.id] = running
            self._slots.submit(lambda running=running: self._perform(running))  # type: ignore[misc]
        return undecodable

    def _apply_spec_defaults(self, job: Job, pipe: Any) -> None:
        """A job enqueued by another service with only the function name gets our retries, TTLs
        and failure callback, so it is retried and dead-lettered like ours."""
        if job.func_name != self.spec.function:
            return
        changed: dict[str, Any] = {}
        retry = self.spec.retry()
        if job.retries_left is None and job.retry_intervals is None and retry is not None:
            job.retries_left = retry.max
            job.retry_intervals = retry.intervals
            changed["retries_left"] = retry.max
            changed["retry_intervals"] = json.dumps(retry.intervals)
        if job._failure_callback_name is None:
            job._failure_callback_name = self.spec.failure_callback
            job._failure_callback_timeout = CALLBACK_TIMEOUT
            changed["failure_callback_name"] = self.spec.failure_callback
            changed["failure_callback_timeout"] = CALLBACK_TIMEOUT
        if job.result_ttl is None:
            job.result_ttl = self.spec.result_ttl
            changed["result_ttl"] = self.spec.result_ttl
        if job.failure_ttl is None:
            job.failure_ttl = self.spec.failure_ttl
            changed["failure_ttl"] = self.spec.failure_ttl
        if changed:
            pipe.hset(job.key, mapping=changed)

    # -- running one job -------------------------------------------------------------------------

    def _perform(self, running: _Running) -> None:
        """Run one job and store its outcome (RQ: ``Worker.perform_job``). A success callback
        that raises fails the job, as in RQ; a job returning ``Retry`` is failed loudly
        (``RetryReturned``) and retried on its schedule; RQ webhooks are sent."""
        job = running.job
        attempt_retries_left = job.retries_left
        started = time.perf_counter()
        running.deadline = time.monotonic() + (job.timeout or self.spec.timeout)
        try:
            try:
                result = self._execute(job)
                if isinstance(result, Retry):
                    raise RetryReturned(  # noqa: TRY301
                        "the job returned rq.Retry, which this engine does not honour;"
                        " raise an exception to retry on the job's schedule"
                    )
                job.ended_at = now()
                job._result = result
                job._status = JobStatus.FINISHED
                if job.success_callback:
                    job.execute_success_callback(NoSignalDeathPenalty, result)
            except Exception as exc:
                job.ended_at = now()
                exc_info = sys.exc_info()
                retry_scheduled = self._fail(running, exc_info)
                self._report(
                    running,
                    attempt_retries_left,
                    started,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_scheduled=retry_scheduled,
                    exception=exc,
                )
                return
            try:
                assert self._registration is not None
                store_success(
                    self.connection, self.queue, self._registration, job, running.execution
                )
            except UNAVAILABLE_ERRORS as exc:
                # The job's work is done (committed); only RQ's record of it is missing. Its
                # execution stays in the StartedJobRegistry without heartbeats, so the sweep
                # re-runs it once Redis is back, and the idempotent job returns the same result.
                log.error(  # noqa: TRY400 - the cause is the message; no traceback
                    "Worker error",
                    extra={
                        "context": {
                            "jobId": job.id,
                            "error": f"outcome not stored, the job will run again: {exc}",
                        }
                    },
                )
                return
            job.send_webhooks(JobStatus.FINISHED)
            self._report(running, attempt_retries_left, started, result=result)
        finally:
            with self._lock:
                self._running.pop(running.execution.id, None)
                self._lock.notify_all()

    def _execute(self, job: Job) -> object:
        _job_stack.push(job)
        try:
            self._watchdog.enter(job.timeout)
            try:
                return job._execute()
            finally:
                self._watchdog.leave()
        finally:
            _job_stack.pop()

    def _fail(self, running: _Running, exc_info: Any) -> bool:
        try:
            return self._store_failure(running, exc_info)
        except Exception:
            log.exception(
                "Worker error",
                extra={"context": {"jobId": running.job.id, "stage": "storing a failure"}},
            )
            return False

    def _store_failure(self, running: _Running, exc_info: Any) -> bool:
        """Run the failure callback, then retry (via the scheduler) or fail the job as RQ does.
        Returns True when a retry was scheduled."""
        job = running.job
        job._status = JobStatus.FAILED
        exc_string = "".join(traceback.format_exception(*exc_info))
        try:
            self._watchdog.enter(job.failure_callback_timeout)
            try:
                job.execute_failure_callback(NoSignalDeathPenalty, *exc_info)
            finally:
                self._watchdog.leave()
        except Exception:
            exc_string = "".join(traceback.format_exception(*sys.exc_info()))
        assert self._registration is not None
        return store_failure(
            self.connection,
            self.queue,
            self._registration,
            running.job,
            running.execution,
            exc_string,
        )

    def _report(
        self,
        running: _Running,
        attempt_retries_left: int | None,
        started: float,
        *,
        result: object = None,
        error: str | None = None,
        retry_scheduled: bool = False,
        exception: BaseException | None = None,
    ) -> None:
        job = running.job
        max_attempts = self.spec.max_attempts if attempt_retries_left is not None else 1
        attempts_made = max_attempts - (attempt_retries_left or 0)
        if error is None:
            self.completed += 1
        else:
            self.failed += 1
        if self.on_job_done is None:
            return
        outcome = JobOutcome(
            job_id=job.id,
            payload=job.args[0] if job.args else None,
            succeeded=error is None,
            result=result,
            error=error,
            processing_seconds=time.perf_counter() - started,
            attempts_made=attempts_made,
            attempts_remaining=max_attempts - attempts_made if retry_scheduled else 0,
            retry_scheduled=retry_scheduled,
            enqueued_at=job.enqueued_at,
            ended_at=job.ended_at or now(),
            queue=self.spec.queue,
            exception=exception,
        )
        try:
            self.on_job_done(outcome)
        except Exception:
            log.exception("Worker error", extra={"context": {"jobId": job.id, "stage": "report"}})

    # -- housekeeping ----------------------------------------------------------------------------

    def _housekeeping_loop(self) -> None:
        if self.thread_initializer is not None:
            self.thread_initializer()
        next_beat = 0.0
        next_sweep = 0.0
        while not self._housekeeping_stop.wait(SCHEDULER_TICK_SECONDS):
            self._watchdog.fire_overdue()
            moment = time.monotonic()
            try:
                if moment >= next_beat:
                    self._heartbeat()
                    next_beat = moment + self.heartbeat_seconds
                assert self._scheduler is not None
                self._scheduler.tick()
                if moment >= next_sweep:
                    self.sweep()
                    next_sweep = moment + self.maintenance_seconds
            except UNAVAILABLE_ERRORS as exc:
                log.warning(
                    "Housekeeping could not reach Redis", extra={"context": {"error": str(exc)}}
                )
            except Exception:
                log.exception("Worker error", extra={"context": {"stage": "housekeeping"}})

    def _heartbeat(self) -> None:
        """Heartbeat the worker and the executions in flight, except those past their deadline
        by more than a heartbeat: the watchdog could not stop them (a thread blocked in C), so
        their executions are let expire and the sweep re-runs them (ADR 0014)."""
        assert self._registration is not None
        moment = time.monotonic()
        with self._lock:
            running = []
            for item in self._running.values():
                if not item.past_deadline(moment, self.heartbeat_seconds):
                    running.append(item)
                elif not item.overdue:
                    item.overdue = True
                    log.error(
                        "Job overran its timeout and did not stop; it is no longer heartbeaten"
                        " and will run again",
                        extra={
                            "context": {"jobId": item.job.id, "timeoutSeconds": item.job.timeout}
                        },
                    )
        registry = StartedJobRegistry(queue=self.queue)
        with self.connection.pipeline() as pipe:
            self._registration.heartbeat(WORKER_KEY_TTL_SECONDS, pipeline=pipe)
            if not running:
                self._registration.set_state(WorkerStatus.IDLE, pipeline=pipe)
            for item in running:
                item.execution.heartbeat(registry, self.execution_ttl, pipeline=pipe)
                item.job.heartbeat(now(), self.execution_ttl, pipeline=pipe)
            pipe.execute()

    def sweep(self) -> bool:
        """Registry maintenance, by one worker of the queue per ``maintenance_seconds``: abandoned
        started jobs are failed through their callback and retried (or moved to the failed
        registry), expired entries dropped, dead workers unlisted, stuck intermediate jobs failed.
        Returns False when another worker swept recently."""
        lock = f"livesell:rq:maintenance:{self.spec.queue}"
        ttl = max(1, math.floor(self.maintenance_seconds))
        if not self.connection.set(lock, self.name, nx=True, ex=ttl):
            return False
        StartedJobRegistry(queue=self.queue, death_penalty_class=NoSignalDeathPenalty).cleanup()
        FinishedJobRegistry(queue=self.queue).cleanup()
        FailedJobRegistry(queue=self.queue).cleanup()
        clean_worker_registry(self.queue)
        requeued = requeue_stuck(self.queue)  # RQ's own cleanup: 1 minute, an attempt lost
        if requeued:
            log.warning(
                "Jobs taken but never started by a stopped worker, queued again",
                extra={"context": {"jobIds": requeued}},
            )
        return True


def _no_tick(_away: float) -> None:
    """No heartbeat was asked for."""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
