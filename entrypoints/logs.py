"""Log lines as SPEC §4 says: ``[timestamp] [LEVEL] [worker-name] message {json context}``.

Code logs with ``extra={"context": {...}}``; this formatter adds the worker name (a context
variable each worker sets), masks phone numbers to their last four digits, and renders text or
JSON (``LOG_FORMAT``).
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

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


def configure_logging(fmt: str = "text", level: str = "info") -> None:
    """Send every livesell log line to stderr in the chosen format (idempotent)."""
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LivesellFormatter(fmt))
    root.handlers[:] = [handler]
    root.setLevel(logging.CRITICAL + 1 if level == "off" else level.upper())
    for noisy in ("rq.worker", "rq.scheduler", "urllib3", "twilio.http_client", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
