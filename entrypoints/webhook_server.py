"""What uvicorn serves for ``livesell webhook``: the app factory each worker process calls, and
its HTTP protocol tuned for latency: httptools' parser (C, llhttp) on uvloop's event loop, with
``TCP_NODELAY`` on every connection (ADR 0027)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

from starlette.applications import Starlette
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from entrypoints.container import build
from entrypoints.logs import configure_logging
from entrypoints.observability import init_sentry
from entrypoints.settings import Settings
from entrypoints.webhook_app import INSECURE_ENV, create_app


def create_app_from_env() -> Starlette:
    """uvicorn's app factory (``--factory``): one container per worker process, from the
    environment."""
    settings = Settings.from_env()
    configure_logging(settings.log_format, settings.log_level)
    init_sentry(settings, component="webhook")
    return create_app(build(settings), verify_signatures=os.environ.get(INSECURE_ENV) != "1")


def set_no_delay(transport: asyncio.BaseTransport) -> None:
    """``TCP_NODELAY`` on a connection's socket.

    asyncio sets it only on sockets whose ``proto`` is ``IPPROTO_TCP``; the listening socket
    uvicorn binds for ``--workers`` > 1 has ``proto`` 0, so its connections kept Nagle's algorithm,
    and a response written as headers then body waited for the client's delayed ACK: 40 ms added
    to every request (measured by ``bench/webhook_latency.py``)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (the one ``livesell webhook`` serves) with ``TCP_NODELAY``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        set_no_delay(transport)
        super().connection_made(transport)
