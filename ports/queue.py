"""The inbound queue the webhook fills and the webhook-processor drains."""

from __future__ import annotations

from typing import Any, Protocol


class QueueUnavailable(ConnectionError):
    """The queue could not take the job (broker unreachable)."""


class InboundQueue(Protocol):
    def enqueue(self, payload: dict[str, Any]) -> str:
        """Queue one inbound payload for processing; returns the job id.

        Raises QueueUnavailable when the broker cannot be reached.
        """
        ...
