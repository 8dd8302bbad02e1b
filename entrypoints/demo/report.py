"""The report both demo engines print: what happened (counts) and which invariants held."""

from __future__ import annotations

from collections import Counter
from typing import Any

import attrs

from entrypoints.demo.scenario import Scenario

MAX_VIOLATIONS = 20


@attrs.define
class Report:
    scenario: Scenario
    inbound: Counter[str] = attrs.field(factory=Counter)
    sessions: Counter[str] = attrs.field(factory=Counter)
    outbound: Counter[str] = attrs.field(factory=Counter)
    providers: Counter[str] = attrs.field(factory=Counter)
    """Messages sent, by the provider they went through (shown when tenants are on Meta)."""
    invariants: dict[str, bool] = attrs.field(factory=dict)
    violations: list[str] = attrs.field(factory=list)
    """The first breaches, ``name: what breaks it``."""
    failures: list[str] = attrs.field(factory=list)
    """What stopped the run itself: a stage not done in time, a worker part that died."""
    virtual_minutes: float = 0.0
    wall_seconds: float = 0.0
    title: str | None = None

    @property
    def ok(self) -> bool:
        return all(self.invariants.values()) and not self.failures

    def record(self, breaches: dict[str, list[str]]) -> None:
        """Each invariant's breaches, by name (an empty list: it held)."""
        for name, found in breaches.items():
            self.invariants[name] = not found
            room = MAX_VIOLATIONS - len(self.violations)
            self.violations += [f"{name}: {detail}" for detail in found[: max(room, 0)]]

    def fail(self, what: str) -> None:
        self.failures.append(what)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": attrs.asdict(self.scenario),
            "inbound": dict(self.inbound),
            "sessions": dict(self.sessions),
            "outbound": dict(self.outbound),
            **({"providers": dict(self.providers)} if self.providers else {}),
            "invariants": self.invariants,
            "violations": self.violations,
            "failures": self.failures,
            "ok": self.ok,
            "virtualMinutes": round(self.virtual_minutes, 1),
            "wallSeconds": round(self.wall_seconds, 3),
        }

    def render(self) -> str:
        s = self.scenario
        lines = [
            self.title
            or f"livesell simulation — {s.tenants} tenants, {s.clients} clients, "
            f"{s.live_minutes}-minute live, window {s.window_minutes} min, seed {s.seed}",
            "",
            "inbound   " + _pairs(self.inbound, ("seller", "client", "duplicate", "rejected")),
            "sessions  " + _pairs(self.sessions, ("opened", "closed_by_job", "closed_stale")),
            "outbound  " + _pairs(self.outbound, ("queued", "sent", "retried", "dead")),
        ]
        if self.providers:
            lines.append("providers " + _pairs(self.providers, ("twilio", "meta")))
        lines += [
            "",
            "invariants",
        ]
        lines += [
            f"  {'ok  ' if held else 'FAIL'} {name}" for name, held in self.invariants.items()
        ]
        lines += [f"  ! {v}" for v in self.violations]
        lines += [f"  ! {f}" for f in self.failures]
        lines += [
            "",
            f"{self.virtual_minutes:.0f} virtual minutes in {self.wall_seconds:.2f} s wall time"
            f" — {self._verdict()}",
        ]
        return "\n".join(lines)

    def _verdict(self) -> str:
        if self.failures:
            return "RUN FAILED"
        return "all invariants held" if self.ok else "INVARIANTS BROKEN"


def _pairs(counter: Counter[str], order: tuple[str, ...]) -> str:
    keys = list(order) + sorted(k for k in counter if k not in order)
    return "  ".join(f"{k}={counter.get(k, 0)}" for k in keys)
