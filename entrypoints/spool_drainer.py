"""The spool drainer part of ``livesell worker`` (ADR 0013): writes to the database what waited in
the durable spool while it was down (webhook requests it could not record, dead letters it could
not write), once each, and enqueues the drained messages.

A pass takes up to ``BATCH_LIMIT`` entries; an empty spool is looked at again every
``IDLE_SECONDS``, a full pass is followed by the next at once; a database still down is tried
again after a backoff of at most ``MAX_BACKOFF_SECONDS`` (``application.periodic``). Every
``RECOVER_SECONDS`` (and at start) the entries claimed by a drainer that died are given back.
Safe in several processes: each entry is claimed by one drainer, and applying one twice records
nothing twice.
"""

from __future__ import annotations

import logging
import time

from application.periodic import Pacing, PassOutcome
from application.spool import DrainReport, drain_spool
from entrypoints.periodic_part import PeriodicPart
from ports.clock import Clock, IdGenerator
from ports.queue import InboundQueue
from ports.spool import Spool, SpoolUnavailable
from ports.unit_of_work import UnitOfWorkFactory

log = logging.getLogger("livesell.spool_drainer")

BATCH_LIMIT = 200
IDLE_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 5.0
RECOVER_SECONDS = 10.0


class SpoolDrainer(PeriodicPart):
    name = "spool-drainer"

    def __init__(
        self,
        spool: Spool,
        uow_factory: UnitOfWorkFactory,
        queue: InboundQueue,
        clock: Clock,
        ids: IdGenerator,
        *,
        idle_seconds: float = IDLE_SECONDS,
        max_backoff_seconds: float = MAX_BACKOFF_SECONDS,
    ) -> None:
        self.spool = spool
        self.uow_factory = uow_factory
        self.queue = queue
        self.clock = clock
        self.ids = ids
        self.idle_seconds = idle_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.drained = 0
        self.next_recover = 0.0
        """Monotonic time from which the entries of dead drainers are due to be given back."""
        super().__init__(
            Pacing(
                interval=idle_seconds,
                backoff_base=idle_seconds,
                backoff_cap=max_backoff_seconds,
            )
        )

    def start(self) -> None:
        """Connects to nothing that must answer now: Redis may be down; the first pass says."""
        try:
            problem = self.spool.durability_problem()
        except SpoolUnavailable as exc:
            log.warning(
                "Could not check the spool's Redis settings", extra={"context": {"error": str(exc)}}
            )
        else:
            if problem:
                log.warning("The spool is not durable: " + problem)

    def run_once(self) -> DrainReport:
        report = drain_spool(
            spool=self.spool,
            uow_factory=self.uow_factory,
            queue=self.queue,
            clock=self.clock,
            ids=self.ids,
            limit=BATCH_LIMIT,
        )
        self.drained += report.drained
        if report.drained or report.store_error:
            log.log(
                logging.WARNING if report.store_error else logging.INFO,
                "Spool drained",
                extra={"context": {"drained": report.drained, "storeError": report.store_error}},
            )
        return report

    def run_pass(self) -> PassOutcome:
        self.recover_if_due()
        report = self.run_once()
        if report.store_error:
            return PassOutcome.FAILED
        return PassOutcome.MORE if report.drained >= BATCH_LIMIT else PassOutcome.DONE

    def recover_if_due(self) -> None:
        """Give back the entries a drainer that died had claimed, every ``RECOVER_SECONDS``."""
        if time.monotonic() < self.next_recover:
            return
        recovered = self.spool.recover()
        self.next_recover = time.monotonic() + RECOVER_SECONDS
        if recovered:
            log.warning(
                "Spool entries of a stopped drainer given back",
                extra={"context": {"entries": recovered}},
            )

    def pass_failed(self, error: Exception, retry_in: float, failures: int) -> None:
        if isinstance(error, SpoolUnavailable):
            log.warning("Spool unavailable", extra={"context": {"error": str(error)}})
        else:
            log.exception("Worker error", extra={"context": {"part": self.name}})

    def log_started(self) -> None:
        log.info("Spool drainer started")

    def log_stopped(self) -> None:
        log.info("Spool drainer stopped", extra={"context": {"drained": self.drained}})
