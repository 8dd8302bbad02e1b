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
"""

from __future__ import annotations

import ctypes
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
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import attrs
from redis import Redis
from rq import Queue, SimpleWorker
from rq.defaults import CALLBACK_TIMEOUT, DEFAULT_RESULT_TTL
from rq.executions import Execution
from rq.job import Job, JobStatus, _job_stack
from rq.registry import (
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.scheduler import RQScheduler
from rq.scripts import acquire_or_refresh_lock
from rq.timeouts import BaseDeathPenalty, JobTimeoutException
from rq.utils import now
from rq.worker import WorkerStatus
from rq.worker_registration import clean_worker_registry

from adapters.rq.connection import UNAVAILABLE_ERRORS
from adapters.rq.spec import JobSpec

log = logging.getLogger("livesell.rq.worker")

HEARTBEAT_SECONDS = 3.0
"""How often the executions in flight and the worker hash are heartbeaten."""
EXECUTION_TTL_SECONDS = 12
"""A started job whose worker stopped heartbeating is abandoned this long after the last beat."""
MAINTENANCE_SECONDS = 3.0
"""How often one worker of the queue sweeps the registries (abandoned jobs, expired entries)."""
SCHEDULER_LOCK_SECONDS = 10
"""Lease of the scheduler lock: a dead scheduler's retries move to another worker this soon."""
SCHEDULER_TICK_SECONDS = 1.0
WORKER_KEY_TTL_SECONDS = 30
"""The worker hash (``rq info``) outlives the last heartbeat by this long."""
DEQUEUE_BLOCK_SECONDS = 1
"""Longest blocking wait for a job, so a stop request is seen within a second."""
REDIS_BACKOFF_MAX_SECONDS = 30.0


class _NoSignalDeathPenalty(BaseDeathPenalty):
    """RQ's default death penalty uses SIGALRM, which only the main thread may set; callbacks run
    in worker threads here and are bounded by the watchdog instead."""

    def setup_death_penalty(self) -> None:
        return None

    def cancel_death_penalty(self) -> None:
        return None


@attrs.frozen
class JobOutcome:
    """What happened to one run of a job, for logs and metrics."""

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


@attrs.frozen
class QueueDepth:
    """The queue's counters as RQ's registries hold them."""

    waiting: int
    active: int
    scheduled: int
    completed: int
    failed: int


