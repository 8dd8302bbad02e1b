"""``livesell worker``: run the worker parts of one service and stop them cleanly.

Each part (``webhook``, ``outbox``, ``closer``) is built by a ``build_part(container)`` function
named in PARTS and runs in its own thread; a part may run processes of its own. Signals:
the first SIGTERM/SIGINT sets ``stop`` (no new work; in-flight work finishes, at most
``GRACE_SECONDS``), a second one exits at once. A part that dies takes the service down with a
non-zero exit rather than leaving it half-alive.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from typing import Protocol

from entrypoints.build_info import log_context
from entrypoints.container import Container
from entrypoints.logs import current_worker

log = logging.getLogger("livesell.runner")

GRACE_SECONDS = 30.0
PARTS: dict[str, str] = {
    "webhook": "entrypoints.webhook_worker",
    "outbox": "entrypoints.outbox_worker",
    "closer": "entrypoints.closer",
    "reconciler": "entrypoints.inbox_reconciler",
}
EXIT_OK = 0
EXIT_PART_DIED = 1
EXIT_FORCED = 3


class WorkerPart(Protocol):
    """One long-running worker of the service."""

    name: str

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
    return [importlib.import_module(PARTS[name]).build_part(container) for name in names]


class Runner:
    """Runs parts in threads; owns the signal handling and the exit code."""

    def __init__(self, parts: Sequence[WorkerPart], grace_seconds: float = GRACE_SECONDS) -> None:
        self.parts = list(parts)
        self.grace_seconds = grace_seconds
        self.stop = threading.Event()
        self._failed = threading.Event()
        self._signals = 0

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

    def _run_part(self, part: WorkerPart) -> None:
        current_worker.set(part.name)
        try:
            part.run(self.stop)
        except BaseException:
            log.exception("Worker error", extra={"context": {"part": part.name}})
            self._failed.set()
            self.stop.set()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        for part in self.parts:
            current_worker.set(part.name)
            part.start()
        current_worker.set("livesell")
        threads = [
            threading.Thread(target=self._run_part, args=(part,), name=part.name, daemon=True)
            for part in self.parts
        ]
        for thread in threads:
            thread.start()
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
