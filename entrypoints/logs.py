"""Log lines as SPEC §4 says: ``[timestamp] [LEVEL] [worker-name] message {json context}``.

Code logs with ``extra={"context": {...}}``; this formatter adds the worker name (a context
variable each worker sets), masks phone numbers to their last four digits, and renders text or
JSON (``LOG_FORMAT``). Lines go to stderr through ``LineWriter`` (ADR 0031): formatted in the
thread that logs, written by one writer thread in batches, a warning or an error at once.
"""

from __future__ import annotations

import collections
import contextvars
import functools
import json
import logging
import os
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from domain.phones import mask_phone, mask_phones_in

current_worker: contextvars.ContextVar[str] = contextvars.ContextVar(
    "current_worker", default="livesell"
)
# Context keys whose value is a phone, compared lower-cased without ``_`` (``to_phone``,
# ``toPhone``; Twilio's ``From``, ``To``, ``WaId``, ``ChannelToAddress``,
# ``OriginalRepliedMessageSender``): their value is masked whatever its form. Any other value is
# free text, where only a phone standing as one is masked (``domain.phones.mask_phones_in``).
PHONE_KEYS = frozenset(
    {
        "to",
        "from",
        "phone",
        "tophone",
        "fromphone",
        "phonee164",
        "toaddress",
        "fromaddress",
        "sender",
        "recipient",
        "waid",
        "channeltoaddress",
        "originalrepliedmessagesender",
        "whatsappnumber",
    }
)


@functools.lru_cache(maxsize=4096)
def is_phone_key(key: str) -> bool:
    """True for a context key whose value is a phone (cached: the keys of log lines repeat)."""
    return key.replace("_", "").lower() in PHONE_KEYS


def _masked_value(key: str, value: Any) -> Any:
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, str):
        return mask_phone(value) if is_phone_key(key) else mask_phones_in(value)
    if isinstance(value, int) and not isinstance(value, bool) and is_phone_key(key):
        return mask_phone(str(value))
    if isinstance(value, dict):
        return _masked(value)
    if isinstance(value, list | tuple):
        return [_masked_value(key, item) for item in value]
    return value


def _masked(context: dict[str, Any]) -> dict[str, Any]:
    return {key: _masked_value(key, value) for key, value in context.items()}


class LivesellFormatter(logging.Formatter):
    def __init__(self, fmt: str = "text") -> None:
        super().__init__()
        self.json = fmt == "json"

    def format(self, record: logging.LogRecord) -> str:
        context = _masked(getattr(record, "context", None) or {})
        if record.exc_info:
            context["error"] = mask_phones_in(self.formatException(record.exc_info))
        worker = getattr(record, "worker", None) or current_worker.get()
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        message = mask_phones_in(record.getMessage())
        if self.json:
            return json.dumps(
                {
                    "timestamp": stamp,
                    "level": record.levelname,
                    "worker": worker,
                    "message": message,
                    **context,
                },
                default=str,
            )
        tail = f" {json.dumps(context, default=str)}" if context else ""
        return f"[{stamp}] [{record.levelname}] [{worker}] {message}{tail}"


WRITE_INTERVAL_SECONDS = 0.05
"""The longest an INFO or DEBUG line waits in memory before the writer thread writes it."""


class LineWriter(logging.Handler):
    """Log lines written to ``stream`` by one thread, in batches (ADR 0031).

    ``emit`` formats the record in the thread that logs and appends the line to a deque; a daemon
    writer thread writes what has gathered every ``interval`` seconds, in one ``write``. A line at
    WARNING or above is written at once, with every line before it, by the thread that logs it.
    The order of lines is the order of ``emit``. ``flush`` (called by ``logging.shutdown`` at exit
    and by ``close``) writes what is waiting. What the process loses when it is killed outright
    (SIGKILL, OOM) is at most the last ``interval`` of INFO lines; a warning or an error is
    never held back.

    Why: a ``StreamHandler`` writes and flushes every line under the handler's lock; each write
    is a system call that gives up the GIL, and in a process of hundreds of threads (the outbox
    sender's send slots) the thread that gave it up queues to take it back. Two INFO lines per
    message cost the sender about 40 % of its CPU (ADR 0031)."""

    def __init__(self, stream: TextIO, interval: float = WRITE_INTERVAL_SECONDS) -> None:
        super().__init__()
        self.stream = stream
        self.interval = interval
        self._lines: collections.deque[str] = collections.deque()
        self._write_lock = threading.Lock()
        self._writer_pid = 0  # the process whose writer thread runs (a forked child starts its own)
        self._closed = False

    def handle(self, record: logging.LogRecord) -> bool:
        # Without the handler's lock: emit is safe from any thread (a deque append, or a write
        # under the write lock).
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._lines.append(line)
        if record.levelno >= logging.WARNING or self._closed:
            self.flush()
        elif self._writer_pid != os.getpid():
            self._start_writer()

    def flush(self) -> None:
        with self._write_lock:
            lines = []
            while self._lines:
                lines.append(self._lines.popleft())
            if not lines:
                return
            try:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except (OSError, ValueError):  # stderr closed or gone: nowhere left to say it
                pass

    def close(self) -> None:
        self._closed = True
        self.flush()
        super().close()

    def _start_writer(self) -> None:
        with self._write_lock:
            if self._writer_pid == os.getpid():
                return
            self._writer_pid = os.getpid()
        threading.Thread(target=self._write_forever, name="log-writer", daemon=True).start()

    def _write_forever(self) -> None:
        while not self._closed:
            time.sleep(self.interval)
            self.flush()


def configure_logging(fmt: str = "text", level: str = "info") -> None:
    """Send every livesell log line to stderr in the chosen format (idempotent)."""
    root = logging.getLogger()
    for previous in root.handlers:
        if isinstance(previous, LineWriter):
            previous.close()  # its lines written, its writer thread ended
    handler = LineWriter(sys.stderr)
    handler.setFormatter(LivesellFormatter(fmt))
    root.handlers[:] = [handler]
    root.setLevel(logging.CRITICAL + 1 if level == "off" else level.upper())
    for noisy in ("rq.worker", "rq.scheduler", "urllib3", "twilio.http_client", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
