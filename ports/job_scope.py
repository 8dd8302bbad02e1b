"""Error reporting around one job: what the job logs at ERROR is tagged with the job's ids."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Protocol


class JobScope(Protocol):
    """``with job_scope(tags):`` runs one job's work in an error-reporting scope carrying ``tags``
    (Sentry: ``entrypoints.observability.job_scope``, ADR 0014); None values are left out."""

    def __call__(self, tags: Mapping[str, str | None], /) -> AbstractContextManager[None]: ...
