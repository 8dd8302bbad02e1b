"""``QueueHealth`` on Redis: the epoch is a random token kept in ``livesell:queue:epoch`` (no
expiry). The first caller after Redis lost its data writes a new one (``SET NX``), so every
process sees the same new epoch."""

from __future__ import annotations

import os

from redis import Redis

from adapters.rq.connection import queue_errors

EPOCH_KEY = "livesell:queue:epoch"


class RedisQueueHealth:
    def __init__(self, connection: Redis) -> None:
        self.connection = connection

    def epoch(self) -> str:
        with queue_errors():
            value = self.connection.get(EPOCH_KEY)
            if value is None:
                self.connection.set(EPOCH_KEY, os.urandom(8).hex(), nx=True)
                value = self.connection.get(EPOCH_KEY)
        if value is None:  # pragma: no cover - evicted between SET and GET
            return ""
        return value.decode() if isinstance(value, bytes) else str(value)
