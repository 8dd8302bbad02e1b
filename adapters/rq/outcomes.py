"""What one run of a job came to, for logs, metrics and error reporting (ADR 0007); storing it
in RQ's data model is ``adapters.rq.lifecycle``'s."""

from __future__ import annotations

from datetime import datetime

import attrs


@attrs.frozen
class JobOutcome:
    """What happened to one run of a job, for logs, metrics and error reporting."""

    job_id: str
    payload: object
    succeeded: bool
    result: object
    error: str | None
    processing_seconds: float
    attempts_made: int
    attempts_remaining: int
    retry_scheduled: bool
    enqueued_at: datetime | None
    ended_at: datetime
    queue: str = ""
    exception: BaseException | None = None
    """What the job raised (its traceback attached), for error reporting."""


@attrs.frozen
class QueueDepth:
    """The queue's counters as RQ's registries hold them."""

    waiting: int
    active: int
    scheduled: int
    completed: int
    failed: int
