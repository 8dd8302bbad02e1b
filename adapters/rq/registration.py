# mypy: disable-error-code="no-untyped-call"
"""The worker hash and the scheduler of the threaded engine (ADR 0007): RQ's own classes, used for
what ``rq info`` reads and for ``Retry`` through the ``ScheduledJobRegistry``."""

from __future__ import annotations

import logging

from redis import Redis
from rq import SimpleWorker
from rq.scheduler import RQScheduler
from rq.scripts import acquire_or_refresh_lock
from rq.utils import now

log = logging.getLogger("livesell.rq.worker")

SCHEDULER_LOCK_SECONDS = 10
"""Lease of the scheduler lock: a dead scheduler's retries move to another worker this soon."""


class Registration(SimpleWorker):
    """The worker hash and worker-set membership ``rq info`` reads; never runs a job itself."""

    def _set_connection(self, connection: Redis) -> Redis:
        # RQ raises the socket timeout to fit its long blocking dequeue; ours blocks for a second.
        return connection


class LeasedScheduler(RQScheduler):
    """RQ's scheduler, run in a thread of the worker with a short lock lease.

    ``RQScheduler.work()`` installs signal handlers and runs in a forked process; here the
    housekeeping thread calls ``tick`` every second instead, which takes the lock over as soon as a
    dead scheduler's lease expires.
    """

    def tick(self) -> None:
        owned = set()
        for name in self._queue_names:
            outcome = acquire_or_refresh_lock(
                self.connection, self.get_locking_key(name), self.name, SCHEDULER_LOCK_SECONDS
            )
            if outcome != "taken":
                owned.add(name)
                if outcome == "acquired":
                    log.debug("Acquired scheduler lock", extra={"context": {"queue": name}})
        if owned != self._acquired_locks:
            self._acquired_locks = owned
            self._scheduled_job_registries = []
        self.last_heartbeat = now()
        self.save()
        if self._acquired_locks:
            self.enqueue_scheduled_jobs()
