"""The outbox sender: claim due messages, send them concurrently, record outcomes (ADR 0006).

``OutboxSender.run`` is one coordinating loop over ports. It **claims** ``min(batch_size,
concurrency)`` due rows whenever that many send slots are free (claimed and committed, with a
lease, before anything is sent), so a claimed message starts at once and finishes well inside
its lease; **dispatches** each claim to the ``Executor`` (a pool of ``concurrency`` threads in
production; each send paced by the per-sender-number ``RateLimiter``; a claim past its last
attempt is dead-lettered unsent); **collects** finished sends from the mailbox they post to and
**records** them once nothing else is in flight, half a claim has finished, or the oldest has
waited ``RECORD_LINGER_SECONDS`` (ADR 0029), in groups of at most ``RECORD_GROUP_LIMIT``
outcomes per transaction. A full claim is followed by the next as soon as slots are free, and
so is a recording of messages that ended (sent or dead: each releases the next message to its
recipient, ADR 0020); otherwise it **schedules the next poll** after ``poll_interval``, or just
after a retry it scheduled falls due, and waits, woken early by ``notify`` (a ``Wakeup``:
Postgres LISTEN/NOTIFY) or a finished send. An unreachable store is logged and **backed off**;
outcomes not yet recorded are kept (as copies of the claimed messages) until it is back. Once
``stop`` is set nothing new is claimed, in-flight sends finish and are recorded, then ``run``
returns.

``run_once`` is one claim-dispatch-collect-record cycle of the same steps (the simulation, the
unit tests). The rate limit holds per process: sender processes sharing a number each pace at it.
"""

from __future__ import annotations

import heapq
import logging
from collections import deque
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import partial
from typing import Any, Protocol

from application.outbox import Attempt, BatchReport, Expired, deliver, record_outcomes
from application.outbox_counters import SenderCounters
from application.outbox_pipeline import (
    _NOTIFIED,
    IDLE_TICK_SECONDS,
    MAX_STORE_BACKOFF_SECONDS,
    RECORD_GROUP_LIMIT,
    RECORD_LINGER_SECONDS,
    RETRY_MARGIN_SECONDS,
    STOP_RECORD_DEADLINE_SECONDS,
    _copy,
    _Finished,
    _no_beat,
    _no_job_scope,
    _Pipeline,
    _sum,
    store_backoff,
)
from application.service_window import Claim, claim_due_in_window, outside_window_failure
from domain.outbox import OutboxMessage, OutboxStatus
from domain.retry import RetryPolicy
from domain.service_window import DropOutsideWindow, SendTemplate
from ports.clock import Clock, IdGenerator
from ports.executor import Executor
from ports.job_scope import JobScope
from ports.messaging import MessagingProvider, RateLimiter
from ports.repositories import StoreUnavailable
from ports.unit_of_work import UnitOfWorkFactory
from ports.wakeup import StopSignal, Waiter

log = logging.getLogger("livesell.outbox")

__all__ = [
    "IDLE_TICK_SECONDS",
    "MAX_STORE_BACKOFF_SECONDS",
    "RECORD_GROUP_LIMIT",
    "RETRY_MARGIN_SECONDS",
    "STOP_RECORD_DEADLINE_SECONDS",
    "OutboxObserver",
    "OutboxSender",
    "store_backoff",
]


class OutboxObserver(Protocol):
    """Told what the sender did (metrics). ``message_sent`` is called from the thread that sent,
    ``outcomes_recorded`` from the loop; neither may raise."""

    def message_sent(self, attempt: Attempt, seconds: float) -> None: ...

    def outcomes_recorded(self, report: BatchReport) -> None: ...


