"""Operator use cases on dead letters: list them, and replay them once (ADR 0009).

A replay gives the work one more full run:

- an outbox dead letter (``messages_out``) puts its message back to ``pending`` with fresh
  attempts; the dead letter is marked ``replayed_at`` in the same transaction;
- a webhook-processing dead letter puts its payload back on the inbound queue. The dead letter is
  marked (a conditional write that holds its row until commit), then the payload is enqueued,
  then the transaction commits. A replay that cannot enqueue rolls back and leaves the dead letter
  as it was; a concurrent replay of the same dead letter waits on the row and then finds it
  replayed. The one remaining window, a commit that fails after the enqueue, leaves the job queued
  and the dead letter unmarked: replaying it again queues the payload once more, which is harmless
  because inbound processing is idempotent per ``(tenantId, providerMessageId)``.

Replaying a dead letter twice does nothing the second time. A dry run reads and reports what a
replay would do, and changes nothing.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime

import attrs

from application.inbox import UNKNOWN_NUMBER, tenant_for_payload
from domain.dead_letters import DeadLetter, DeadLetterSource
from domain.outbox import OutboxMessage, OutboxStatus
from ports.clock import Clock
from ports.queue import InboundQueue, QueueUnavailable
from ports.repositories import StoreUnavailable
from ports.unit_of_work import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger("livesell.dead_letters")


class ReplayStatus(enum.StrEnum):
    """What a replay did (or, in a dry run, would do) with one dead letter."""

    REQUEUED = "requeued"
    """The outbox message is ``pending`` again with fresh attempts."""
    ENQUEUED = "enqueued"
    """The webhook payload is back on the queue."""
    ALREADY_REPLAYED = "already_replayed"
    """Replayed before (or by a concurrent replay): nothing done."""
    SKIPPED = "skipped"
    """Nothing to replay: the outbox message is gone or no longer dead."""
    FAILED = "failed"
    """The replay could not be done now (queue or store unavailable); try again."""


DONE = frozenset({ReplayStatus.REQUEUED, ReplayStatus.ENQUEUED, ReplayStatus.ALREADY_REPLAYED})


@attrs.frozen(kw_only=True)
class ReplayResult:
    """One dead letter's replay: its status and a sentence saying what happened."""

    dead_letter_id: str
    source: DeadLetterSource
    tenant_id: str | None
    status: ReplayStatus
    detail: str
    dry_run: bool = False
    job_id: str | None = None

    @property
    def ok(self) -> bool:
        """True when the dead letter is (or, in a dry run, would be) replayed."""
        return self.status in DONE


def list_dead_letters(
    *,
    uow_factory: UnitOfWorkFactory,
    tenant_id: str | None = None,
    source: DeadLetterSource | None = None,
    since: datetime | None = None,
    limit: int = 100,
    replayed: bool | None = None,
) -> list[DeadLetter]:
    """The newest dead letters first, filtered as ``DeadLetterRepository.list`` says."""
    with uow_factory() as uow:
        return list(
            uow.dead_letters.list(
                tenant_id=tenant_id, source=source, since=since, limit=limit, replayed=replayed
            )
        )


def find_dead_letters(
    ids: Iterable[str], *, uow_factory: UnitOfWorkFactory
) -> tuple[list[DeadLetter], list[str]]:
    """The dead letters with these ids, in the order given (each once), and the ids not found."""
    found: list[DeadLetter] = []
    missing: list[str] = []
    seen: set[str] = set()
    with uow_factory() as uow:
        for dead_letter_id in ids:
            if dead_letter_id in seen:
                continue
            seen.add(dead_letter_id)
            letter = uow.dead_letters.get(dead_letter_id)
            if letter is None:
                missing.append(dead_letter_id)
            else:
                found.append(letter)
    return found, missing


def replay_dead_letters(
    ids: Sequence[str],
    *,
    uow_factory: UnitOfWorkFactory,
    queue: InboundQueue,
    clock: Clock,
    dry_run: bool = False,
) -> list[ReplayResult]:
    """Replay each dead letter in its own transaction (one failure does not hold back the rest)."""
    return [
        replay_dead_letter(
            dead_letter_id, uow_factory=uow_factory, queue=queue, clock=clock, dry_run=dry_run
        )
        for dead_letter_id in ids
    ]


