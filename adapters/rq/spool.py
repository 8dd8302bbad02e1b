"""``Spool`` on Redis lists (ADR 0013), beside RQ's keys but never one of them.

- ``livesell:spool:pending``: entries waiting, oldest on the left (``RPUSH`` to append).
- ``livesell:spool:claimed:<drainer>``: what one drainer holds. ``claim`` is one ``LMOVE`` from
  pending to that list, so an entry is always in exactly one list, and a drainer killed between
  claim and acknowledge leaves it there.
- ``livesell:spool:drainers`` (a set) and ``livesell:spool:lease:<drainer>`` (a key with a
  ``LEASE_SECONDS`` expiry, renewed by every claim): a drainer whose lease expired is gone;
  ``recover`` moves its claimed entries back to the head of pending, in order.

No spool key has an expiry and RQ never touches the ``livesell:`` prefix; with Redis'
``maxmemory-policy`` other than ``noeviction`` an entry could still be evicted, which is why
``durability_problem`` reads the policy (where ``CONFIG GET`` is allowed).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from redis import Redis
from redis.exceptions import ResponseError

from adapters.rq.connection import UNAVAILABLE_ERRORS
from ports.spool import SpoolEntry, SpoolUnavailable

PREFIX = "livesell:spool"
PENDING_KEY = f"{PREFIX}:pending"
DRAINERS_KEY = f"{PREFIX}:drainers"
LEASE_SECONDS = 30
DURABLE_POLICY = "noeviction"


def claimed_key(drainer: str) -> str:
    return f"{PREFIX}:claimed:{drainer}"


def lease_key(drainer: str) -> str:
    return f"{PREFIX}:lease:{drainer}"


class RedisSpool:
    """The spool on ``connection``; ``drainer`` names this process's claims (host.pid.random)."""

    def __init__(self, connection: Redis, drainer: str | None = None) -> None:
        self.connection = connection
        self.drainer = drainer or f"{socket.gethostname()}.{os.getpid()}.{os.urandom(3).hex()}"
        self.claimed_key = claimed_key(self.drainer)

    def append(self, document: Mapping[str, Any]) -> None:
        text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
        with _errors():
            self.connection.rpush(PENDING_KEY, text)

    def claim(self) -> SpoolEntry | None:
        with _errors(), self.connection.pipeline(transaction=False) as pipe:
            pipe.sadd(DRAINERS_KEY, self.drainer)
            pipe.set(lease_key(self.drainer), "1", ex=LEASE_SECONDS)
            pipe.lmove(PENDING_KEY, self.claimed_key, "LEFT", "RIGHT")
            item = pipe.execute()[-1]
        if item is None:
            return None
        raw = item.decode("utf-8", errors="replace") if isinstance(item, bytes) else str(item)
        return SpoolEntry(raw=raw, document=_document(raw))

    def ack(self, entry: SpoolEntry) -> None:
        with _errors():
            self.connection.lrem(self.claimed_key, 1, entry.raw)

    def release(self, entry: SpoolEntry) -> None:
        with _errors(), self.connection.pipeline(transaction=True) as pipe:
            pipe.lrem(self.claimed_key, 1, entry.raw)
            pipe.lpush(PENDING_KEY, entry.raw)
            removed, _ = pipe.execute()
        if not removed:  # not ours any more (recovered by another drainer): do not add a copy
            with _errors():
                self.connection.lrem(PENDING_KEY, 1, entry.raw)

    def recover(self) -> int:
        moved = 0
        with _errors():
            for member in self.connection.smembers(DRAINERS_KEY):
                drainer = member.decode() if isinstance(member, bytes) else str(member)
                mine = drainer == self.drainer
                if not mine and self.connection.exists(lease_key(drainer)):
                    continue
                while self.connection.lmove(claimed_key(drainer), PENDING_KEY, "RIGHT", "LEFT"):
                    moved += 1
                if not mine:
                    self.connection.srem(DRAINERS_KEY, drainer)
        return moved

    def depth(self) -> int:
        with _errors():
            drainers = self.connection.smembers(DRAINERS_KEY)
            with self.connection.pipeline(transaction=False) as pipe:
                pipe.llen(PENDING_KEY)
                for member in drainers:
                    name = member.decode() if isinstance(member, bytes) else str(member)
                    pipe.llen(claimed_key(name))
                return sum(int(n) for n in pipe.execute())

    def durability_problem(self) -> str | None:
        try:
            with _errors():
                policy = self.connection.config_get("maxmemory-policy").get("maxmemory-policy")
        except ResponseError:  # CONFIG is disabled (Upstash and other managed services)
            return None
        if policy is None or policy == DURABLE_POLICY:
            return None
        return (
            f"Redis maxmemory-policy is {policy!r}: under memory pressure Redis may evict the "
            f"spool and the queue; set it to {DURABLE_POLICY!r}"
        )


def _document(raw: str) -> Mapping[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


@contextmanager
def _errors() -> Iterator[None]:
    """Redis' connection failures, and a full Redis refusing writes (``OOM`` under
    ``noeviction``), become ``SpoolUnavailable``."""
    try:
        yield
    except UNAVAILABLE_ERRORS as exc:
        raise SpoolUnavailable(f"Redis is unavailable: {type(exc).__name__}: {exc}") from exc
    except ResponseError as exc:
        if not str(exc).startswith("OOM"):
            raise
        raise SpoolUnavailable(f"Redis is full: {exc}") from exc
