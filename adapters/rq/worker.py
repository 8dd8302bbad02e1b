# mypy: disable-error-code="no-untyped-call"
"""A threaded RQ worker: ``concurrency`` jobs in flight in one process, on RQ's own data model.

Stock RQ runs one job at a time per worker process (``SimpleWorker``) or forks a process per job
(``Worker``); ADR 0007 measures both against this engine. It keeps what operators rely on: the job
hashes, the queue, the intermediate queue, ``StartedJobRegistry`` with one ``Execution`` per run,
``FinishedJobRegistry`` / ``FailedJobRegistry`` with RQ ``Result`` records, ``Retry`` through
``ScheduledJobRegistry`` and the RQ scheduler, ``on_success`` / ``on_failure`` callbacks, job
dependents, and a worker hash, so ``rq info`` and rq-dashboard show it like any RQ worker.

What it changes is the bookkeeping's cost and the recovery time of abandoned jobs:

* jobs are dequeued, fetched and marked started in batches (one round trip each per batch), and
  the outcomes of the jobs that succeeded are written by one outcomes thread, all those waiting in
  one transaction (ADR 0026), where RQ spends about a dozen round trips per job; a job is
  heartbeaten until its outcome is stored, so a crash in between re-runs it;
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

This class orchestrates the parts, one module per concern: taking jobs (``adapters.rq.intake``),
a job's lifecycle in RQ's data model (``adapters.rq.lifecycle``, the only module that touches
RQ's private members), housekeeping (``adapters.rq.housekeeping``: heartbeats, the scheduler,
the registries' sweep, the intermediate queue) and the watchdog (``adapters.rq.watchdog``).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs
from redis import Redis
from rq import Queue
from rq.job import JobStatus, Retry
from rq.utils import now
from rq.worker import WorkerStatus

from adapters.rq import lifecycle
from adapters.rq.connection import UNAVAILABLE_ERRORS
from adapters.rq.housekeeping import WORKER_KEY_TTL_SECONDS, Housekeeping, sweep
from adapters.rq.intake import DEQUEUE_BLOCK_SECONDS, JobIntake, UndecodableJob
from adapters.rq.outcomes import JobOutcome
from adapters.rq.parked import ParkedJobs
from adapters.rq.registration import LeasedScheduler, Registration
from adapters.rq.slots import Slots
from adapters.rq.spec import JobSpec
from adapters.rq.watchdog import Running, Watchdog

__all__ = ["JobOutcome", "RetryReturned", "ThreadedRqWorker"]

log = logging.getLogger("livesell.rq.worker")

HEARTBEAT_SECONDS = 3.0
"""How often the executions in flight and the worker hash are heartbeaten."""
EXECUTION_TTL_SECONDS = 12
"""A started job whose worker stopped heartbeating is abandoned this long after the last beat."""
MAINTENANCE_SECONDS = 3.0
"""How often one worker of the queue sweeps the registries (abandoned jobs, expired entries)."""
REDIS_BACKOFF_MAX_SECONDS = 4.0
"""Longest wait between takes while Redis is unreachable: work resumes within seconds of it
answering again (ADR 0013)."""
SETTLE_BATCH = 100
"""At most this many outcomes are stored in one transaction."""
DRAIN_SECONDS = 25.0
"""On stop, how long the jobs in flight may take to finish; the ones still running then are left
to be re-run elsewhere (their executions are no longer heartbeaten). Under the runner's 30 s."""


@attrs.frozen
class Finished:
    """A job that succeeded, waiting for its outcome to be stored."""

    running: Running
    result: object
    seconds: float
    attempt_retries_left: int | None


class RetryReturned(Exception):
    """The job returned ``rq.Retry``; this engine retries only jobs that raise (ADR 0014)."""


