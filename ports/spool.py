"""The durable spool (ADR 0013): where what the database could not take waits until it answers.

The webhook appends a verified request it could not record (the database down); the failure
callback appends a dead letter it could not write. A drainer claims the oldest entry, applies it
to the database, and acknowledges it. An entry is claimed by one drainer at a time and stays
claimed until acknowledged or released: a drainer that dies holding entries loses none, since
``recover`` gives them back to the queue (at-least-once; applying an entry is idempotent).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import attrs


class SpoolUnavailable(ConnectionError):
    """The spool could not be reached: nothing was appended, claimed or acknowledged."""


@attrs.frozen
class SpoolEntry:
    """One claimed entry: ``raw`` is its stored text (the handle to acknowledge or release it),
    ``document`` the JSON object it holds, or None when the text is not one."""

    raw: str
    document: Mapping[str, Any] | None


class Spool(Protocol):
    """A durable first-in, first-out queue of JSON documents with claim and acknowledge.

    Every method raises SpoolUnavailable when the spool cannot be reached.
    """

    def append(self, document: Mapping[str, Any]) -> None:
        """Store ``document`` (JSON-serialisable) durably, after every entry already waiting."""
        ...

    def claim(self) -> SpoolEntry | None:
        """Take the oldest waiting entry for this drainer; None when nothing waits."""
        ...

    def ack(self, entry: SpoolEntry) -> None:
        """Forget a claimed entry: it was applied."""
        ...

    def release(self, entry: SpoolEntry) -> None:
        """Give a claimed entry back, first in line (it could not be applied yet)."""
        ...

    def recover(self) -> int:
        """Give back the entries claimed by drainers that stopped (and this drainer's own, left
        by a previous run of it); returns how many."""
        ...

    def depth(self) -> int:
        """Entries waiting or claimed."""
        ...

    def durability_problem(self) -> str | None:
        """A sentence naming a setting of the store that could lose entries (Redis'
        ``maxmemory-policy`` other than ``noeviction``), or None when none is known."""
        ...
