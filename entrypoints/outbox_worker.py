"""The outbox-sender worker part: claim due messages, send them concurrently, record outcomes.

One coordinating thread runs a pipeline (ADR 0006):

- **claim** ``min(OUTBOX_BATCH_SIZE, OUTBOX_SEND_CONCURRENCY)`` due rows whenever that many send
  slots are free (the repository claims with ``FOR UPDATE SKIP LOCKED``, sets the lease and
  commits before anything is sent). Never more than ``OUTBOX_SEND_CONCURRENCY`` messages are
  claimed and unfinished, so a claimed message starts at once and finishes well inside its lease;
- **send** on a pool of ``OUTBOX_SEND_CONCURRENCY`` threads, each paced by the per-sender-number
  rate limiter (``OUTBOX_RATE_LIMIT_PER_SECOND``) before calling the provider;
- **record** finished sends in small groups, each group one transaction with its events and dead
  letters (``application.outbox.record_outcomes``), as soon as they finish: the sends still in
  flight never wait for the slowest one of a batch.

When a claim came back full the next claim follows as soon as slots are free; otherwise the loop
waits ``OUTBOX_POLL_INTERVAL_SECONDS``, woken early by a NOTIFY on ``messages_out`` (Postgres) or
when a retry it scheduled falls due. A store that cannot be reached is logged, backed off and
retried; outcomes not yet recorded are kept and recorded once it is back. On ``stop`` nothing new
is claimed, in-flight sends finish and are recorded, then ``run`` returns.

The rate limit holds per process: several sender processes sharing one sender number each pace
at ``OUTBOX_RATE_LIMIT_PER_SECOND``, so set it to the number's limit divided by the number of
processes (ADR 0006).
"""

from __future__ import annotations

import heapq
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, Protocol

import attrs

from application.outbox import (
    Attempt,
    BatchReport,
    claim_due_messages,
    deliver,
    record_outcomes,
)
from domain.outbox import OutboxMessage, OutboxStatus
from domain.retry import RetryPolicy
from entrypoints.container import Container
from entrypoints.heartbeat import Heartbeat
from entrypoints.logs import current_worker
from entrypoints.observability import job_scope
from ports.clock import Clock, IdGenerator
from ports.messaging import MessagingProvider, RateLimiter
from ports.repositories import StoreUnavailable
from ports.unit_of_work import UnitOfWorkFactory

log = logging.getLogger("livesell.outbox")

RECORD_GROUP_LIMIT = 200
"""At most this many outcomes per recording transaction."""
MAX_STORE_BACKOFF_SECONDS = 5.0
STOP_RECORD_DEADLINE_SECONDS = 20.0
"""On stop, how long unrecorded outcomes are retried against an unreachable store (the runner
allows 30 s in all)."""
METRICS_EVERY_MESSAGES = 100
METRICS_EVERY_SECONDS = 300.0
RETRY_MARGIN_SECONDS = 0.02
"""Claim a retry this much after it falls due, so the claim's clock surely sees it due."""
IDLE_TICK_SECONDS = 0.2
"""The longest the loop sleeps without looking at ``stop``."""


class Wakeup(Protocol):
    """Something that calls back when a message is written (``PostgresOutboxWakeup``)."""

    def start(self) -> None: ...

    def stop(self, timeout: float = 2.0) -> None: ...


@attrs.define
class _Counters:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    dead: int = 0
    lost: int = 0
    since_metrics: int = 0
    send_seconds: float = 0.0


