"""``livesell stats [--json]``: the queue, the outbox, dead letters and live sessions at a glance.

The two sources are read independently: with Redis unreachable the database figures still print
and the queue section says ``unavailable`` (and the other way round). Exit codes: 0 when both were
read, 1 when either was unavailable (what was read is still printed), 2 bad configuration. The
queue is read through the ``QueueMonitor`` port, as ``/metrics`` reads it; this command imports no
Prometheus code.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from application.stats import StoreStats, read_store_stats
from entrypoints.container import WEBHOOK_QUEUE, build
from entrypoints.schema import require_schema_at_head
from entrypoints.settings import mask_url
from ports.queue_monitor import QueueDepths, QueueUnavailable

EXIT_UNAVAILABLE = 1
LABEL_WIDTH = 12


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "stats",
        help="queue depths, outbox by status, dead letters, active sessions",
        description=(
            f"Print the depths of queue {WEBHOOK_QUEUE} (waiting, started, scheduled, failed, from "
            "RQ's registries), outbox rows by status and how long the oldest due one has waited, "
            "dead letters of the last hour and day, and active live sessions per tenant. Exits 1 "
            "when Redis or the database could not be read (the rest is still printed)."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print JSON, for scripts")
    parser.set_defaults(handler=stats_command)


@attrs.frozen
class Reading:
    """Either the value read or why it could not be read."""

    value: Any = None
    error: str | None = None


def stats_command(args: argparse.Namespace) -> int:
    container = build()
    settings = container.settings()
    require_schema_at_head(settings.database_url)
    try:
        store = Reading(
            read_store_stats(uow_factory=container.uow_factory(), clock=container.clock())
        )
    except ConnectionError as exc:  # StoreUnavailable
        store = Reading(error=str(exc))
    monitor = container.queue_monitor(client_name="stats")
    try:
        queue = Reading(monitor.depths(WEBHOOK_QUEUE))
    except QueueUnavailable as exc:
        queue = Reading(error=str(exc))
    finally:
        monitor.close()
    now = container.clock().now()
    if args.json:
        print(json.dumps(stats_json(now, queue, store), indent=2))
    else:
        print(stats_text(now, queue, store, mask_url(settings.redis_url)))
    return EXIT_UNAVAILABLE if queue.error or store.error else 0


def stats_json(now: datetime, queue: Reading, store: Reading) -> dict[str, Any]:
    out: dict[str, Any] = {"takenAt": now.isoformat()}
    if queue.error:
        out["queue"] = {"name": WEBHOOK_QUEUE, "available": False, "error": queue.error}
    else:
        out["queue"] = {"name": WEBHOOK_QUEUE, "available": True, **_shown(queue.value)}
    if store.error:
        out["store"] = {"available": False, "error": store.error}
        return out
    stats: StoreStats = store.value
    out["outbox"] = {
        "byStatus": {status.value: n for status, n in stats.outbox_by_status.items()},
        "oldestDueAt": stats.oldest_due_at.isoformat() if stats.oldest_due_at else None,
        "lagSeconds": round(stats.outbox_lag.total_seconds(), 3),
    }
    out["deadLetters"] = {
        "lastHour": stats.dead_letters_last_hour,
        "lastDay": stats.dead_letters_last_day,
        "notReplayed": stats.dead_letters_not_replayed,
    }
    out["activeSessions"] = {
        "total": stats.active_sessions_total,
        "byTenant": stats.active_sessions,
    }
    return out


def stats_text(now: datetime, queue: Reading, store: Reading, redis_url: str) -> str:
    lines = [f"livesell stats at {_when(now)}", "", f"queue {WEBHOOK_QUEUE} ({redis_url})"]
    if queue.error:
        lines.append(f"  unavailable: {queue.error}")
    else:
        lines += _pairs(_shown(queue.value))
    lines.append("")
    if store.error:
        lines += ["database", f"  unavailable: {store.error}"]
        return "\n".join(lines)
    stats: StoreStats = store.value
    lines.append("outbox (messages_out)")
    lines += _pairs({status.value: n for status, n in stats.outbox_by_status.items()})
    if stats.oldest_due_at is None:
        lines.append(f"  {'oldest due'.ljust(LABEL_WIDTH)}  nothing is due")
    else:
        since = _when(stats.oldest_due_at)
        waited = _age(stats.outbox_lag)
        lines.append(f"  {'oldest due'.ljust(LABEL_WIDTH)}  waiting {waited} (due since {since})")
    lines += ["", "dead letters"]
    lines += _pairs(
        {
            "last hour": stats.dead_letters_last_hour,
            "last day": stats.dead_letters_last_day,
            "not replayed": stats.dead_letters_not_replayed,
        }
    )
    lines += ["", f"active sessions: {stats.active_sessions_total}"]
    lines += _pairs(stats.active_sessions)
    return "\n".join(lines)


def _shown(depths: QueueDepths) -> dict[str, int]:
    """The states this command shows, in this order."""
    return {
        "waiting": depths.waiting,
        "started": depths.started,
        "scheduled": depths.scheduled,
        "failed": depths.failed,
    }


def _pairs(values: dict[str, int]) -> list[str]:
    width = max([LABEL_WIDTH, *(len(k) for k in values)])
    return [f"  {key.ljust(width)}  {value:>6}" for key, value in values.items()]


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _age(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{delta.total_seconds():.1f} s"
    if seconds < 7200:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
