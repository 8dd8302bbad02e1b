"""Wake the outbox sender when a message is written: Postgres LISTEN/NOTIFY (ADR 0006).

The notification comes from a trigger on ``messages_out`` (Alembic revision
``0006_outbox_notify``): one ``NOTIFY livesell_outbox`` per inserting statement, and per row put
back to ``pending`` (a dead-letter replay). Postgres delivers it when the writing transaction
commits, so a sender never wakes for a row it cannot see yet, and it folds identical
notifications of one transaction into one.

The listener holds one dedicated psycopg connection (not from the pool: a LISTEN belongs to its
session) in autocommit. It reconnects on its own with a capped backoff, and calls ``on_wake``
after each (re)connection too, since notifications sent while it was away are lost. A wake-up is
only a hint: the sender still polls every ``OUTBOX_POLL_INTERVAL_SECONDS``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg

CHANNEL = "livesell_outbox"
HEALTH_CHECK_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 5.0

log = logging.getLogger("livesell.outbox.notify")


def libpq_url(database_url: str) -> str:
    """``postgresql+psycopg://...`` (SQLAlchemy's form) -> ``postgresql://...`` (libpq's)."""
    scheme, sep, rest = database_url.partition("://")
    if not sep or not scheme.startswith(("postgresql", "postgres")):
        raise ValueError("LISTEN/NOTIFY needs a Postgres URL")
    return "postgresql://" + rest


def notify(database_url: str) -> None:
    """Send one wake-up by hand (tests, operators)."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute(f"NOTIFY {CHANNEL}")


class PostgresOutboxWakeup:
    """Calls ``on_wake`` from its own thread whenever ``messages_out`` gets a row to send."""

    def __init__(
        self,
        database_url: str,
        on_wake: Callable[[], None],
        *,
        connect_timeout: float = 5.0,
        poll_seconds: float = 0.5,
    ) -> None:
        self._url = libpq_url(database_url)
        self._on_wake = on_wake
        self._connect_timeout = connect_timeout
        self._poll_seconds = poll_seconds
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()
        self.wakeups = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="outbox-listen", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        while not self._stopped.is_set():
            try:
                self._listen()
                failures = 0
            except (psycopg.Error, OSError) as exc:
                self.connected.clear()
                failures += 1
                wait = min(MAX_BACKOFF_SECONDS, 0.25 * 2 ** min(failures, 5))
                log.warning(
                    "Outbox wake-up listener lost its connection, reconnecting",
                    extra={"context": {"error": f"{type(exc).__name__}: {exc}", "retryIn": wait}},
                )
                self._stopped.wait(wait)

    def _listen(self) -> None:
        with psycopg.connect(
            self._url,
            autocommit=True,
            connect_timeout=max(1, int(self._connect_timeout)),
            application_name="livesell-outbox-listen",
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        ) as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            self.connected.set()
            self._wake()  # whatever was written while we were not listening
            checked = time.monotonic()
            while not self._stopped.is_set():
                for _ in conn.notifies(timeout=self._poll_seconds):
                    self._wake()
                if time.monotonic() - checked > HEALTH_CHECK_SECONDS:
                    conn.execute("SELECT 1")  # a dead link raises here, not silently forever
                    checked = time.monotonic()

    def _wake(self) -> None:
        self.wakeups += 1
        self._on_wake()
