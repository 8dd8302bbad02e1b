"""The memory engine's scenario: its size and shape, and the timeline of messages it scripts."""

from __future__ import annotations

import heapq
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from domain.errors import InvalidPhoneNumber
from domain.phones import normalise_phone

START = datetime(2026, 3, 14, 18, 0, tzinfo=UTC)


@attrs.frozen(kw_only=True)
class Scenario:
    """The size and shape of a simulated live."""

    tenants: int = 2
    clients: int = 300
    sellers_per_tenant: int = 2
    live_minutes: int = 60
    product_every_minutes: int = 5
    participation: float = 0.3
    window_minutes: int = 45
    close_interval_minutes: int = 10
    transient_failure_rate: float = 0.1
    permanent_failure_rate: float = 0.01
    duplicate_rate: float = 0.03
    bad_payload_rate: float = 0.005
    max_attempts: int = 5
    batch_size: int = 50
    seed: int = 7
    meta_tenants: int = 0
    """How many of the tenants (the last ones) are on Meta instead of Twilio; the simulated
    provider stands in for both, through the production provider router."""

    def __attrs_post_init__(self) -> None:
        if self.tenants < 1 or self.clients < 1 or self.sellers_per_tenant < 1:
            raise ValueError("a scenario needs at least one tenant, client and seller")
        if not 0 <= self.meta_tenants <= self.tenants:
            raise ValueError(f"meta tenants must be 0..{self.tenants}, got {self.meta_tenants}")
        if self.live_minutes < self.product_every_minutes:
            raise ValueError("the live must last at least one product interval")


@attrs.frozen(order=True)
class Step:
    at: datetime
    seq: int
    kind: str = attrs.field(order=False)
    data: dict[str, Any] = attrs.field(order=False, factory=dict)


class Script:
    """Builds the timeline of inbound messages for every tenant."""

    def __init__(self, scenario: Scenario, rng: random.Random) -> None:
        self.s = scenario
        self.rng = rng
        self.seq = 0
        self.steps: list[Step] = []

    def add(self, at: datetime, kind: str, **data: Any) -> None:
        self.seq += 1
        heapq.heappush(self.steps, Step(at, self.seq, kind, data))

    def build(self, tenants: list[dict[str, Any]]) -> list[Step]:
        s, rng = self.s, self.rng
        for t in tenants:
            clients = t["clients"]
            for client in rng.sample(clients, k=min(5, len(clients))):
                at = START + timedelta(seconds=rng.uniform(0, 90))
                self.say(t, client, at, "bonjour ?", early=True)
            live_start = START + timedelta(minutes=2)
            self.say(t, t["sellers"][0], live_start, "Bonsoir ! Le live commence", seller=True)
            product = 0
            minute = 2
            while minute < 2 + s.live_minutes:
                product += 1
                posted = START + timedelta(minutes=minute, seconds=rng.uniform(0, 20))
                seller = rng.choice(t["sellers"])
                self.say(t, seller, posted, f"Article {product}: robe en lin, 35 EUR", seller=True)
                for client in rng.sample(clients, k=int(len(clients) * s.participation)):
                    at = posted + timedelta(seconds=rng.expovariate(1 / 25))
                    order = rng.random() < 0.6
                    self.say(
                        t,
                        client,
                        at,
                        f"je prends {product}" if order else "quelle taille ?",
                        order=order,
                    )
                minute += s.product_every_minutes
            quiet_from = START + timedelta(minutes=2 + s.live_minutes)
            for client in rng.sample(clients, k=min(20, len(clients))):
                at = quiet_from + timedelta(minutes=rng.uniform(1, s.window_minutes * 2))
                self.say(t, client, at, "le live est fini ?")
        last_message = max(step.at for step in self.steps)
        end = last_message + timedelta(minutes=s.window_minutes + s.close_interval_minutes)
        minute = s.close_interval_minutes
        while START + timedelta(minutes=minute) <= end:
            self.add(START + timedelta(minutes=minute), "close")
            minute += s.close_interval_minutes
        return [heapq.heappop(self.steps) for _ in range(len(self.steps))]

    def say(
        self,
        tenant: dict[str, Any],
        phone: str,
        at: datetime,
        body: str,
        *,
        seller: bool = False,
        order: bool = False,
        early: bool = False,
    ) -> None:
        self.seq += 1
        payload: dict[str, Any] = {
            "tenantId": tenant["id"],
            "providerMessageId": f"SM{tenant['id']}{self.seq:08d}",
            "from": f"whatsapp:{phone}",
            "to": f"whatsapp:{tenant['number']}",
            "body": body,
            "correlationId": f"sim-{self.seq}",
        }
        kind = "seller" if seller else "client"
        self.add(at, "inbound", payload=payload, sender=kind, order=order, early=early)
        if self.rng.random() < self.s.duplicate_rate:
            self.add(
                at + timedelta(seconds=self.rng.uniform(1, 30)),
                "inbound",
                payload=dict(payload),
                sender=kind,
                duplicate=True,
            )
        if self.rng.random() < self.s.bad_payload_rate:
            broken = dict(payload, providerMessageId="", body=123)
            self.add(at, "inbound", payload=broken, sender=kind, bad=True)


def distinct_phones(rng: random.Random, count: int, used: set[str]) -> list[str]:
    """Distinct valid French mobile numbers in E.164."""
    phones: list[str] = []
    while len(phones) < count:
        candidate = f"06{rng.randrange(10_000_000, 99_999_999)}"
        try:
            # Read nationally: only numbers valid in France pass (an international one need not).
            phone = normalise_phone(candidate, "FR")
        except InvalidPhoneNumber:
            continue
        if phone not in used:
            used.add(phone)
            phones.append(phone)
    return phones
