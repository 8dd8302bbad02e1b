"""The webhook-processor worker part: drains RQ queue ``webhook-processing`` (SPEC §3, §4).

``WEBHOOK_WORKER_CONCURRENCY`` jobs run at once, spread over one process per CPU the worker may
use (at most one per slot): this process and, beside it, child processes it spawns. Each process
runs its slots in threads on one container, so one database pool, reused by every job (ADR 0007
says why this model and shows the measurements). The RQ side is
``adapters.rq.worker.ThreadedRqWorker``; ``WebhookProcessor`` wires one process's engine to its
container, installs that container for ``entrypoints.jobs`` and turns job outcomes into the log
lines and the periodic ``Worker metrics`` line of SPEC §4.

Stopping: the runner's first signal stops this process's slots and, at once, tells the children
to stop too (a message on each child's control pipe); each lets its jobs in flight finish.
Children ignore SIGINT (a Ctrl-C reaches them through the parent), stop cleanly on SIGTERM (the
whole process group signalled, as systemd, honcho or ``timeout`` do) and at once on a second one,
and exit at once when the parent dies (a second signal to the parent, or SIGKILL): their abandoned
jobs are then re-run by the workers that remain (``adapters.rq.worker``: within about 15 s).

The stop is a pipe message, not a ``multiprocessing.Event``: ``Event.set()`` waits for every
process sleeping in ``wait()`` to acknowledge, and a child that already exited on its own SIGTERM
never does, so the parent hung for its whole grace period (ADR 0014).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from entrypoints.heartbeat import Heartbeat
from entrypoints.logs import configure_logging, current_worker
from entrypoints.observability import report_exception
from entrypoints.settings import Settings
from ports.queue_monitor import QueueDepths, QueueMonitor

if TYPE_CHECKING:  # the engine's types; the container makes the engine (ADR 0017)
    from adapters.rq.outcomes import JobObserver
    from adapters.rq.worker import JobOutcome, ThreadedRqWorker

log = logging.getLogger("livesell.webhook")

WORKER_NAME = "webhook-processor"
METRICS_EVERY_JOBS = 100
METRICS_EVERY_SECONDS = 300.0
CHILD_START_SECONDS = 60.0
STOP_CHILDREN_WITHIN_SECONDS = 29.0
"""The runner waits 30 s for the parts; children still running after this are killed."""
EXIT_FORCED = 3


def process_plan(concurrency: int, cpus: int | None = None) -> list[int]:
    """Job slots per process: one process per usable CPU, at most one per slot, the slots spread
    evenly (5 slots on 2 CPUs: ``[3, 2]``). The first entry is this process's."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    processes = max(1, min(cpus or 1, concurrency))
    base, extra = divmod(concurrency, processes)
    return [base + (1 if n < extra else 0) for n in range(processes)]


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
    return ordered[index]