class ThreadedRqWorker:
    """Drains one RQ queue with ``concurrency`` jobs in flight, in threads of this process.

    ``start()`` registers the worker and its scheduler in Redis; ``run(stop)`` works until ``stop``
    is set, then lets the jobs in flight finish and unregisters. ``on_job_done`` is called after
    each run's outcome is stored: by the job's thread for a failure, by the outcomes thread for a
    success (the outcomes of a batch are stored together, ``_settle``); ``thread_initializer``
    runs once in each engine thread. ``on_undecodable`` writes the dead letter of a job that
    cannot be run (raises when it cannot: the job then waits in the parked list and is tried
    again).
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
        self.intake = JobIntake(
            connection,
            self.queue,
            spec,
            worker_name=self.name,
            execution_ttl=execution_ttl,
            parked_key=self.parked.key,
        )
        self._running: dict[str, Running] = {}
        """The jobs running in the slots, by execution id."""
        self._settling: list[Finished] = []
        """Jobs that succeeded, their outcome not stored yet: the settling thread writes those of
        a batch in one transaction (``lifecycle.handle_jobs_success``). They are heartbeaten
        until it is stored, so a crash before then re-runs them, never loses them."""
        self._settling_stop = False
        self._settler: threading.Thread | None = None
        self._lock = threading.Condition()
        self._watchdog = Watchdog()
        self._housekeeping: Housekeeping | None = None
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
        self._settler = threading.Thread(
            target=self._settle_loop, name=f"{self.spec.queue}-outcomes", daemon=True
        )
        self._settler.start()
        self._housekeeping = Housekeeping(
            self.connection,
            self.queue,
            name=self.name,
            registration=self._registration,
            scheduler=self._scheduler,
            watchdog=self._watchdog,
            in_flight=self._snapshot,
            execution_ttl=self.execution_ttl,
            heartbeat_seconds=self.heartbeat_seconds,
            maintenance_seconds=self.maintenance_seconds,
            thread_initializer=self.thread_initializer,
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
            while (self._running or self._settling) and (left := deadline - time.monotonic()) > 0:
                self._lock.wait(min(left, 0.5))
            left_running = [item.job.id for item in self._running.values()]
            left_running += [item.running.job.id for item in self._settling]
            self._settling_stop = True
            self._lock.notify_all()
        if self._settler is not None:
            self._settler.join(timeout=5)
        if left_running:
            log.error(
                "In-flight jobs did not finish in time; they will run again on another worker",
                extra={"context": {"jobIds": left_running, "drainSeconds": self.drain_seconds}},
            )
        if self._slots is not None:
            self._slots.close()
        if self._housekeeping is not None:
            self._housekeeping.stop(timeout=5)
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

    def _snapshot(self) -> list[Running]:
        with self._lock:
            return [*self._running.values(), *(item.running for item in self._settling)]

    # -- taking jobs -----------------------------------------------------------------------------

    def _wait_for_free_slots(self, stop: threading.Event) -> int:
        with self._lock:
            while len(self._running) >= self.concurrency and not stop.is_set():
                self.on_tick(0.2)
                self._lock.wait(0.2)
            return 0 if stop.is_set() else self.concurrency - len(self._running)

    def _take(self, count: int) -> None:
        assert self._registration is not None
        started, undecodable = self.intake.take(count, self._registration)
        assert self._slots is not None
        for running in started:
            with self._lock:
                self._running[running.execution.id] = running
            self._slots.submit(lambda running=running: self._perform(running))  # type: ignore[misc]
        for item in undecodable:
            self.parked.dead_letter(item)

    # -- running one job -------------------------------------------------------------------------

    def _perform(self, running: Running) -> None:
        """Run one job and store its outcome (RQ: ``Worker.perform_job``). A success callback
        that raises fails the job, as in RQ; a job returning ``Retry`` is failed loudly
        (``RetryReturned``) and retried on its schedule; RQ webhooks are sent."""
        job = running.job
        attempt_retries_left = job.retries_left
        started = time.perf_counter()
        running.deadline = time.monotonic() + (job.timeout or self.spec.timeout)
        try:
            try:
                result = lifecycle.perform(job, self._watchdog)
                if isinstance(result, Retry):
                    raise RetryReturned(  # noqa: TRY301
                        "the job returned rq.Retry, which this engine does not honour;"
                        " raise an exception to retry on the job's schedule"
                    )
                lifecycle.finish(job, result)
            except Exception as exc:
                job.ended_at = now()
                exc_info = sys.exc_info()
                retry_scheduled = self._fail(running, exc_info)
                self._report(
                    running,
                    attempt_retries_left,
                    time.perf_counter() - started,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_scheduled=retry_scheduled,
                    exception=exc,
                )
                return
            with self._lock:
                # Still heartbeaten (``_snapshot``) until the settling thread stores the outcome.
                self._settling.append(
                    Finished(running, result, time.perf_counter() - started, attempt_retries_left)
                )
        finally:
            with self._lock:
                self._running.pop(running.execution.id, None)
                self._lock.notify_all()

    # -- storing outcomes ------------------------------------------------------------------------

    def _settle_loop(self) -> None:
        """Store the outcomes of the jobs that succeeded, all those waiting in one transaction,
        until ``_drain`` ends it (after the last job in flight settled, or its grace ran out)."""
        if self.thread_initializer is not None:
            self.thread_initializer()
        while True:
            with self._lock:
                while not self._settling and not self._settling_stop:
                    self._lock.wait()
                if not self._settling:
                    return
                batch = self._settling[:SETTLE_BATCH]
            try:
                self._settle(batch)
            except Exception:
                log.exception("Worker error", extra={"context": {"stage": "storing outcomes"}})
            finally:
                with self._lock:
                    del self._settling[: len(batch)]
                    self._lock.notify_all()

    def _settle(self, batch: list[Finished]) -> None:
        assert self._registration is not None
        try:
            lifecycle.handle_jobs_success(
                self.connection,
                self.queue,
                self._registration,
                [(item.running.job, item.running.execution) for item in batch],
            )
        except UNAVAILABLE_ERRORS as exc:
            # The jobs' work is done (committed); only RQ's record of it is missing. Their
            # executions stay in the StartedJobRegistry without heartbeats, so the sweep re-runs
            # them once Redis is back, and the idempotent job returns the same result.
            log.error(  # noqa: TRY400 - the cause is the message; no traceback
                "Worker error",
                extra={
                    "context": {
                        "jobIds": [item.running.job.id for item in batch],
                        "error": f"outcome not stored, the job will run again: {exc}",
                    }
                },
            )
            return
        for item in batch:
            item.running.job.send_webhooks(JobStatus.FINISHED)
            self._report(item.running, item.attempt_retries_left, item.seconds, result=item.result)

    def _fail(self, running: Running, exc_info: Any) -> bool:
        """Run the failure callback, then retry (via the scheduler) or fail the job as RQ does.
        Returns True when a retry was scheduled."""
        job = running.job
        try:
            exc_string = lifecycle.fail(job, exc_info, self._watchdog)
            assert self._registration is not None
            return lifecycle.handle_job_failure(
                self.connection, self.queue, self._registration, job, running.execution, exc_string
            )
        except Exception:
            log.exception(
                "Worker error",
                extra={"context": {"jobId": running.job.id, "stage": "storing a failure"}},
            )
            return False

    def _report(
        self,
        running: Running,
        attempt_retries_left: int | None,
        seconds: float,
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
            processing_seconds=seconds,
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

    def sweep(self) -> bool:
        """One registry maintenance (``adapters.rq.housekeeping.sweep``); False when another
        worker swept recently."""
        return sweep(self.connection, self.queue, self.name, self.maintenance_seconds)


def _no_tick(_away: float) -> None:
    """No heartbeat was asked for."""