def replay_dead_letter(
    dead_letter_id: str,
    *,
    uow_factory: UnitOfWorkFactory,
    queue: InboundQueue,
    clock: Clock,
    dry_run: bool = False,
) -> ReplayResult:
    """Replay one dead letter as the module says. Raises LookupError for an unknown id and
    StoreUnavailable when the store cannot be read."""
    with uow_factory() as uow:
        letter = uow.dead_letters.get(dead_letter_id)
        if letter is None:
            raise LookupError(f"no dead letter has id {dead_letter_id!r}")
        report = _Report(letter, dry_run)
        if letter.replayed_at is not None:
            return report(
                ReplayStatus.ALREADY_REPLAYED,
                f"already replayed at {letter.replayed_at.isoformat()}; nothing to do",
            )
        if letter.source is DeadLetterSource.MESSAGES_OUT:
            result = _replay_outbox(uow, letter, clock.now(), report)
        else:
            result = _replay_inbound(uow, letter, queue, clock.now(), report)
    if result.status in (ReplayStatus.REQUEUED, ReplayStatus.ENQUEUED) and not dry_run:
        log.info(
            "Dead letter replayed",
            extra={
                "context": {
                    "deadLetterId": letter.id,
                    "source": letter.source.value,
                    "sourceId": letter.source_id,
                    "tenantId": letter.tenant_id,
                    "outcome": result.status.value,
                    "jobId": result.job_id,
                }
            },
        )
    return result


@attrs.frozen
class _Report:
    letter: DeadLetter
    dry_run: bool

    def __call__(
        self, status: ReplayStatus, detail: str, job_id: str | None = None
    ) -> ReplayResult:
        return ReplayResult(
            dead_letter_id=self.letter.id,
            source=self.letter.source,
            tenant_id=self.letter.tenant_id,
            status=status,
            detail=detail,
            dry_run=self.dry_run,
            job_id=job_id,
        )


def _replay_outbox(
    uow: UnitOfWork, letter: DeadLetter, now: datetime, report: _Report
) -> ReplayResult:
    """Mark first, then read the message: the conditional mark holds the dead letter's row, so a
    concurrent replay of the same letter waits here and then finds it replayed."""
    if report.dry_run:
        message = _dead_message(uow, letter)
        if isinstance(message, str):
            return report(ReplayStatus.SKIPPED, message)
        return report(
            ReplayStatus.REQUEUED,
            f"would put outbox message {message.id} back to pending "
            f"(attempts {message.attempts} -> 0)",
        )
    letter.mark_replayed(now)
    if not uow.dead_letters.mark_replayed(letter):
        return report(ReplayStatus.ALREADY_REPLAYED, "replayed concurrently; nothing to do")
    message = _dead_message(uow, letter)
    if isinstance(message, str):
        return report(ReplayStatus.SKIPPED, message)  # rolled back: the mark is undone
    message.requeue(now)
    if not uow.outbox.requeue(message):
        return report(
            ReplayStatus.SKIPPED,
            f"outbox message {message.id} stopped being dead meanwhile; nothing replayed",
        )
    uow.commit()
    return report(
        ReplayStatus.REQUEUED, f"outbox message {message.id} is pending again with fresh attempts"
    )


def _dead_message(uow: UnitOfWork, letter: DeadLetter) -> OutboxMessage | str:
    """The dead outbox message the letter holds, or why there is nothing to replay."""
    message = (
        uow.outbox.get(letter.tenant_id, letter.source_id) if letter.tenant_id is not None else None
    )
    if message is None:
        return f"outbox message {letter.source_id} not found"
    if message.status is not OutboxStatus.DEAD:
        return f"outbox message {message.id} is {message.status.value}, not dead; nothing to replay"
    return message


def _replay_inbound(
    uow: UnitOfWork, letter: DeadLetter, queue: InboundQueue, now: datetime, report: _Report
) -> ReplayResult:
    payload = letter.payload
    if letter.error_code == UNKNOWN_NUMBER and letter.tenant_id is None:
        # Kept because no tenant had the number it was sent to: the tenant added since owns it.
        owner = tenant_for_payload(uow, dict(payload))
        if owner is None:
            return report(
                ReplayStatus.FAILED,
                f"not replayed, still no tenant has the number {payload.get('to')!r}",
            )
        payload = {**payload, "tenantId": owner}
    claimed = payload.get("tenantId")
    tenant = letter.tenant_id or (claimed if isinstance(claimed, str) else "(no tenant)")
    target = f"{tenant}/{letter.source_id}"
    if report.dry_run:
        return report(
            ReplayStatus.ENQUEUED,
            f"would enqueue payload {target} on {DeadLetterSource.WEBHOOK_PROCESSING.value}",
        )
    letter.mark_replayed(now)
    if not uow.dead_letters.mark_replayed(letter):
        return report(ReplayStatus.ALREADY_REPLAYED, "replayed concurrently; nothing to do")
    try:
        job_id = queue.enqueue(payload)
    except QueueUnavailable as exc:
        return report(ReplayStatus.FAILED, f"not replayed, the queue is unavailable: {exc}")
    try:
        uow.commit()
    except StoreUnavailable as exc:
        return report(
            ReplayStatus.FAILED,
            f"enqueued as job {job_id} but the replay was not recorded ({exc}); replaying it "
            "again enqueues it again, which is harmless (processing is idempotent)",
            job_id,
        )
    queue_name = DeadLetterSource.WEBHOOK_PROCESSING.value
    return report(
        ReplayStatus.ENQUEUED, f"payload {target} enqueued on {queue_name} as job {job_id}", job_id
    )
