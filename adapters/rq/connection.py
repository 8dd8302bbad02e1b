"""The Redis connection the queue and the worker share, and the one place redis errors become ours.

``REDIS_URL`` may carry its password (``redis://:secret@host:6379/0``); when it does not,
``REDIS_TOKEN`` is used as the password (Upstash hands out a host and a token separately).
``rediss://`` turns TLS on with certificate checks. Every connection gets socket timeouts, TCP
keepalive and a health check, so a dead peer is noticed instead of hanging a worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis import Redis

from ports.queue import QueueUnavailable

SOCKET_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 5.0
HEALTH_CHECK_INTERVAL_SECONDS = 15

# Everything redis-py raises when the server cannot serve us right now: connection refused or
# reset, timeouts, authentication refused, the server still loading its dataset, TLS failures.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,
    OSError,
)


def connection_options(url: str, token: str | None = None) -> dict[str, Any]:
    """The keyword arguments ``redis_connection`` passes to ``Redis.from_url``, for inspection."""
    parts = urlsplit(url)
    options: dict[str, Any] = {
        "socket_timeout": SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "socket_keepalive": True,
        "health_check_interval": HEALTH_CHECK_INTERVAL_SECONDS,
    }
    if parts.scheme == "unix":
        options.pop("socket_keepalive")
    has_password = parts.password is not None and unquote(parts.password) != ""
    if token and not has_password:
        options["password"] = token
    return options


def redis_connection(
    url: str, token: str | None = None, *, client_name: str | None = None
) -> Redis:
    """A client for ``url`` (``redis://``, ``rediss://`` or ``unix://``); nothing connects yet.

    The password is the URL's when it has one, else ``token``.
    """
    options = connection_options(url, token)
    if client_name:
        options["client_name"] = client_name
    return Redis.from_url(url, **options)


@contextmanager
def queue_errors() -> Iterator[None]:
    """Translate redis' connection failures into ``ports.queue.QueueUnavailable``."""
    try:
        yield
    except UNAVAILABLE_ERRORS as exc:
        raise QueueUnavailable(f"Redis is unavailable: {type(exc).__name__}: {exc}") from exc