class OutboxSender:
    """The production outbox sender (``livesell worker --only outbox`` runs it)."""

    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        provider: MessagingProvider,
        clock: Clock,
        ids: IdGenerator,
        policy: RetryPolicy,
        lease: timedelta,
        batch_size: int,
        concurrency: int,
        poll_interval: float,
        executor: Executor,
        waiter: Waiter,
        rate_limiter: RateLimiter | None = None,
        job_scope: JobScope = _no_job_scope,
        observers: Sequence[OutboxObserver] = (),
        heartbeat: Callable[[], None] = _no_beat,
        recipient_gap: timedelta = timedelta(0),
    ) -> None:
        self.uow_factory = uow_factory
        self.provider = provider
        self.clock = clock
        self.ids = ids
        self.policy = policy
        self.lease = lease
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.claim_size = min(batch_size, concurrency)
        self.poll_interval = poll_interval
        self.executor = executor
        self.waiter = waiter
        self.rate_limiter = rate_limiter
        self.job_scope = job_scope
        self.observers = tuple(observers)
        self.heartbeat = heartbeat
        """Called every time round the loop (a part's sign of life)."""
        self.recipient_gap = recipient_gap
        """The least time between two sends to one recipient (0: no pacing; ADR 0025)."""
        self.counters = SenderCounters()
        self.counters.restart(waiter.monotonic())
        # Finished sends and notifications, posted from other threads. A deque's append and
        # popleft are thread-safe (https://docs.python.org/3/library/collections.html#deque).
        self._mailbox: deque[_Finished | str] = deque()

    def notify(self) -> None:
        """A message was written: claim now rather than at the next poll. Thread-safe."""
        self._mailbox.append(_NOTIFIED)
        self.waiter.wake()

    # -- the loop -----------------------------------------------------------------------------

    def run(self, stop: StopSignal) -> None:
        """Claim, send and record until ``stop`` is set; then finish and record the sends in
        flight and return. Store failures are logged and backed off, never raised."""
        self.counters.restart(self.waiter.monotonic())
        state = _Pipeline()
        try:
            while not self._turn(state, stop):
                pass
        finally:
            self.executor.shutdown()

    def run_once(self) -> BatchReport:
        """One claim-dispatch-collect-record cycle: claim up to the claim size, send each claim
        (one past its last attempt is dead-lettered unsent), wait for the sends, record every
        outcome and return what was recorded (SPEC §3 "Outbox"). Store errors are raised."""
        state = _Pipeline()
        claimed = self._claim()
        if not claimed:
            return BatchReport(claimed=0, sent=0, retried=0, dead=0, lost=0)
        self._dispatch(state, claimed)
        while state.in_flight:
            self.waiter.clear()
            self._collect(state)
            if state.in_flight:
                self.waiter.wait(IDLE_TICK_SECONDS)
        report, _ = self._record(state, in_flight=0)
        return report

    def _turn(self, state: _Pipeline, stop: StopSignal) -> bool:
        """Once round the loop; True when the sender has stopped."""
        self.heartbeat()  # every wait below is IDLE_TICK_SECONDS at most
        self.waiter.clear()
        self._collect(state)
        now = self.waiter.monotonic()
        if state.unstored and state.unstored_since is None:
            state.unstored_since = now
        if state.unstored and now >= state.store_ok_at and self._record_is_due(state, now, stop):
            self._record_finished(state, now)
            return False
        if stop.is_set():
            return self._wind_down(state, now)
        if state.notified:
            state.notified = False
            state.next_poll = now
        if self._claim_is_due(state, now):
            self._claim_and_dispatch(state, now)
            return False
        self.waiter.wait(self._idle_timeout(state, now))
        return False

    # -- the steps ----------------------------------------------------------------------------

    def _record_is_due(self, state: _Pipeline, now: float, stop: StopSignal) -> bool:
        """Record now, or let the finished sends wait a little for others (ADR 0029)."""
        return (
            state.in_flight == 0
            or stop.is_set()
            or state.unstored_count * 2 >= self.claim_size
            or (
                state.unstored_since is not None
                and now >= state.unstored_since + RECORD_LINGER_SECONDS
            )
        )

    def _claim_is_due(self, state: _Pipeline, now: float) -> bool:
        due = state.backlog or now >= state.next_poll
        free = self.concurrency - state.in_flight
        return due and free >= self.claim_size and now >= state.store_ok_at

    def _claim(self) -> Sequence[Claim]:
        claimed = claim_due_in_window(
            uow_factory=self.uow_factory,
            clock=self.clock,
            lease=self.lease,
            limit=self.claim_size,
            recipient_gap=self.recipient_gap,
        )
        self.counters.claimed += len(claimed)
        return claimed

    def _claim_and_dispatch(self, state: _Pipeline, now: float) -> None:
        try:
            claimed = self._claim()
            state.store_failures = 0
        except Exception as exc:
            self._back_off(state, now, exc, "claim", pending=0)
            return
        self._dispatch(state, claimed)
        state.backlog = len(claimed) >= self.claim_size
        if not state.backlog:
            self._schedule_next_poll(state)

    def _dispatch(self, state: _Pipeline, claimed: Sequence[Claim]) -> None:
        """Hand each claim to the executor; keep those past their last attempt to dead-letter,
        those past their ``expires_at`` to record ``expired``, unsent, and record those the
        window policy drops as failed without a send (ADR 0021)."""
        now = self.clock.now()
        for claim in claimed:
            message, window = claim.message, claim.window
            if message.over_budget(self.policy):
                state.abandoned.append(message)
            elif message.is_expired(now):
                state.expired.append(message)
            elif isinstance(window, DropOutsideWindow):
                state.unrecorded.append(Attempt(message, outside_window_failure(window)))
            else:
                template = window if isinstance(window, SendTemplate) else None
                state.in_flight += 1
                self.executor.submit(partial(self._send, message, template))

    def _send(self, message: OutboxMessage, template: SendTemplate | None = None) -> None:
        """One send, on an executor's thread: deliver, tell the observers, post the attempt."""
        started = self.waiter.monotonic()
        tags = {  # what the send logs at ERROR reaches Sentry with these tags (ADR 0014)
            "queue": "messages_out",
            "job_id": message.id,
            "correlationId": message.correlation_id,
            "tenant": message.tenant_id,
        }
        with self.job_scope(tags):
            attempt = deliver(
                message,
                provider=self.provider,
                rate_limiter=self.rate_limiter,
                clock=self.clock,
                template=template,
            )
        elapsed = self.waiter.monotonic() - started
        if isinstance(attempt, Attempt):  # an expired message made no provider call
            for observer in self.observers:
                observer.message_sent(attempt, elapsed)
        self._mailbox.append(_Finished(attempt, elapsed))
        self.waiter.wake()

    def _collect(self, state: _Pipeline) -> None:
        """Take what the sends and ``notify`` posted since the last turn."""
        while self._mailbox:
            item = self._mailbox.popleft()
            if isinstance(item, _Finished):
                if isinstance(item.attempt, Expired):
                    state.expired.append(item.attempt.message)
                else:
                    state.unrecorded.append(item.attempt)
                state.in_flight -= 1
                self.counters.send_seconds += item.seconds
            else:
                state.notified = True

    def _record_finished(self, state: _Pipeline, now: float) -> None:
        try:
            report, retry_times = self._record(state, state.in_flight)
            state.store_failures = 0
        except Exception as exc:
            self._back_off(state, now, exc, "record", pending=len(state.unrecorded))
            return
        if not state.unstored:
            state.unstored_since = None
        if report.sent or report.dead or report.expired:
            # A message that ended releases the next one to its recipient (ADR 0020): claim it
            # now rather than at the next poll.
            state.next_poll = min(state.next_poll, now)
        for retry_at in retry_times:
            heapq.heappush(state.retries, retry_at)
            state.next_poll = min(state.next_poll, retry_at)

    def _record(self, state: _Pipeline, in_flight: int) -> tuple[BatchReport, list[float]]:
        """Store outcomes in groups, removing each stored group from the state's lists (a
        failure leaves the rest for the next try). Returns what was stored and when (monotonic)
        each retry it scheduled falls due."""
        attempts, abandoned, expired = state.unrecorded, state.abandoned, state.expired
        started = self.waiter.monotonic()
        reports: list[BatchReport] = []
        retry_times: list[float] = []
        while attempts or abandoned or expired:
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
                    expired=[_copy(m) for m in expired],
                )
            )
            del attempts[: len(group)]
            abandoned.clear()
            expired.clear()
            retry_times.extend(self._retry_times(fresh))
        total = _sum(reports)
        for observer in self.observers:
            observer.outcomes_recorded(total)
        self.counters.add(total)
        log.info(
            "Batch processed",
            extra={
                "context": {
                    "recorded": total.claimed,
                    "sent": total.sent,
                    "retried": total.retried,
                    "dead": total.dead,
                    "expired": total.expired,
                    "lost": total.lost,
                    "inFlight": in_flight,
                    "durationMs": round((self.waiter.monotonic() - started) * 1000, 1),
                }
            },
        )
        self._maybe_log_metrics()
        return total, retry_times

    def _retry_times(self, recorded: Sequence[Attempt]) -> list[float]:
        """When (monotonic, with the margin) each recorded retry falls due, and, when sends are
        paced (ADR 0025), when the recipient of each recorded send may be sent the next."""
        now = self.clock.now()
        gap = self.recipient_gap.total_seconds()
        times = []
        for attempt in recorded:
            message = attempt.message
            if message.status is OutboxStatus.FAILED:
                delay = (message.next_attempt_at - now).total_seconds()
                times.append(self.waiter.monotonic() + max(delay, 0.0) + RETRY_MARGIN_SECONDS)
            elif gap > 0 and message.status is OutboxStatus.SENT and message.sent_at is not None:
                delay = (message.sent_at - now).total_seconds() + gap
                times.append(self.waiter.monotonic() + max(delay, 0.0) + RETRY_MARGIN_SECONDS)
        return times

    def _schedule_next_poll(self, state: _Pipeline) -> None:
        """After a claim that was not full: poll again after the interval, or when the earliest
        retry this sender scheduled falls due if sooner."""
        now = self.waiter.monotonic()
        while state.retries and state.retries[0] <= now:
            heapq.heappop(state.retries)
        state.next_poll = now + self.poll_interval
        if state.retries:
            state.next_poll = min(state.next_poll, state.retries[0])

    def _idle_timeout(self, state: _Pipeline, now: float) -> float:
        if state.in_flight < self.concurrency and not state.backlog:
            timeout = min(max(state.next_poll - now, 0.0), IDLE_TICK_SECONDS)
        else:
            timeout = IDLE_TICK_SECONDS
        if state.store_ok_at > now:
            timeout = min(timeout, state.store_ok_at - now)
        if state.unstored and state.unstored_since is not None:
            timeout = min(timeout, state.unstored_since + RECORD_LINGER_SECONDS - now)
        return max(timeout, 0.001)

    def _wind_down(self, state: _Pipeline, now: float) -> bool:
        """A turn once ``stop`` is set: claim nothing; True once every send in flight is
        recorded, or could not be before the deadline."""
        if state.stop_deadline is None:
            state.stop_deadline = now + STOP_RECORD_DEADLINE_SECONDS
        if state.in_flight == 0 and not state.unstored:
            log.info("Outbox sender stopped", extra={"context": self.counters.totals()})
            return True
        if state.in_flight == 0 and now >= state.stop_deadline:
            log.error(
                "Outbox sender stopped with outcomes it could not record; those messages "
                "are sent again when their lease passes",
                extra={"context": {"unrecorded": state.unstored_count}},
            )
            return True
        self.waiter.wait(min(IDLE_TICK_SECONDS, max(state.store_ok_at - now, 0.01)))
        return False

    # -- store back-off -----------------------------------------------------------------------

    def _back_off(
        self, state: _Pipeline, now: float, exc: Exception, step: str, *, pending: int
    ) -> None:
        state.store_failures += 1
        state.store_ok_at = now + store_backoff(state.store_failures)
        context: dict[str, Any] = {
            "step": step,
            "consecutiveFailures": state.store_failures,
            "retryInSeconds": store_backoff(state.store_failures),
            "unrecordedOutcomes": pending,
        }
        if isinstance(exc, StoreUnavailable):
            context["error"] = str(exc)
            log.warning("Outbox store unavailable, backing off", extra={"context": context})
        else:
            log.exception("Worker error", extra={"context": context})

    # -- the metrics log line -----------------------------------------------------------------

    def _maybe_log_metrics(self) -> None:
        context = self.counters.metrics_line(self.waiter.monotonic(), self._outbox_depth)
        if context is not None:
            log.info("Worker metrics", extra={"context": context})

    def _outbox_depth(self) -> dict[str, int] | str:
        try:
            with self.uow_factory() as uow:
                depth = uow.outbox.count_by_status()
        except Exception as exc:
            return f"unavailable: {type(exc).__name__}"
        return {str(status): count for status, count in depth.items()}
