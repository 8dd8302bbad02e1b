"""What one run of a job came to, for logs, metrics and error reporting (ADR 0007); storing it
in RQ's data model is ``adapters.rq.lifecycle``'s."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

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


class JobObserver(Protocol):
    """Told of every run of a job once its outcome is stored (metrics)."""

    def job_finished(self, outcome: JobOutcome) -> None:
        """Called in an engine thread (the job's for a failure, the outcomes thread for a success,
        ADR 0026) once the outcome is stored; must not raise."""
        ...
