"""Time and identity come in from outside the core."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class Clock(Protocol):
    """Tells the time."""

    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...


class IdGenerator(Protocol):
    """Makes ids for new rows."""

    def new_id(self) -> str:
        """A fresh id, unique across processes (sortable by creation where the adapter can)."""
        ...