class OutboxSender:
    """The ``outbox-sender`` part (``livesell worker --only outbox``)."""

    name = "outbox-sender"

    def __init__(
        self,
        container: Container,
        *,
        wakeup_factory: Callable[[Callable[[], None]], Wakeup | None] | None = None,
    ) -> None:
        self.container = container
        settings = container.settings()
        assert settings is not None
        self.settings = settings
        self.batch_size = settings.outbox_batch_size
        self.concurrency = settings.outbox_send_concurrency
        self.claim_size = min(self.batch_size, self.concurrency)
        self.poll_interval = settings.outbox_poll_interval_seconds
        self._wakeup_factory = wakeup_factory or self._postgres_wakeup
        self._wake = threading.Event()
        self._notified = threading.Event()
        self._done: queue.SimpleQueue[Attempt] = queue.SimpleQueue()
        self.counters = _Counters()
        self._counter_lock = threading.Lock()
        self.wakeup: Wakeup | None = None
        self.send_observers: list[Callable[[Attempt, float], None]] = []
        """Called with every provider call's attempt and its duration in seconds (metrics)."""
        self.record_observers: list[Callable[[BatchReport], None]] = []
        """Called with the outcomes each ``_record`` stored (metrics)."""
        self.heartbeat = Heartbeat()

    def _postgres_wakeup(self, on_wake: Callable[[], None]) -> Wakeup | None:
        if not self.settings.database_url.startswith("postgresql"):
            return None
        from adapters.sqlalchemy.notify import PostgresOutboxWakeup

        return PostgresOutboxWakeup(self.settings.database_url, on_wake)

    def start(self) -> None:
        self.uow_factory: UnitOfWorkFactory = self.container.uow_factory()
        self.provider: MessagingProvider = self.container.messaging_provider()
        self.rate_limiter: RateLimiter = self.container.rate_limiter()
        self.clock: Clock = self.container.clock()
        self.ids: IdGenerator = self.container.ids()
        self.policy: RetryPolicy = self.container.retry_policy()
        self.lease: timedelta = self.container.outbox_lease()
        self.wakeup = self._wakeup_factory(self.notify)
        if self.wakeup is not None:
            self.wakeup.start()

    def notify(self) -> None:
        """A message was written: claim now rather than at the next poll."""
        self._notified.set()
        self._wake.set()

    # -- the loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        log.info(
            "Outbox sender worker started successfully",
            extra={
                "context": {
                    "batchSize": self.batch_size,
                    "sendConcurrency": self.concurrency,
                    "pollIntervalSeconds": self.poll_interval,
                    "rateLimitPerSecond": self.settings.outbox_rate_limit_per_second,
                    "leaseSeconds": self.lease.total_seconds(),
                    "maxAttempts": self.policy.max_attempts,
                    "rateLimitedMaxSeconds": self.policy.rate_limited_ceiling.total_seconds(),
                    "longestSendSeconds": round(self.settings.longest_send_seconds(), 3),
                    "provider": self.settings.messaging_provider,
                    "wakeup": "listen/notify" if self.wakeup is not None else "polling",
                }
            },
        )
        worker = current_worker.get()
        executor = ThreadPoolExecutor(
            max_workers=self.concurrency,
            thread_name_prefix="outbox-send",
            initializer=current_worker.set,
            initargs=(worker,),
        )
        try:
            self._loop(stop, executor)
        finally:
            executor.shutdown(wait=True)
            if self.wakeup is not None:
                self.wakeup.stop()

    def _loop(self, stop: threading.Event, executor: ThreadPoolExecutor) -> None:
        in_flight = 0
        unrecorded: list[Attempt] = []
        abandoned: list[OutboxMessage] = []
        backlog = True  # claim at once on start
        next_poll = 0.0
        retries: list[float] = []  # when (monotonic) the retries this sender scheduled fall due
        store_ok_at = 0.0
        store_failures = 0
        stop_deadline: float | None = None
        self._started = time.monotonic()
        self._metrics_at = self._started

        while True:
            self.heartbeat.beat()  # every wait below is IDLE_TICK_SECONDS at most
            self._wake.clear()
            while True:
                try:
                    unrecorded.append(self._done.get_nowait())
                    in_flight -= 1
                except queue.Empty:
                    break
            now = time.monotonic()

            if (unrecorded or abandoned) and now >= store_ok_at:
                try:
                    for retry_at in self._record(unrecorded, abandoned, in_flight):
                        heapq.heappush(retries, retry_at)
                        next_poll = min(next_poll, retry_at)
                    store_failures = 0
                except Exception as exc:
                    store_failures += 1
                    store_ok_at = now + self._backoff(store_failures)
                    self._log_store_error(exc, "record", store_failures, len(unrecorded))
                continue

            if stop.is_set():
                if stop_deadline is None:
                    stop_deadline = now + STOP_RECORD_DEADLINE_SECONDS
                if in_flight == 0 and not unrecorded and not abandoned:
                    log.info("Outbox sender stopped", extra={"context": self._totals()})
                    return
                if in_flight == 0 and now >= stop_deadline:
                    log.error(
                        "Outbox sender stopped with outcomes it could not record; those messages "
                        "are sent again when their lease passes",
                        extra={"context": {"unrecorded": len(unrecorded) + len(abandoned)}},
                    )
                    return
                self._wake.wait(min(IDLE_TICK_SECONDS, max(store_ok_at - now, 0.01)))
                continue

            if self._notified.is_set():
                self._notified.clear()
                next_poll = now
            free = self.concurrency - in_flight
            due = backlog or now >= next_poll
            if due and free >= self.claim_size and now >= store_ok_at:
                try:
                    claimed = claim_due_messages(
                        uow_factory=self.uow_factory,
                        clock=self.clock,
                        lease=self.lease,
                        limit=self.claim_size,
                    )
                    store_failures = 0
                except Exception as exc:
                    store_failures += 1
                    store_ok_at = now + self._backoff(store_failures)
                    self._log_store_error(exc, "claim", store_failures, 0)
                    continue
                self.counters.claimed += len(claimed)
                for message in claimed:
                    if message.over_budget(self.policy):
                        abandoned.append(message)
                    else:
                        executor.submit(self._send, message)
                        in_flight += 1
                backlog = len(claimed) >= self.claim_size
                if not backlog:
                    now = time.monotonic()
                    while retries and retries[0] <= now:
                        heapq.heappop(retries)
                    next_poll = now + self.poll_interval
                    if retries:
                        next_poll = min(next_poll, retries[0])
                continue

            if in_flight < self.concurrency and not backlog:
                timeout = min(max(next_poll - now, 0.0), IDLE_TICK_SECONDS)
            else:
                timeout = IDLE_TICK_SECONDS
            if store_ok_at > now:
                timeout = min(timeout, store_ok_at - now)
            self._wake.wait(max(timeout, 0.001))

    def _send(self, message: OutboxMessage) -> None:
        started = time.perf_counter()
        with job_scope(  # what the send logs at ERROR reaches Sentry with these tags (ADR 0014)
            {
                "queue": "messages_out",
                "job_id": message.id,
                "correlationId": message.correlation_id,
                "tenant": message.tenant_id,
            }
        ):
            attempt = deliver(message, provider=self.provider, rate_limiter=self.rate_limiter)
        elapsed = time.perf_counter() - started
        with self._counter_lock:
            self.counters.send_seconds += elapsed
        for observe in self.send_observers:
            observe(attempt, elapsed)
        self._done.put(attempt)
        self._wake.set()

    def _record(
        self, attempts: list[Attempt], abandoned: list[OutboxMessage], in_flight: int
    ) -> list[float]:
        """Store outcomes in groups, removing each stored group from the lists (a failure leaves
        the rest for the next try). Returns when (monotonic) each scheduled retry falls due."""
        started = time.perf_counter()
        reports: list[BatchReport] = []
        retry_times: list[float] = []
        while attempts or abandoned:
            group = attempts[:RECORD_GROUP_LIMIT]
            # record_outcomes changes the messages it is given: hand it copies, so a group whose
            # transaction failed can be recorded again from the claimed state.
            fresh = [Attempt(_copy(a.message), a.result) for a in group]
            reports.append(
                record_outcomes(
                    fresh,
                    uow_factory=self.uow_factory,
                    clock=self.clock,
                    ids=self.ids,
                    policy=self.policy,
                    abandoned=[_copy(m) for m in abandoned],
                )
            )
            del attempts[: len(group)]
            abandoned.clear()
            now = self.clock.now()
            for attempt in fresh:
                message = attempt.message
                if message.status is OutboxStatus.FAILED:
                    delay = (message.next_attempt_at - now).total_seconds()
                    retry_times.append(time.monotonic() + max(delay, 0.0) + RETRY_MARGIN_SECONDS)
        total = _sum(reports)
        for observe in self.record_observers:
            observe(total)
        self.counters.sent += total.sent
        self.counters.retried += total.retried
        self.counters.dead += total.dead
        self.counters.lost += total.lost
        self.counters.since_metrics += total.processed + total.lost
        log.info(
            "Batch processed",
            extra={
                "context": {
                    "recorded": total.claimed,
                    "sent": total.sent,
                    "retried": total.retried,
                    "dead": total.dead,
                    "lost": total.lost,
                    "inFlight": in_flight,
                    "durationMs": round((time.perf_counter() - started) * 1000, 1),
                }
            },
        )
        self._maybe_log_metrics()
        return retry_times

    def _maybe_log_metrics(self) -> None:
        now = time.monotonic()
        by_count = self.counters.since_metrics >= METRICS_EVERY_MESSAGES
        by_time = now - self._metrics_at >= METRICS_EVERY_SECONDS
        if not (by_count or by_time):
            return
        context: dict[str, Any] = {
            "uptimeMs": round((now - self._started) * 1000),
            **self._totals(),
        }
        if by_time:
            try:
                with self.uow_factory() as uow:
                    depth = uow.outbox.count_by_status()
                context["outbox"] = {str(status): count for status, count in depth.items()}
            except Exception as exc:
                context["outbox"] = f"unavailable: {type(exc).__name__}"
        log.info("Worker metrics", extra={"context": context})
        self.counters.since_metrics = 0
        self._metrics_at = now

    def _totals(self) -> dict[str, Any]:
        c = self.counters
        finished = c.sent + c.retried + c.dead
        return {
            "claimed": c.claimed,
            "completed": c.sent,
            "failed": c.retried + c.dead,
            "deadLettered": c.dead,
            "lost": c.lost,
            "successRate": round(c.sent / finished, 4) if finished else None,
            "avgSendMs": round(c.send_seconds * 1000 / finished, 1) if finished else None,
        }

    def _backoff(self, failures: int) -> float:
        return float(min(MAX_STORE_BACKOFF_SECONDS, 0.25 * 2 ** min(failures - 1, 6)))

    def _log_store_error(self, exc: Exception, step: str, failures: int, pending: int) -> None:
        context = {
            "step": step,
            "consecutiveFailures": failures,
            "retryInSeconds": self._backoff(failures),
            "unrecordedOutcomes": pending,
        }
        if isinstance(exc, StoreUnavailable):
            context["error"] = str(exc)
            log.warning("Outbox store unavailable, backing off", extra={"context": context})
        else:
            log.exception("Worker error", extra={"context": context})


def _copy(message: OutboxMessage) -> OutboxMessage:
    return attrs.evolve(message, events=[])


def _sum(reports: Sequence[BatchReport]) -> BatchReport:
    return BatchReport(
        claimed=sum(r.claimed for r in reports),
        sent=sum(r.sent for r in reports),
        retried=sum(r.retried for r in reports),
        dead=sum(r.dead for r in reports),
        lost=sum(r.lost for r in reports),
    )


def build_part(container: Container) -> OutboxSender:
    return OutboxSender(container)
