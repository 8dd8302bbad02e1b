"""What an outbox sender counts, and when it says so in the ``Worker metrics`` log line."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from application.outbox import BatchReport

METRICS_EVERY_MESSAGES = 100
METRICS_EVERY_SECONDS = 300.0


@attrs.define
class SenderCounters:
    """What one sender did since it started (the metrics line, the stop line). Times are the
    sender's monotonic seconds."""

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    dead: int = 0
    lost: int = 0
    expired: int = 0
    since_metrics: int = 0
    send_seconds: float = 0.0
    started: float = 0.0
    metrics_at: float = 0.0

    def restart(self, now: float) -> None:
        self.started = self.metrics_at = now

    def add(self, report: BatchReport) -> None:
        """Count what one recording stored."""
        self.sent += report.sent
        self.retried += report.retried
        self.dead += report.dead
        self.lost += report.lost
        self.expired += report.expired
        self.since_metrics += report.processed + report.lost

    def totals(self) -> dict[str, Any]:
        finished = self.sent + self.retried + self.dead
        return {
            "claimed": self.claimed,
            "completed": self.sent,
            "failed": self.retried + self.dead,
            "deadLettered": self.dead,
            "lost": self.lost,
            "expired": self.expired,
            "successRate": round(self.sent / finished, 4) if finished else None,
            "avgSendMs": round(self.send_seconds * 1000 / finished, 1) if finished else None,
        }

    def metrics_line(
        self, now: float, outbox_depth: Callable[[], Mapping[str, int] | str]
    ) -> dict[str, Any] | None:
        """The context of a ``Worker metrics`` line when one is due (``METRICS_EVERY_MESSAGES``
        outcomes or ``METRICS_EVERY_SECONDS`` since the last), else None. Only the timed line
        reads ``outbox_depth`` (the rows by status, or why they could not be read)."""
        by_count = self.since_metrics >= METRICS_EVERY_MESSAGES
        by_time = now - self.metrics_at >= METRICS_EVERY_SECONDS
        if not (by_count or by_time):
            return None
        context: dict[str, Any] = {"uptimeMs": round((now - self.started) * 1000), **self.totals()}
        if by_time:
            context["outbox"] = outbox_depth()
        self.since_metrics = 0
        self.metrics_at = now
        return context
