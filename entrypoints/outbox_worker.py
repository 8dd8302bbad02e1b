"""The ``outbox-sender`` worker part (``livesell worker --only outbox``).

The loop that claims, sends, records and retries is ``application.outbox_sender.OutboxSender``
(ADR 0006); the container builds it with its ports (a thread pool of
``OUTBOX_SEND_CONCURRENCY`` sends, the rate limiter, the store) and chooses its wake-up
(Postgres LISTEN/NOTIFY, or none). This part starts the wake-up, runs the sender in the runner's
thread, beats the heartbeat from its loop and stops the wake-up when it returns.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from application.outbox import Attempt, BatchReport
from application.outbox_counters import SenderCounters
from application.outbox_sender import OutboxSender
from entrypoints.container import Container
from entrypoints.heartbeat import Heartbeat
from entrypoints.settings import Settings
from ports.wakeup import Wakeup

log = logging.getLogger("livesell.outbox")


class _ListedObservers:
    """An ``OutboxObserver`` that calls the part's ``send_observers`` and ``record_observers``
    (where ``entrypoints.metrics.instrument`` attaches the metrics)."""

    def __init__(self, part: OutboxSenderPart) -> None:
        self._part = part

    def message_sent(self, attempt: Attempt, seconds: float) -> None:
        for observe in self._part.send_observers:
            observe(attempt, seconds)

    def outcomes_recorded(self, report: BatchReport) -> None:
        for observe in self._part.record_observers:
            observe(report)


class OutboxSenderPart:
    """The ``outbox-sender`` part: the container's ``OutboxSender`` and its wake-up."""

    name = "outbox-sender"

    def __init__(self, container: Container) -> None:
        self.container = container
        settings = container.settings()
        assert settings is not None
        self.settings: Settings = settings
        self.heartbeat = Heartbeat()
        self.sender: OutboxSender | None = None
        self.wakeup: Wakeup | None = None
        self.send_observers: list[Callable[[Attempt, float], None]] = []
        """Called with every provider call's attempt and its duration in seconds (metrics)."""
        self.record_observers: list[Callable[[BatchReport], None]] = []
        """Called with the outcomes each recording stored (metrics)."""

    def start(self) -> None:
        sender = self.container.outbox_sender(
            observers=[_ListedObservers(self)], heartbeat=self.heartbeat.beat
        )
        self.sender = sender
        self.wakeup = self.container.outbox_wakeup(on_wake=sender.notify)
        if self.wakeup is not None:
            self.wakeup.start()

    @property
    def counters(self) -> SenderCounters:
        return self._started().counters

    def run(self, stop: threading.Event) -> None:
        sender = self._started()
        policy = sender.policy
        log.info(
            "Outbox sender worker started successfully",
            extra={
                "context": {
                    "batchSize": sender.batch_size,
                    "sendConcurrency": sender.concurrency,
                    "pollIntervalSeconds": sender.poll_interval,
                    "rateLimitPerSecond": self.settings.outbox_rate_limit_per_second,
                    "leaseSeconds": sender.lease.total_seconds(),
                    "maxAttempts": policy.max_attempts,
                    "rateLimitedMaxSeconds": policy.rate_limited_ceiling.total_seconds(),
                    "longestSendSeconds": round(self.settings.longest_send_seconds(), 3),
                    "provider": self.settings.messaging_provider,
                    "wakeup": "listen/notify" if self.wakeup is not None else "polling",
                }
            },
        )
        try:
            sender.run(stop)
        finally:
            if self.wakeup is not None:
                self.wakeup.stop()
            close = getattr(sender.provider, "close", None)  # the router: Meta's HTTP pool
            if callable(close):
                close()

    def _started(self) -> OutboxSender:
        if self.sender is None:
            raise RuntimeError("the outbox-sender part was not started")
        return self.sender


def build_part(container: Container) -> OutboxSenderPart:
    return OutboxSenderPart(container)
