"""How a webhook-processing job is enqueued, defined once (SPEC §2, §3).

Every producer (the webhook, a dead-letter replay, the benchmark, the tests) and the worker use
these values, so a job always carries the same function, retries and time limits. A job enqueued
by a service that does not set them gets them from the worker on its first run.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
from rq.job import Callback, Retry

from domain.retry import RetryPolicy

QUEUE_NAME = "webhook-processing"
JOB_FUNCTION = "entrypoints.jobs.process_webhook_message"
FAILURE_CALLBACK = "entrypoints.jobs.on_webhook_job_failure"

JOB_TIMEOUT_SECONDS = 30
"""A job runs at most this long (the shutdown grace is 30 s too); then it fails and is retried."""
RESULT_TTL_SECONDS = 3600
"""Results of finished jobs stay an hour in RQ (``rq info``, the dashboard), then expire."""
FAILURE_TTL_SECONDS = 7 * 24 * 3600
"""Failed jobs stay a week in RQ's failed registry; the dead letter row is the durable copy."""
CALLBACK_TIMEOUT_SECONDS = 30


@attrs.frozen
class JobSpec:
    """The enqueue options of one kind of job."""

    queue: str
    function: str
    failure_callback: str
    retry_intervals: tuple[int, ...]
    timeout: int = JOB_TIMEOUT_SECONDS
    result_ttl: int = RESULT_TTL_SECONDS
    failure_ttl: int = FAILURE_TTL_SECONDS

    @classmethod
    def webhook_processing(cls, policy: RetryPolicy) -> JobSpec:
        """The webhook-processing job, retried on the domain policy's schedule (1, 2, 4, 8 s)."""
        intervals = tuple(max(1, math.ceil(delay.total_seconds())) for delay in policy.schedule())
        return cls(
            queue=QUEUE_NAME,
            function=JOB_FUNCTION,
            failure_callback=FAILURE_CALLBACK,
            retry_intervals=intervals,
        )

    @property
    def max_attempts(self) -> int:
        return len(self.retry_intervals) + 1

    def retry(self) -> Retry | None:
        if not self.retry_intervals:
            return None
        return Retry(max=len(self.retry_intervals), interval=list(self.retry_intervals))

    def enqueue_options(self) -> dict[str, Any]:
        """Keyword arguments for ``Queue.enqueue_call`` / ``Queue.prepare_data``."""
        return {
            "timeout": self.timeout,
            "result_ttl": self.result_ttl,
            "failure_ttl": self.failure_ttl,
            "retry": self.retry(),
            "on_failure": Callback(self.failure_callback, timeout=CALLBACK_TIMEOUT_SECONDS),
        }