class _Watchdog:
    """Raises ``JobTimeoutException`` in a worker thread whose job overruns its timeout (what RQ's
    ``TimerDeathPenalty`` does, with one thread for every job instead of a timer per job)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deadlines: dict[int, tuple[float, bool]] = {}

    def enter(self, timeout: float | None) -> None:
        if timeout is None or timeout <= 0:
            return
        with self._lock:
            self._deadlines[threading.get_ident()] = (time.monotonic() + timeout, False)

    def leave(self) -> None:
        ident = threading.get_ident()
        with self._lock:
            entry = self._deadlines.pop(ident, None)
            if entry is not None and entry[1]:
                # The exception was sent but not raised yet: withdraw it.
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), None)

    def fire_overdue(self) -> int:
        fired = 0
        moment = time.monotonic()
        with self._lock:
            for ident, (deadline, sent) in list(self._deadlines.items()):
                if sent or moment < deadline:
                    continue
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(ident), ctypes.py_object(JobTimeoutException)
                )
                self._deadlines[ident] = (deadline, True)
                fired += 1
        return fired


class _Registration(SimpleWorker):
    """The worker hash and worker-set membership ``rq info`` reads; never runs a job itself."""

    def _set_connection(self, connection: Redis) -> Redis:
        # RQ raises the socket timeout to fit its long blocking dequeue; ours blocks for a second.
        return connection


@attrs.define
class _Running:
    job: Job
    execution: Execution


class _LeasedScheduler(RQScheduler):
    """RQ's scheduler, run in a thread of the worker with a short lock lease.

    ``RQScheduler.work()`` installs signal handlers and runs in a forked process; here the
    housekeeping thread calls ``tick`` every second instead, which takes the lock over as soon as a
    dead scheduler's lease expires.
    """

    def tick(self) -> None:
        owned = set()
        for name in self._queue_names:
            outcome = acquire_or_refresh_lock(
                self.connection, self.get_locking_key(name), self.name, SCHEDULER_LOCK_SECONDS
            )
            if outcome != "taken":
                owned.add(name)
                if outcome == "acquired":
                    log.debug("Acquired scheduler lock", extra={"context": {"queue": name}})
        if owned != self._acquired_locks:
            self._acquired_locks = owned
            self._scheduled_job_registries = []
        self.last_heartbeat = now()
        self.save()
        if self._acquired_locks:
            self.enqueue_scheduled_jobs()


class ThreadedRqWorker:
    """Drains one RQ queue with ``concurrency`` jobs in flight, in threads of this process.

    ``start()`` registers the worker and its scheduler in Redis; ``run(stop)`` works until ``stop``
    is set, then lets the jobs in flight finish and unregisters. ``on_job_done`` is called in the
    worker thread after each run's outcome is stored; ``thread_initializer`` runs once in each
    worker thread.
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
        self.on_tick = on_tick or _no_tick
        self.queue = Queue(spec.queue, connection=connection, default_timeout=spec.timeout)
        self.intermediate_key = self.queue.intermediate_queue_key
        self._running: dict[str, _Running] = {}
        self._taken: list[str] = []
        self._lock = threading.Condition()
        self._watchdog = _Watchdog()
        self._housekeeping_stop = threading.Event()
        self._housekeeping: threading.Thread | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._registration: _Registration | None = None
        self._scheduler: _LeasedScheduler | None = None
        self.completed = 0
        self.failed = 0

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Check Redis, register the worker and its scheduler, start housekeeping.

        Raises redis' ConnectionError when Redis cannot be reached.
        """
        self.connection.ping()
        self._registration = _Registration(
            [self.queue],
            name=self.name,
            connection=self.connection,
            worker_ttl=WORKER_KEY_TTL_SECONDS,
            job_monitoring_interval=int(self.heartbeat_seconds),
        )
        self._registration.register_birth()
        self._registration.heartbeat(WORKER_KEY_TTL_SECONDS)
        self._registration.set_state(WorkerStatus.STARTED)
        self._scheduler = _LeasedScheduler(
            [self.queue], connection=self.connection, name=f"{self.name}.scheduler"
        )
        self._scheduler.register_birth()
        self._executor = ThreadPoolExecutor(
            max_workers=self.concurrency,
            thread_name_prefix=f"{self.spec.queue}-job",
            initializer=self.thread_initializer,
        )
        self._housekeeping = threading.Thread(
            target=self._housekeeping_loop, name=f"{self.spec.queue}-housekeeping", daemon=True
        )
        self._housekeeping.start()

    def run(self, stop: threading.Event) -> None:
        """Take jobs until ``stop`` is set; then wait for the jobs in flight and unregister."""
        if self._executor is None:
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
        finally:
            self._drain()

    def _drain(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
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
            self._start(ids)
        except BaseException:
            self._taken = ids + self._taken
            raise

    def _start(self, ids: list[str]) -> None:
        jobs = Job.fetch_many(ids, connection=self.connection, serializer=self.queue.serializer)
        started: list[_Running] = []
        assert self._registration is not None
        with self.connection.pipeline() as pipe:
            for job_id, job in zip(ids, jobs, strict=True):
                if job is None:
                    pipe.lrem(self.intermediate_key, 1, job_id)
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
        assert self._executor is not None
        for running in started:
            with self._lock:
                self._running[running.job.id] = running
            self._executor.submit(self._perform, running)

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
        job = running.job
        attempt_retries_left = job.retries_left
        started = time.perf_counter()
        try:
            try:
                result = self._execute(job)
            except Exception as exc:
                job.ended_at = now()
                retry_scheduled = self._fail(running, sys.exc_info())
                self._report(
                    running,
                    attempt_retries_left,
                    started,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_scheduled=retry_scheduled,
                )
                return
            job.ended_at = now()
            job._result = result
            try:
                self._store_success(running, result)
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
            self._report(running, attempt_retries_left, started, result=result)
        finally:
            with self._lock:
                self._running.pop(job.id, None)
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

    def _store_success(self, running: _Running, result: object) -> None:
        job, execution = running.job, running.execution
        job._status = JobStatus.FINISHED
        if job.success_callback:
            job.execute_success_callback(_NoSignalDeathPenalty, result)
        assert self._registration is not None
        assert job.ended_at is not None
        assert job.started_at is not None
        result_ttl = job.get_result_ttl(DEFAULT_RESULT_TTL)
        with self.connection.pipeline() as pipe:
            if result_ttl != 0:
                job._handle_success(
                    result_ttl,
                    pipeline=pipe,
                    worker_name=self.name,
                    execution_id=execution.id,
                    execution_started_at=execution.created_at,
                    execution_ended_at=job.ended_at,
                )
            if job.repeats_left is not None and job.repeats_left > 0:
                from rq.repeat import Repeat

                Repeat.schedule(job, self.queue, pipeline=pipe)
            else:
                job.cleanup(result_ttl, pipeline=pipe, remove_from_queue=False)
            execution.delete(job=job, pipeline=pipe)
            self._registration.increment_successful_job_count(pipeline=pipe)
            self._registration.increment_total_working_time(job.ended_at - job.started_at, pipe)
            pipe.scard(job.dependents_key)
            has_dependents = pipe.execute()[-1]
        if has_dependents:
            self.queue.enqueue_dependents(job)

    def _store_failure(self, running: _Running, exc_info: Any) -> bool:
        """Run the failure callback, then retry (via the scheduler) or fail the job as RQ does.
        Returns True when a retry was scheduled."""
        job, execution = running.job, running.execution
        job._status = JobStatus.FAILED
        exc_string = "".join(traceback.format_exception(*exc_info))
        try:
            self._watchdog.enter(job.failure_callback_timeout)
            try:
                job.execute_failure_callback(_NoSignalDeathPenalty, *exc_info)
            finally:
                self._watchdog.leave()
        except Exception:
            exc_string = "".join(traceback.format_exception(*sys.exc_info()))
        retry = job.should_retry
        assert self._registration is not None
        with self.connection.pipeline() as pipe:
            if retry:
                job.retry(self.queue, pipe)
            else:
                job.set_status(JobStatus.FAILED, pipeline=pipe)
                job._handle_failure(
                    exc_string,
                    pipeline=pipe,
                    worker_name=self.name,
                    execution_id=execution.id,
                    execution_started_at=execution.created_at,
                    execution_ended_at=job.ended_at,
                )
            execution.delete(job=job, pipeline=pipe)
            self._registration.increment_failed_job_count(pipeline=pipe)
            if job.started_at and job.ended_at:
                self._registration.increment_total_working_time(job.ended_at - job.started_at, pipe)
            pipe.scard(job.dependents_key)
            has_dependents = pipe.execute()[-1]
        if has_dependents and not retry:
            self.queue.enqueue_dependents(job)
        return bool(retry)

    def _report(
        self,
        running: _Running,
        attempt_retries_left: int | None,
        started: float,
        *,
        result: object = None,
        error: str | None = None,
        retry_scheduled: bool = False,
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
        assert self._registration is not None
        with self._lock:
            running = list(self._running.values())
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
        StartedJobRegistry(queue=self.queue, death_penalty_class=_NoSignalDeathPenalty).cleanup()
        FinishedJobRegistry(queue=self.queue).cleanup()
        FailedJobRegistry(queue=self.queue).cleanup()
        clean_worker_registry(self.queue)
        assert self._registration is not None
        self.queue.intermediate_queue.cleanup(self._registration, self.queue)
        return True

    def queue_depth(self) -> QueueDepth:
        """Waiting, active (started), scheduled (retries), completed and failed jobs in RQ."""
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.llen(self.queue.key)
            pipe.zcard(StartedJobRegistry(queue=self.queue).key)
            pipe.zcard(ScheduledJobRegistry(queue=self.queue).key)
            pipe.zcard(FinishedJobRegistry(queue=self.queue).key)
            pipe.zcard(FailedJobRegistry(queue=self.queue).key)
            waiting, active, scheduled, completed, failed = pipe.execute()
        return QueueDepth(waiting, active, scheduled, completed, failed)


def _no_tick(_away: float) -> None:
    """No heartbeat was asked for."""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
