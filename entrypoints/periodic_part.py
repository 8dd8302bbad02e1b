"""The one shape of the periodic worker parts (the session closer, the inbox reconciler, the spool
drainer): a ``runner.WorkerPart`` whose ``run`` is ``application.periodic.PeriodicLoop`` over
``threading.Event``, ``time.monotonic`` and the part's heartbeat.

A part gives its name and ``Pacing``, and the ``PeriodicTask`` methods: ``run_pass`` and
``pass_failed`` (``between_passes`` does nothing unless it says otherwise); ``log_started`` and
``log_stopped`` write its first and last log lines; ``log_retry`` is the line of a pass that
raised and will be retried.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod

from application.periodic import Pacing, PassOutcome, PeriodicLoop
from entrypoints.heartbeat import Heartbeat


class PeriodicPart(ABC):
    """A part is one of these with its two ``PeriodicTask`` methods; without them it cannot be
    built (``abc``), so a part that forgot one fails when the container makes it."""

    name: str

    def __init__(self, pacing: Pacing) -> None:
        self.pacing = pacing
        self.heartbeat = Heartbeat()

    def run(self, stop: threading.Event) -> None:
        self.log_started()
        loop = PeriodicLoop(self, self.pacing, heartbeat=self.heartbeat, monotonic=time.monotonic)
        loop.run(stop)
        self.log_stopped()

    def between_passes(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Nothing to look at between passes."""

    @abstractmethod
    def run_pass(self) -> PassOutcome:
        """One pass of the part's work; what the loop does next."""

    @abstractmethod
    def pass_failed(self, error: Exception, retry_in: float, failures: int) -> None:
        """A pass raised ``error``; the next runs in ``retry_in`` s (``failures`` in a row)."""

    def log_started(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """The part's first log line, with its settings."""

    def log_stopped(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """The part's last log line, when it has one."""


def log_retry(log: logging.Logger, message: str, retry_in: float, failures: int) -> None:
    """A pass that raised, with its traceback: when the next runs, how many failed in a row."""
    log.exception(
        message, extra={"context": {"retryInSeconds": retry_in, "consecutiveFailures": failures}}
    )
