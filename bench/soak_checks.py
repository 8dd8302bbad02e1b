"""What the fault soak found: the database, the provider's sent log and the requests' answers
read once the drain is over, and the table it prints."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from soak_load import FaultClock, Request

RECOVERY_TARGET_SECONDS = 15.0
"""Issue 12 §9: a message is processed within 15 s of its receipt or, received during a fault,
of the fault's end (Redis answering again, a killed worker restarted, ...)."""
LIVE_JOIN_TOLERANCE_SECONDS = 2.0
"""Issue 12 §8: a message joins the live that was current when it was received. One in a live
opened more than 2 s after its receipt, or a client's in none while a live of its shop began
before and went on after its receipt, was judged late (2 s: the time a message takes to be
processed when nothing is wrong)."""
FINAL_OUTBOX = ("sent", "dead", "expired")
BOTH_DOWN = "redis and postgres down"
"""The one fault during which the webhook may answer 5xx (and Twilio's connection overrides make
it retry): with Redis alone down the inbox row is written and the reconciler enqueues it later;
with Postgres alone down the spool in Redis keeps the request (issue 12 §1). The soak stages the
faults one at a time, so every 5xx it sees is one too many."""


@dataclass
class Row:
    name: str
    value: int | float | str
    checked: bool = False
    detail: str = ""

    @property
    def failing(self) -> bool:
        return self.checked and self.value != 0


@dataclass
class Findings:
    rows: list[Row] = field(default_factory=list)

    def info(self, name: str, value: int | float | str, detail: str = "") -> None:
        self.rows.append(Row(name, value, False, detail))

    def check(self, name: str, value: int, detail: str = "") -> None:
        """A count that must be zero."""
        self.rows.append(Row(name, value, True, detail))

    @property
    def failed(self) -> bool:
        return any(row.failing for row in self.rows)

    def table(self) -> str:
        width = max(len(row.name) for row in self.rows)
        lines = []
        for row in self.rows:
            mark = "FAIL" if row.failing else ("  ok" if row.checked else "    ")
            detail = f"  ({row.detail})" if row.detail else ""
            lines.append(f"{mark}  {row.name:<{width}}  {row.value}{detail}")
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "failed": self.failed,
            "rows": [
                {
                    "name": r.name,
                    "value": r.value,
                    "checked": r.checked,
                    "failing": r.failing,
                    "detail": r.detail,
                }
                for r in self.rows
            ],
        }


def _count(conn: psycopg.Connection[Any], sql: str) -> int:
    row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
    return 0 if row is None else int(row[0])


def _by_fault(requests: list[Request]) -> str:
    counts = Counter(r.fault for r in requests)
    return ", ".join(f"{fault}: {n}" for fault, n in sorted(counts.items()))


def _late(inbox: list[Any], faults: FaultClock) -> list[str]:
    """The fault (or ``none``) of each message processed later than the recovery target after its
    receipt or the end of the fault it was received in."""
    windows = [
        (label, faults.wall_start + a, faults.wall_start + (b if b is not None else a))
        for label, a, b in faults.windows
    ]
    late = []
    for *_, received, processed in inbox:
        if processed is None:
            continue
        at, done = received.timestamp(), processed.timestamp()
        label, since = next(
            ((w, end) for w, begin, end in windows if begin <= at <= end), ("none", at)
        )
        if done - max(at, since) > RECOVERY_TARGET_SECONDS:
            late.append(label)
    return late


