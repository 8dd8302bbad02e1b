# mypy: disable-error-code="no-untyped-call"
"""Undecodable jobs waiting for their dead letter (ADR 0014).

The engine moves a job it will not run (``adapters.rq.intake.UndecodableJob``) from the
intermediate queue to the list ``livesell:rq:undecodable:<queue>`` in the same transaction that
starts the batch's good jobs. ``ParkedJobs.dead_letter`` then writes its dead letter and only
after that drops it from the list and lets its hash expire with the failure TTL; a job whose dead
letter could not be written (the database is down) stays parked and ``retry_due`` tries again
every ``RETRY_SECONDS``. A claim key per job keeps two workers from writing it twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from redis import Redis
from rq import Queue
from rq.job import Job

from adapters.rq.intake import UndecodableJob, fetch_jobs
from adapters.rq.spec import JobSpec

log = logging.getLogger("livesell.rq.worker")

RETRY_SECONDS = 5.0
"""How often undecodable jobs whose dead letter could not be written are tried again."""
CLAIM_SECONDS = 60
RETRY_BATCH = 100


def parked_key(queue_name: str) -> str:
    return f"livesell:rq:undecodable:{queue_name}"


class ParkedJobs:
    def __init__(
        self,
        connection: Redis,
        queue: Queue,
        spec: JobSpec,
        owner: str,
        writer: Callable[[UndecodableJob], None] | None,
    ) -> None:
        """``writer`` writes one dead letter and raises when it cannot; ``owner`` names the
        worker in claim keys."""
        self.connection = connection
        self.queue = queue
        self.spec = spec
        self.owner = owner
        self.writer = writer
        self.key = parked_key(spec.queue)
        self._next_retry = 0.0

    def dead_letter(self, item: UndecodableJob) -> bool:
        """Write ``item``'s dead letter under a claim; False when it stays parked."""
        claim = f"{self.key}:claim:{item.job_id}"
        if not self.connection.set(claim, self.owner, nx=True, ex=CLAIM_SECONDS):
            return False  # another worker is writing it
        try:
            return self._write(item)
        finally:
            self.connection.delete(claim)

    def _write(self, item: UndecodableJob) -> bool:
        context = {"jobId": item.job_id, "reason": item.reason, "error": item.error}
        try:
            if self.writer is None:
                raise RuntimeError("no dead-letter writer for undecodable jobs")  # noqa: TRY301
            self.writer(item)
        except Exception as exc:
            context["deadLetter"] = f"not written, tried again later: {type(exc).__name__}: {exc}"
            log.error("Job rejected", extra={"context": context})  # noqa: TRY400
            return False
        with self.connection.pipeline() as pipe:
            pipe.lrem(self.key, 1, item.job_id)
            pipe.expire(Job.key_for(item.job_id), self.spec.failure_ttl)
            pipe.execute()
        log.error("Job rejected", extra={"context": context})
        return True

    def retry_due(self) -> None:
        """Every ``RETRY_SECONDS``: write the parked jobs' dead letters, oldest first, until one
        fails (the database is still down). A parked job that decodes now (its hash was fixed)
        goes back to the queue; one whose hash is gone is dropped."""
        moment = time.monotonic()
        if moment < self._next_retry:
            return
        self._next_retry = moment + RETRY_SECONDS
        for raw_id in self.connection.lrange(self.key, 0, RETRY_BATCH - 1):
            job_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            item = fetch_jobs(self.connection, [job_id], self.queue.serializer, self.spec.function)[
                0
            ]
            if isinstance(item, Job):
                with self.connection.pipeline() as pipe:
                    pipe.lrem(self.key, 1, job_id)
                    pipe.rpush(self.queue.key, job_id)
                    pipe.execute()
            elif item is None:
                self.connection.lrem(self.key, 1, job_id)
            elif not self.dead_letter(item):
                return
