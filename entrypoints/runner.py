"""``livesell worker``: run the worker parts of one service and stop them cleanly.

Each part (``webhook``, ``outbox``, ``closer``, ``reconciler``, ``spool``) is built by the
container with its collaborators (the provider PART_PROVIDERS names, ADR 0017) and runs in its own
thread; a part may run processes of its own. Signals
(``Shutdown``, installed before anything is built): the first SIGTERM/SIGINT sets ``stop`` (no new
work; in-flight work finishes, at most ``GRACE_SECONDS``), a second one exits at once. A signal
during start-up stops the start: the parts already started stop as after a signal, exit 0. A part
that dies takes the service down with a non-zero exit rather than leaving it half-alive.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from entrypoints.build_info import log_context
from entrypoints.heartbeat import Heartbeat
from entrypoints.logs import current_worker

if TYPE_CHECKING:  # the container's imports are slow; signals are installed before them
    from entrypoints.container import Container

log = logging.getLogger("livesell.runner")

GRACE_SECONDS = 30.0
PARTS: dict[str, str] = {
    "webhook": "entrypoints.webhook_worker",
    "outbox": "entrypoints.outbox_worker",
    "closer": "entrypoints.closer",
    "reconciler": "entrypoints.inbox_reconciler",
    "spool": "entrypoints.spool_drainer",
}
PART_PROVIDERS: dict[str, Callable[[Container], WorkerPart]] = {
    "webhook": lambda container: container.webhook_part(),
    "outbox": lambda container: container.outbox_part(),
    "closer": lambda container: container.closer_part(),
    "reconciler": lambda container: container.reconciler_part(),
    "spool": lambda container: container.spool_part(),
}
"""How the container makes each part in PARTS (whose values name the part's module)."""
EXIT_OK = 0
EXIT_PART_DIED = 1
EXIT_FORCED = 3


class WorkerPart(Protocol):
    """One long-running worker of the service."""

    name: str

    @property
    def heartbeat(self) -> Heartbeat:
        """Beaten by the part's loop every time round; the runner records running, stopped and
        died (``/healthz``, ADR 0015)."""
        ...

    def start(self) -> None:
        """Acquire what the part needs (connections, child processes); raise if it cannot."""
        ...

    def run(self, stop: threading.Event) -> None:
        """Work until ``stop`` is set, then finish in-flight work and return. Raising means the
        part died."""
        ...


def build_parts(container: Container, names: Sequence[str]) -> list[WorkerPart]:
    unknown = [n for n in names if n not in PARTS]
    if unknown:
        raise ValueError(
            f"unknown worker part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}"
        )
    return [PART_PROVIDERS[name](container) for name in names]


class Shutdown:
    """The signal handling of ``livesell worker``: the first SIGTERM/SIGINT sets ``stop``, a second
    one exits at once with ``EXIT_FORCED``. ``install()`` it as early as possible, so a signal
    during start-up is a stop request rather than a traceback."""

    def __init__(self, grace_seconds: float = GRACE_SECONDS) -> None:
        self.grace_seconds = grace_seconds
        self.stop = threading.Event()
        self._signals = 0

    def install(self) -> Shutdown:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        return self

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info(
                "Shutdown requested, finishing in-flight work",
                extra={
                    "context": {
                        "signal": signal.Signals(signum).name,
                        "graceSeconds": self.grace_seconds,
                    }
                },
            )
            self.stop.set()
        else:
            log.warning("Second signal: stopping at once")
            os._exit(EXIT_FORCED)


_process_shutdown: Shutdown | None = None


def process_shutdown() -> Shutdown:
    """This process's ``Shutdown``, installed on first use (``livesell worker`` asks for it
    before its command modules are even imported, and the runner uses the same one)."""
    global _process_shutdown
    if _process_shutdown is None:
        _process_shutdown = Shutdown().install()
    return _process_shutdown


class Runner:
    """Runs parts in threads; owns the exit code (and the signal handling, through
    ``Shutdown``)."""

    def __init__(
        self,
        parts: Sequence[WorkerPart],
        grace_seconds: float = GRACE_SECONDS,
        shutdown: Shutdown | None = None,
    ) -> None:
        self.parts = list(parts)
        self.shutdown = shutdown or Shutdown(grace_seconds)
        self.grace_seconds = self.shutdown.grace_seconds
        self.stop = self.shutdown.stop
        self._failed = threading.Event()

    def _run_part(self, part: WorkerPart) -> None:
        current_worker.set(part.name)
        part.heartbeat.running()
        try:
            part.run(self.stop)
        except BaseException as exc:
            part.heartbeat.died(exc)
            log.exception("Worker error", extra={"context": {"part": part.name}})
            self._failed.set()
            self.stop.set()
        else:
            part.heartbeat.stopped()

    def run(self) -> int:
        """Start the parts, run them until a signal or a dead part, stop them; the exit code.
        Raises TypeError, before anything starts, for a part without a ``Heartbeat`` (its thread
        would die on the first beat and the runner wait for it forever)."""
        self._check_parts()
        self.shutdown.install()
        started = self._start_parts()
        current_worker.set("livesell")
        threads = [
            threading.Thread(target=self._run_part, args=(part,), name=part.name, daemon=True)
            for part in started
        ]
        for thread in threads:
            thread.start()
        if not self.stop.is_set():
            log.info(
                "Worker started successfully",
                extra={
                    "context": {"parts": [p.name for p in self.parts], "pid": os.getpid()}
                    | log_context()
                },
            )
        while not self.stop.wait(0.2):
            pass
        deadline = time.monotonic() + self.grace_seconds
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in threads if t.is_alive()]
        if alive:
            log.error("In-flight work did not finish in time", extra={"context": {"parts": alive}})
            return EXIT_FORCED
        if self._failed.is_set():
            return EXIT_PART_DIED
        log.info("Worker stopped")
        return EXIT_OK

    def _check_parts(self) -> None:
        lacking = [
            getattr(part, "name", type(part).__name__)
            for part in self.parts
            if not isinstance(getattr(part, "heartbeat", None), Heartbeat)
        ]
        if lacking:
            raise TypeError(
                f"worker part(s) {', '.join(map(str, lacking))} have no heartbeat: a WorkerPart "
                "has a Heartbeat that its loop beats (entrypoints.heartbeat)"
            )

    def _start_parts(self) -> list[WorkerPart]:
        """Start the parts in order until one fails or a signal asks to stop; the started ones.
        A part that fails to start because a signal interrupted it is not an error."""
        started: list[WorkerPart] = []
        for part in self.parts:
            if self.stop.is_set():
                break
            current_worker.set(part.name)
            try:
                part.start()
            except Exception as exc:
                if not self.stop.is_set():
                    raise
                log.info(
                    "Start-up interrupted by a signal",
                    extra={"context": {"part": part.name, "error": f"{type(exc).__name__}: {exc}"}},
                )
                break
            started.append(part)
        return started
