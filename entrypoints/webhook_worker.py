"""The webhook-processor worker part: drains RQ queue ``webhook-processing`` (SPEC §3, §4).

``WEBHOOK_WORKER_CONCURRENCY`` jobs run at once, spread over one process per CPU the worker may
use (at most one per slot): this process and, beside it, child processes it spawns. Each process
runs its slots in threads on one container, so one database pool, reused by every job (ADR 0007
says why this model and shows the measurements). The RQ side is
``adapters.rq.worker.ThreadedRqWorker``; one process's share is
``entrypoints.webhook_processor.WebhookProcessor``; the container makes both
(``container.webhook_part``, ``container.webhook_processor``, ADR 0017). This module is process
supervision: it spawns, watches and stops the children; it decides nothing about a job.

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
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING

from entrypoints.heartbeat import Heartbeat
from entrypoints.logs import configure_logging, current_worker
from entrypoints.settings import Settings
from entrypoints.webhook_processor import (
    WORKER_NAME,
    WebhookProcessor,
    WorkerMetrics,
    name_thread,
)

if TYPE_CHECKING:  # the engine's types; the container makes the engine (ADR 0017)
    from adapters.rq.outcomes import JobObserver
    from adapters.rq.worker import ThreadedRqWorker

__all__ = ["WebhookProcessor", "WebhookWorker", "WorkerMetrics", "name_thread", "process_plan"]

log = logging.getLogger("livesell.webhook")

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