def inbound_findings(
    found: Findings, requests: list[Request], database_url: str, faults: FaultClock
) -> None:
    """The webhook's answers against the inbox rows and the classification events."""
    with psycopg.connect(database_url) as conn:
        inbox = conn.execute(
            "SELECT tenant_id, provider_message_id, status, received_at, processed_at"
            " FROM inbound_messages"
        ).fetchall()
        classified_twice = _count(
            conn,
            "SELECT count(*) FROM (SELECT 1 FROM event_logs WHERE event_type = 'message.classified'"
            " GROUP BY tenant_id, subject_id HAVING count(*) > 1) AS twice",
        )
        rows_twice = _count(
            conn,
            "SELECT count(*) FROM (SELECT 1 FROM inbound_messages"
            " GROUP BY tenant_id, provider_message_id HAVING count(*) > 1) AS twice",
        )
        inbound_dead = _count(
            conn, "SELECT count(*) FROM dead_letter_jobs WHERE source = 'webhook-processing'"
        )
        sessions_over = _count(
            conn,
            "SELECT count(*) FROM (SELECT 1 FROM live_sessions WHERE status = 'active'"
            " GROUP BY tenant_id HAVING count(*) > 1) AS over",
        )
        sessions = _count(conn, "SELECT count(*) FROM live_sessions")
        tolerance = f"interval '{LIVE_JOIN_TOLERANCE_SECONDS} seconds'"
        joined_later = _count(
            conn,
            "SELECT count(*) FROM inbound_messages m JOIN live_sessions s"
            " ON s.id = m.live_session_id AND s.tenant_id = m.tenant_id"
            f" WHERE s.started_at > m.received_at + {tolerance}",
        )
        missed_live = _count(
            conn,
            "SELECT count(*) FROM inbound_messages m WHERE m.message_type = 'client'"
            " AND m.live_session_id IS NULL AND EXISTS (SELECT 1 FROM live_sessions s"
            f" WHERE s.tenant_id = m.tenant_id AND s.started_at < m.received_at - {tolerance}"
            f" AND s.last_activity_at > m.received_at + {tolerance})",
        )
    status_of = {(t, sid): status for t, sid, status, *_ in inbox}
    delays = sorted((p - r).total_seconds() for *_, r, p in inbox if p is not None)
    late = _late(inbox, faults)
    unique = {(r.tenant_id, r.sid) for r in requests}
    answered = [r for r in requests if r.status == 200]
    server_errors = [r for r in requests if r.status is not None and r.status >= 500]
    other = [r for r in requests if r.status is not None and r.status != 200 and r.status < 500]
    unanswered = [r for r in requests if r.status is None]
    accepted = {(r.tenant_id, r.sid) for r in answered}
    found.info(
        "requests sent",
        len(requests),
        f"{len(unique)} MessageSids, "
        f"{sum(r.duplicate for r in requests)} repeats, {sum(r.tries for r in requests)} tries",
    )
    found.info("answered 200", len(answered))
    found.check(
        "answered 5xx (allowed only while Redis and Postgres are both down)",
        sum(1 for r in server_errors if r.fault != BOTH_DOWN),
        _by_fault(server_errors),
    )
    found.check("answered 4xx", len(other), ", ".join(sorted({str(r.status) for r in other})))
    found.check(
        "unanswered after Twilio's connection retries", len(unanswered), _by_fault(unanswered)
    )
    found.check("accepted (200) but not recorded", len(accepted - status_of.keys()))
    found.check("recorded twice (rows or classifications)", rows_twice + classified_twice)
    found.check(
        "not processed (still received)", sum(1 for s in status_of.values() if s == "received")
    )
    found.check(
        "rejected or dead-lettered inbound",
        sum(1 for s in status_of.values() if s == "rejected") + inbound_dead,
    )
    found.check("sessions over one active per tenant", sessions_over)
    found.info("live sessions opened", sessions)
    found.check("messages in a live opened after their receipt", joined_later)
    found.check("client messages in no live although one was going on", missed_live)
    found.check(
        f"processed over {RECOVERY_TARGET_SECONDS:.0f} s after receipt or its fault's end",
        len(late),
        ", ".join(f"{k}: {n}" for k, n in sorted(Counter(late).items())),
    )
    if delays:
        found.info(
            "receipt to processed, s (median / max)",
            f"{delays[len(delays) // 2]:.1f} / {delays[-1]:.1f}",
        )


def outbox_findings(
    found: Findings, database_url: str, sent_log: Path, in_flight: dict[str, set[str]]
) -> None:
    """``messages_out`` against the provider's log; ``in_flight``: per kill, the rows that were
    ``sending`` at that moment (the at-least-once allowance: each may be sent once more)."""
    with psycopg.connect(database_url) as conn:
        status_of = dict(conn.execute("SELECT id, status FROM messages_out").fetchall())
    sends = Counter()
    if sent_log.exists():
        for line in sent_log.read_text().splitlines():
            if line.strip():
                sends[json.loads(line)["outboxId"]] += 1
    allowed = set().union(*in_flight.values()) if in_flight else set()
    twice = {oid: n for oid, n in sends.items() if n > 1}
    beyond = {oid for oid, n in twice.items() if n - (1 if oid in allowed else 0) > 1}
    statuses = Counter(status_of.values())
    found.info(
        "outbox rows written",
        len(status_of),
        ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items())),
    )
    found.info("outbox sent", statuses["sent"])
    found.check("outbox dead", statuses["dead"])
    found.check(
        "outbox stuck (not sent nor dead)",
        sum(1 for s in status_of.values() if s not in FINAL_OUTBOX),
    )
    found.info(
        "sent twice within the in-flight allowance",
        len(set(twice) - beyond),
        ", ".join(f"{k}: {len(v)} in flight" for k, v in in_flight.items()),
    )
    found.check("sent twice beyond the allowance", len(beyond))
    found.check(
        "provider sent, row not marked sent",
        sum(1 for oid in sends if status_of.get(oid) != "sent"),
    )
    found.check(
        "marked sent, provider never sent",
        sum(1 for oid, s in status_of.items() if s == "sent" and oid not in sends),
    )
