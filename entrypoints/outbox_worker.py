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
from collections.abc import Callable, Sequence

from application.outbox_counters import SenderCounters
from application.outbox_sender import OutboxObserver, OutboxSender
from entrypoints.heartbeat import Heartbeat
from ports.wakeup import Wakeup

log = logging.getLogger("livesell.outbox")


class OutboxSenderPart:
    """The ``outbox-sender`` part: an ``OutboxSender`` and its wake-up, both made at ``start``
    by the factories the container passes (``container.outbox_part``): ``make_sender`` with the
    part's observers and heartbeat, ``make_wakeup`` with the sender's ``notify`` (None where
    nothing notifies). ``facts`` are the settings its first log line shows."""

    name = "outbox-sender"

    def __init__(
        self,
        *,
        make_sender: Callable[..., OutboxSender],
        make_wakeup: Callable[..., Wakeup | None],
        observers: Sequence[OutboxObserver] = (),
        rate_limit_per_second: float | None = None,
        longest_send_seconds: float = 0.0,
        provider_name: str = "",
    ) -> None:
        self.make_sender = make_sender
        self.make_wakeup = make_wakeup
        self.observers = list(observers)
        self.rate_limit_per_second = rate_limit_per_second
        self.longest_send_seconds = longest_send_seconds
        self.provider_name = provider_name
        self.heartbeat = Heartbeat()
        self.sender: OutboxSender | None = None
        self.wakeup: Wakeup | None = None

    def start(self) -> None:
        sender = self.make_sender(observers=self.observers, heartbeat=self.heartbeat.beat)
        self.sender = sender
        self.wakeup = self.make_wakeup(on_wake=sender.notify)
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
                    "rateLimitPerSecond": self.rate_limit_per_second,
                    "leaseSeconds": sender.lease.total_seconds(),
                    "maxAttempts": policy.max_attempts,
                    "rateLimitedMaxSeconds": policy.rate_limited_ceiling.total_seconds(),
                    "longestSendSeconds": round(self.longest_send_seconds, 3),
                    "provider": self.provider_name,
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
