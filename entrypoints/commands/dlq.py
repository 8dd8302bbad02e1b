"""``livesell dlq list|replay``: see the dead letters and give them one more run (ADR 0009).

``list`` prints a table (or JSON for scripts). ``replay`` puts an outbox message back to
``pending`` with fresh attempts, or a webhook payload back on the ``webhook-processing`` queue, and
marks the dead letter replayed; replaying twice does nothing the second time. ``--dry-run`` says
what would happen and changes nothing.

Exit codes: 0 done; 1 a dead letter could not be replayed (queue or store unavailable, message no
longer dead) or the store is unavailable; 2 bad input (an unknown id, a bad ``--since``).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from application.dead_letters import (
    ReplayResult,
    ReplayStatus,
    find_dead_letters,
    list_dead_letters,
    replay_dead_letters,
)
from domain.dead_letters import DeadLetter, DeadLetterSource
from domain.phones import mask_phones_in
from entrypoints.commands.support import UsageError, add_actions, store_errors, utc_timestamp
from entrypoints.container import build

EXIT_NOT_REPLAYED = 1
ERROR_WIDTH = 48
DEFAULT_LIST_LIMIT = 50
DEFAULT_REPLAY_LIMIT = 1000
SOURCES = {
    "messages_out": DeadLetterSource.MESSAGES_OUT,
    "outbox": DeadLetterSource.MESSAGES_OUT,
    "webhook-processing": DeadLetterSource.WEBHOOK_PROCESSING,
    "webhook": DeadLetterSource.WEBHOOK_PROCESSING,
}
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "dlq",
        help="list and replay dead letters",
        description=(
            "Dead letters are outbound messages (source messages_out) and inbound jobs (source "
            "webhook-processing) given up on. List them, then replay them once the cause is fixed."
        ),
    )
    actions = add_actions(parser, "dlq")

    listing = actions.add_parser(
        "list",
        help="list dead letters, newest first",
        description=(
            "List dead letters, newest first: id, tenant, source, error code, error (cut short; "
            "--json has it whole, with the payload), attempts, when created and when replayed."
        ),
    )
    _add_filters(listing)
    listing.add_argument(
        "--since",
        metavar="WHEN",
        help="only those created since WHEN: ISO-8601 (2026-03-02T18:00:00Z; UTC when no offset) "
        "or an age such as 30m, 1h, 2d, 1w",
    )
    listing.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIST_LIMIT,
        metavar="N",
        help=f"at most N dead letters (default {DEFAULT_LIST_LIMIT})",
    )
    listing.add_argument("--not-replayed", action="store_true", help="only those not replayed yet")
    listing.add_argument("--json", action="store_true", help="print a JSON array, for scripts")
    listing.set_defaults(handler=list_command)

    replay = actions.add_parser(
        "replay",
        help="replay dead letters by id, or every one not replayed yet (--all)",
        description=(
            "Replay dead letters. An outbox dead letter puts its message back to pending with "
            "fresh attempts; a webhook-processing dead letter puts its payload back on the "
            "webhook-processing queue (a payload still invalid is rejected again, with a new dead "
            "letter). Each dead letter is replayed once: replaying it again does nothing."
        ),
    )
    replay.add_argument("ids", nargs="*", metavar="ID", help="dead letter ids")
    replay.add_argument(
        "--all", action="store_true", help="every dead letter not replayed yet (see the filters)"
    )
    _add_filters(replay, for_all=True)
    replay.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_REPLAY_LIMIT,
        metavar="N",
        help=f"with --all, at most the N most recent (default {DEFAULT_REPLAY_LIMIT}); they are "
        "replayed oldest first, and a second run takes the rest",
    )
    replay.add_argument(
        "--dry-run", action="store_true", help="say what would be replayed and change nothing"
    )
    replay.add_argument("--json", action="store_true", help="print a JSON array, for scripts")
    replay.set_defaults(handler=replay_command)


def _add_filters(parser: argparse.ArgumentParser, *, for_all: bool = False) -> None:
    scope = " (with --all)" if for_all else ""
    parser.add_argument(
        "--tenant", metavar="TENANT", help=f"only this tenant's dead letters{scope}"
    )
    parser.add_argument(
        "--source",
        choices=sorted(SOURCES),
        help=f"only this source{scope}: messages_out (alias outbox) or webhook-processing "
        "(alias webhook)",
    )


# -- list ---------------------------------------------------------------------------------------


@store_errors
def list_command(args: argparse.Namespace) -> int:
    container = build()
    since = parse_since(args.since, container.clock().now()) if args.since else None
    limit = _positive(args.limit, "--limit")
    letters = list_dead_letters(
        uow_factory=container.uow_factory(),
        tenant_id=args.tenant,
        source=SOURCES[args.source] if args.source else None,
        since=since,
        limit=limit,
        replayed=False if args.not_replayed else None,
    )
    if args.json:
        print(json.dumps([dead_letter_json(d) for d in letters], indent=2))
        return 0
    if not letters:
        print("No dead letters match.")
        return 0
    print(dead_letter_table(letters))
    more = " (the limit; use --limit or --since to see others)" if len(letters) == limit else ""
    waiting = sum(1 for d in letters if d.replayed_at is None)
    print(f"\n{len(letters)} dead letter(s){more}, {waiting} not replayed.")
    return 0


def parse_since(value: str, now: datetime) -> datetime:
    """``30m``, ``1h``, ``2d``, ``1w`` (before ``now``) or an ISO-8601 instant (UTC when it has no
    offset). Raises UsageError otherwise."""
    relative = _RELATIVE.match(value)
    if relative:
        amount, unit = float(relative.group(1)), relative.group(2).lower()
        return now - timedelta(**{_UNITS[unit]: amount})
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise UsageError(
            f"--since {value!r}: use ISO-8601 (2026-03-02T18:00:00Z) or an age such as "
            "30m, 1h, 2d, 1w"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def dead_letter_json(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "tenantId": letter.tenant_id,
        "source": letter.source.value,
        "sourceId": letter.source_id,
        "errorCode": letter.error_code,
        "error": letter.error,
        "attempts": letter.attempts,
        "createdAt": letter.created_at.isoformat(),
        "replayedAt": letter.replayed_at.isoformat() if letter.replayed_at else None,
        "payload": letter.payload,
    }


def dead_letter_table(letters: Sequence[DeadLetter]) -> str:
    header = ("ID", "TENANT", "SOURCE", "CODE", "ERROR", "ATTEMPTS", "CREATED", "REPLAYED")
    rows = [
        (
            d.id,
            d.tenant_id or "-",
            d.source.value,
            d.error_code or "-",
            _cut(mask_phones_in(" ".join(d.error.split())), ERROR_WIDTH),
            str(d.attempts),
            utc_timestamp(d.created_at),
            utc_timestamp(d.replayed_at) if d.replayed_at else "-",
        )
        for d in letters
    ]
    return _table(header, rows, right=frozenset({5}))


# -- replay -------------------------------------------------------------------------------------


def _check_replay(args: argparse.Namespace) -> None:
    if not args.all and not args.ids:
        raise UsageError(
            "name the dead letter ids to replay (see `livesell dlq list`), or --all for every "
            "one not replayed yet"
        )
    if args.all and args.ids:
        raise UsageError("name dead letter ids or --all, not both")
    if args.ids and (args.tenant or args.source):
        raise UsageError("--tenant and --source select dead letters for --all; not with ids")


@store_errors(check=_check_replay)
def replay_command(args: argparse.Namespace) -> int:
    container = build()
    uow_factory = container.uow_factory()
    limited = False
    if args.all:
        limit = _positive(args.limit, "--limit")
        letters = list_dead_letters(
            uow_factory=uow_factory,
            tenant_id=args.tenant,
            source=SOURCES[args.source] if args.source else None,
            limit=limit,
            replayed=False,
        )
        limited = len(letters) == limit
        letters.reverse()  # oldest first: replayed in the order they failed
    else:
        letters, missing = find_dead_letters(args.ids, uow_factory=uow_factory)
        if missing:
            raise UsageError(f"unknown dead letter id(s): {', '.join(missing)}; nothing replayed")
    results = replay_dead_letters(
        [d.id for d in letters],
        uow_factory=uow_factory,
        queue=container.inbound_queue(),
        clock=container.clock(),
        dry_run=args.dry_run,
    )
    if args.json:
        print(json.dumps([replay_json(r) for r in results], indent=2))
    elif not results:
        print("No dead letters to replay.")
    else:
        print(replay_table(results))
        print("\n" + replay_summary(results, dry_run=args.dry_run))
        if limited:
            print(f"--limit {args.limit} reached: run it again for the older dead letters.")
    return 0 if all(r.ok for r in results) else EXIT_NOT_REPLAYED


_DONE_WORDS = {
    ReplayStatus.REQUEUED: ("requeued", "would requeue"),
    ReplayStatus.ENQUEUED: ("enqueued", "would enqueue"),
    ReplayStatus.ALREADY_REPLAYED: ("already replayed", "already replayed"),
    ReplayStatus.SKIPPED: ("skipped", "would skip"),
    ReplayStatus.FAILED: ("FAILED", "FAILED"),
}


def replay_word(result: ReplayResult) -> str:
    return _DONE_WORDS[result.status][1 if result.dry_run else 0]


def replay_table(results: Sequence[ReplayResult]) -> str:
    header = ("ID", "TENANT", "SOURCE", "RESULT", "DETAIL")
    rows = [
        (r.dead_letter_id, r.tenant_id or "-", r.source.value, replay_word(r), r.detail)
        for r in results
    ]
    return _table(header, rows)


def replay_summary(results: Sequence[ReplayResult], *, dry_run: bool) -> str:
    counts = {status: sum(1 for r in results if r.status is status) for status in ReplayStatus}
    replayed = counts[ReplayStatus.REQUEUED] + counts[ReplayStatus.ENQUEUED]
    rest = (
        f"already replayed {counts[ReplayStatus.ALREADY_REPLAYED]}, "
        f"skipped {counts[ReplayStatus.SKIPPED]}, failed {counts[ReplayStatus.FAILED]}"
    )
    if dry_run:
        return f"Dry run: would replay {replayed}, {rest}. Nothing was changed."
    return f"Replayed {replayed}, {rest}."


def replay_json(result: ReplayResult) -> dict[str, Any]:
    return {
        "id": result.dead_letter_id,
        "tenantId": result.tenant_id,
        "source": result.source.value,
        "result": result.status.value,
        "dryRun": result.dry_run,
        "jobId": result.job_id,
        "detail": result.detail,
    }


# -- helpers ------------------------------------------------------------------------------------


def _positive(value: int, flag: str) -> int:
    if value < 1:
        raise UsageError(f"{flag} must be at least 1, got {value}")
    return value


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(
    header: Sequence[str], rows: Sequence[Sequence[str]], right: frozenset[int] = frozenset()
) -> str:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    last = len(header) - 1

    def line(cells: Sequence[str]) -> str:
        out = [
            cell.rjust(widths[i]) if i in right else (cell if i == last else cell.ljust(widths[i]))
            for i, cell in enumerate(cells)
        ]
        return "  ".join(out).rstrip()

    return "\n".join(line(row) for row in (header, *rows))
