"""Dead letters: work that will not be retried, kept whole for an operator to inspect and replay."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import attrs


class DeadLetterSource(enum.StrEnum):
    MESSAGES_OUT = "messages_out"
    WEBHOOK_PROCESSING = "webhook-processing"


@attrs.define(kw_only=True)
class DeadLetter:
    """A job or message given up on. ``tenant_id`` is None when the input named no known tenant."""

    id: str
    tenant_id: str | None
    source: DeadLetterSource
    source_id: str
    payload: dict[str, Any]
    error: str
    error_code: str | None = None
    attempts: int
    created_at: datetime
    replayed_at: datetime | None = None

    @property
    def replayed(self) -> bool:
        return self.replayed_at is not None

    def mark_replayed(self, now: datetime) -> bool:
        """Mark replayed once; returns False when it already was (replay is idempotent)."""
        if self.replayed_at is not None:
            return False
        self.replayed_at = now
        return True


def as_json_payload(value: object) -> dict[str, Any]:
    """Keep whatever a rejected job held, as a JSON object: objects as they are, anything else
    wrapped under ``raw`` (its ``repr`` when it is not JSON-native). A NUL character, which
    Postgres' jsonb cannot hold, becomes U+FFFD (so the dead letter is written whatever it held).
    """
    if isinstance(value, dict) and all(isinstance(k, str) for k in value) and _jsonable(value):
        return {str(_without_nul(key)): _without_nul(item) for key, item in value.items()}
    return {"raw": _without_nul(value) if _jsonable(value) else repr(value)}


def _without_nul(value: object) -> object:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list | tuple):
        return [_without_nul(v) for v in value]
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    return value


def _jsonable(value: object) -> bool:
    if value is None or isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, list | tuple):
        return all(_jsonable(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _jsonable(v) for k, v in value.items())
    return False