class WorkerMetrics:
    """Counts job runs; says when a ``Worker metrics`` line is due (every ``every_jobs`` runs or
    ``every_seconds``) and what it holds. Processing times are those since the previous line."""

    def __init__(
        self,
        every_jobs: int = METRICS_EVERY_JOBS,
        every_seconds: float = METRICS_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.every_jobs = every_jobs
        self.every_seconds = every_seconds
        self.clock = clock
        self.started = clock()
        self.completed = 0
        self.failed = 0
        self._window: list[float] = []
        self._since_line = 0
        self._last_line = self.started
        self._lock = threading.Lock()

    def record(self, outcome: JobOutcome) -> bool:
        """Count one run; True when a metrics line is due."""
        with self._lock:
            if outcome.succeeded:
                self.completed += 1
            else:
                self.failed += 1
            self._window.append(outcome.processing_seconds * 1000)
            self._since_line += 1
            if self._since_line < self.every_jobs:
                return False
            self._since_line = 0  # this caller logs the line; the others counting meanwhile don't
            return True

    def due_by_time(self) -> bool:
        with self._lock:
            return self.clock() - self._last_line >= self.every_seconds

    def snapshot(self, depth: QueueDepths | None) -> dict[str, Any]:
        """The metrics line's context; starts a new window."""
        with self._lock:
            window, self._window = self._window, []
            self._since_line = 0
            self._last_line = self.clock()
            total = self.completed + self.failed
            context: dict[str, Any] = {
                "uptimeMs": round((self._last_line - self.started) * 1000),
                "completed": self.completed,
                "failed": self.failed,
                "successRate": round(self.completed / total, 4) if total else 1.0,
                "jobsInWindow": len(window),
                "avgProcessingTimeMs": round(sum(window) / len(window), 2) if window else 0.0,
                "p95ProcessingTimeMs": round(_percentile(window, 0.95), 2),
            }
        if depth is not None:
            context["queue"] = {
                "waiting": depth.waiting,
                "active": depth.started,
                "delayed": depth.scheduled,
                "completed": depth.finished,
                "failed": depth.failed,
            }
        return context


def name_thread() -> None:
    """Names a job thread in the log lines (the engine's ``thread_initializer``)."""
    current_worker.set(WORKER_NAME)


def _ids(payload: object) -> dict[str, Any]:
    if not isinstance(payload, dict):
        return {}
    keys = ("correlationId", "tenantId", "providerMessageId")
    return {key: payload[key] for key in keys if isinstance(payload.get(key), str)}


class WebhookProcessor:
    """One process's share of the webhook worker: ``slots`` jobs in flight in its threads; each
    job run's outcome goes to every one of ``observers`` (metrics).

    The container passes what it needs (``container.webhook_processor``): ``prepare`` installs
    this process's container for the jobs and opens the pool, ``make_engine`` makes the RQ engine
    given this processor's callbacks, ``monitor`` reads the queue's depths for the ``Worker
    metrics`` line, ``queue_errors`` turns Redis errors at start into ``QueueUnavailable``."""

    name = WORKER_NAME

    def __init__(
        self,
        *,
        slots: int,
        prepare: Callable[[], None],
        make_engine: Callable[..., ThreadedRqWorker],
        monitor: QueueMonitor | None,
        queue_errors: Callable[[], AbstractContextManager[None]],
        observers: Sequence[JobObserver] = (),
    ) -> None:
        self.slots = slots
        self.prepare = prepare
        self.make_engine = make_engine
        self.monitor = monitor
        self.queue_errors = queue_errors
        self.metrics = WorkerMetrics()
        self.job_observers: list[JobObserver] = list(observers)
        self.worker: ThreadedRqWorker | None = None
        self.heartbeat = Heartbeat()

    def start(self) -> None:
        """Install this process's container for the jobs, build the pool, register in RQ.

        Raises ports.queue.QueueUnavailable when Redis cannot be reached.
        """
        self.prepare()
        # RQ's own per-job INFO lines carry no correlationId; "Job failed" says the same.
        logging.getLogger("rq.job").setLevel(logging.WARNING)
        self.worker = self.make_engine(
            concurrency=self.slots,
            on_job_done=self._on_job_done,
            on_tick=lambda away: self.heartbeat.beat(away=away),
        )
        spec = self.worker.spec
        with self.queue_errors():
            self.worker.start()
        # Everything built so far (modules, container, pool) lives as long as the process: keep
        # it out of the collector's full passes, which otherwise pause every job for ~50-90 ms.
        gc.collect()
        gc.freeze()
        log.info(
            "Worker started successfully",
            extra={
                "context": {
                    "queue": spec.queue,
                    "concurrency": self.slots,
                    "workerName": self.worker.name,
                    "pid": os.getpid(),
                    "maxAttempts": spec.max_attempts,
                    "retryIntervalsSeconds": list(spec.retry_intervals),
                }
            },
        )

    def close(self) -> None:
        """Unregister a started worker that will not run (start-up interrupted)."""
        if self.worker is not None:
            stopped = threading.Event()
            stopped.set()
            self.worker.run(stopped)

    def run(self, stop: threading.Event) -> None:
        assert self.worker is not None
        ticker = threading.Thread(
            target=self._metrics_by_time, args=(stop,), name="webhook-metrics", daemon=True
        )
        ticker.start()
        try:
            self.worker.run(stop)
        finally:
            self._log_metrics()
            log.info("Worker stopped", extra={"context": {"workerName": self.worker.name}})

    def _metrics_by_time(self, stop: threading.Event) -> None:
        while not stop.wait(5.0):
            if self.metrics.due_by_time():
                self._log_metrics()

    def _log_metrics(self) -> None:
        depth: QueueDepths | None = None
        if self.monitor is not None and self.worker is not None:
            try:
                depth = self.monitor.depths(self.worker.spec.queue)
            except ConnectionError as exc:  # QueueUnavailable
                log.warning("Queue depth unavailable", extra={"context": {"error": str(exc)}})
        log.info("Worker metrics", extra={"context": self.metrics.snapshot(depth)})

    def _on_job_done(self, outcome: JobOutcome) -> None:
        context: dict[str, Any] = {
            "jobId": outcome.job_id,
            **_ids(outcome.payload),
            "processingTimeMs": round(outcome.processing_seconds * 1000, 2),
            "attemptsMade": outcome.attempts_made,
        }
        if outcome.succeeded:
            result = outcome.result if isinstance(outcome.result, dict) else {}
            if result.get("status") == "rejected":
                context.update(outcome="rejected", reason=result.get("reason"))
                context["deadLetterId"] = result.get("deadLetterId")
            else:
                context.update(
                    outcome="processed",
                    messageType=result.get("messageType"),
                    liveSessionId=result.get("liveSessionId"),
                )
            log.info("Job completed", extra={"context": context})
        else:
            context.update(
                error=outcome.error,
                attemptsRemaining=outcome.attempts_remaining,
                willRetry=outcome.retry_scheduled,
            )
            reported = False
            if not outcome.retry_scheduled and outcome.exception is not None:
                ids = _ids(outcome.payload)
                reported = report_exception(
                    outcome.exception,
                    {
                        "queue": outcome.queue,
                        "job_id": outcome.job_id,
                        "correlationId": ids.get("correlationId"),
                        "tenant": ids.get("tenantId"),
                    },
                )
            level = logging.WARNING if outcome.retry_scheduled else logging.ERROR
            log.log(level, "Job failed", extra={"context": context, "sentry_reported": reported})
        for observer in self.job_observers:
            observer.job_finished(outcome)
        if self.metrics.record(outcome):
            self._log_metrics()


class WebhookWorker:
    """The ``webhook`` part of ``livesell worker``: this process's ``WebhookProcessor`` and the
    child processes that run the rest of ``WEBHOOK_WORKER_CONCURRENCY``."""

    name = WORKER_NAME

    def __init__(
        self,
        *,
        settings: Settings,
        make_processor: Callable[..., WebhookProcessor],
        rebuildable: bool,
        forget_process: Callable[[int], None],
        processes: int | None = None,
        observers: Sequence[JobObserver] = (),
    ) -> None:
        """``processes``: how many processes share the slots; by default one per usable CPU when
        children can rebuild the container from ``settings`` (``rebuildable``), else one.
        ``make_processor(slots=, observers=)`` makes this process's share; ``observers`` are told
        of this process's job runs, each child builds its own (``run_child``);
        ``forget_process(pid)`` drops a stopped child's metrics files."""
        self.settings = settings
        self.forget_process = forget_process
        if processes is None and not rebuildable:
            processes = 1
        self.plan = process_plan(settings.webhook_worker_concurrency, processes)
        self.local = make_processor(slots=self.plan[0], observers=observers)
        self._context = multiprocessing.get_context("spawn")
        self._children: list[BaseProcess] = []
        self._controls: list[Connection] = []
        """This end of each child's control pipe: "ready" comes back on it, "stop" goes out."""
        self._child_died = threading.Event()

    @property
    def metrics(self) -> WorkerMetrics:
        return self.local.metrics

    @property
    def heartbeat(self) -> Heartbeat:
        """This process's taking loop (a child that dies stops the part, ``_watch_children``)."""
        return self.local.heartbeat

    @property
    def worker(self) -> ThreadedRqWorker | None:
        return self.local.worker

    def start(self) -> None:
        """Start this process's slots, then the children; returns once every child is ready.

        Raises ports.queue.QueueUnavailable when Redis cannot be reached, RuntimeError when a
        child cannot start (a signal to the whole process group during start-up kills children
        still importing: the runner then knows the start was interrupted).
        """
        self.local.start()
        for index, slots in enumerate(self.plan[1:], start=1):
            ours, theirs = self._context.Pipe(duplex=True)
            child: BaseProcess = self._context.Process(
                target=run_child,
                args=(self.settings, slots, theirs),
                name=f"{WORKER_NAME}-{index}",
                daemon=False,
            )
            child.start()
            theirs.close()
            self._children.append(child)
            self._controls.append(ours)
        for child, control in zip(self._children, self._controls, strict=True):
            message = _first_message(child, control)
            if message != "ready":
                self._stop_children(deadline=time.monotonic() + 5)
                self.local.close()
                raise RuntimeError(f"webhook worker process {child.pid} did not start: {message}")
        if self._children:
            if self.settings.metrics_port is not None and not os.environ.get(
                "PROMETHEUS_MULTIPROC_DIR"
            ):
                log.warning(
                    "Webhook jobs of the child processes are not counted on METRICS_PORT;"
                    " set PROMETHEUS_MULTIPROC_DIR to count every process",
                    extra={"context": {"processes": len(self.plan)}},
                )
            log.info(
                "Worker processes started",
                extra={
                    "context": {
                        "processes": len(self.plan),
                        "slots": self.plan,
                        "pids": [os.getpid(), *(c.pid for c in self._children)],
                    }
                },
            )

    def run(self, stop: threading.Event) -> None:
        watcher = threading.Thread(
            target=self._watch_children, args=(stop,), name="webhook-children", daemon=True
        )
        watcher.start()
        threading.Thread(
            target=self._relay_stop, args=(stop,), name="webhook-stop-relay", daemon=True
        ).start()
        try:
            self.local.run(stop)
        finally:
            self._stop_children(deadline=time.monotonic() + STOP_CHILDREN_WITHIN_SECONDS)
        if self._child_died.is_set():
            raise RuntimeError("a webhook worker process died")

    def _watch_children(self, stop: threading.Event) -> None:
        sentinels = {child.sentinel: child for child in self._children}
        while sentinels and not stop.is_set():
            for ready in wait_for(list(sentinels), timeout=0.5):
                child = sentinels.pop(ready)  # type: ignore[arg-type]
                if not stop.is_set():
                    log.error(
                        "Worker error",
                        extra={
                            "context": {
                                "error": "a webhook worker process exited",
                                "pid": child.pid,
                                "exitCode": child.exitcode,
                            }
                        },
                    )
                    self._child_died.set()
                    stop.set()

    def _relay_stop(self, stop: threading.Event) -> None:
        """The children stop taking jobs at the first signal, not once this process drained."""
        stop.wait()
        self._tell_children_to_stop()

    def _tell_children_to_stop(self) -> None:
        for control in self._controls:
            with contextlib.suppress(OSError, ValueError):
                control.send("stop")

    def _stop_children(self, deadline: float) -> None:
        self._tell_children_to_stop()
        for child in self._children:
            child.join(max(0.0, deadline - time.monotonic()))
            if child.is_alive():
                log.error(
                    "In-flight work did not finish in time",
                    extra={"context": {"pid": child.pid}},
                )
                child.kill()
                child.join(5)
            if child.pid is not None:
                self.forget_process(child.pid)


def _first_message(child: BaseProcess, control: Connection) -> str:
    """What a starting child says first: "ready", its start-up error, or why it said nothing."""
    try:
        if not control.poll(CHILD_START_SECONDS):
            return "no answer"
        return str(control.recv())
    except (EOFError, OSError):
        child.join(1)
        return f"it exited during start-up (exit code {child.exitcode})"


def run_child(
    settings: Settings, slots: int, control: Connection
) -> None:  # pragma: no cover - runs in a child process (tests/e2e run it for real)
    """A child process of the webhook worker: its own container and pool, ``slots`` jobs in
    flight, until the parent says stop on ``control`` (or dies)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    local_stop = threading.Event()
    signals = 0

    def on_sigterm(_signum: int, _frame: object) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            os._exit(EXIT_FORCED)
        local_stop.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    configure_logging(settings.log_format, settings.log_level)
    current_worker.set(WORKER_NAME)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(
            target=_exit_with_parent, args=(parent.sentinel,), name="parent-watch", daemon=True
        ).start()
    from entrypoints.container import build
    from entrypoints.observability import init_sentry

    init_sentry(settings, component="worker")
    container = build(settings)
    # A child's counters reach the endpoint only through the multi-process directory.
    processor = container.webhook_processor(slots=slots, observers=container.child_part_observers())
    try:
        processor.start()
    except Exception as exc:
        control.send(f"{type(exc).__name__}: {exc}")
        raise
    control.send("ready")

    def stop_when_told() -> None:
        try:
            control.recv()
        except (EOFError, OSError):
            os._exit(EXIT_FORCED)  # the parent is gone
        local_stop.set()

    threading.Thread(target=stop_when_told, name="parent-stop", daemon=True).start()
    processor.run(local_stop)
    sys.exit(0)


def _exit_with_parent(sentinel: int) -> None:
    wait_for([sentinel])
    os._exit(EXIT_FORCED)
