"""``livesell webhook [--host --port --workers]``: serve the Twilio webhook with uvicorn.

Without ``TWILIO_AUTH_TOKEN`` the webhook refuses to start (exit 2): an unverified webhook lets
anyone on the internet write inbound messages for any tenant. ``--insecure-skip-signature`` serves
it without verification, for local development only, and says so in the log.
"""

from __future__ import annotations

import argparse
import os
import signal
from collections.abc import Mapping
from typing import Any

from entrypoints.commands.support import UsageError, port_number

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
GRACEFUL_SHUTDOWN_SECONDS = 25


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "webhook",
        help="serve the Twilio webhook (inbound messages, status callbacks, health)",
        description=(
            "Serve POST /webhooks/twilio/messages, POST /webhooks/twilio/status, GET /healthz "
            "and GET /readyz with uvicorn. Needs TWILIO_AUTH_TOKEN to verify X-Twilio-Signature; "
            "set WEBHOOK_PUBLIC_BASE_URL to the public https URL when behind a proxy."
        ),
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"port to bind (default: $PORT, else {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn worker processes (default 1; each has its own database pool)",
    )
    parser.add_argument(
        "--insecure-skip-signature",
        action="store_true",
        help="do NOT verify X-Twilio-Signature (local development only)",
    )
    parser.set_defaults(handler=serve)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from entrypoints.logs import configure_logging, current_worker
    from entrypoints.schema import require_schema_at_head
    from entrypoints.settings import ConfigError, Settings
    from entrypoints.webhook_app import INSECURE_ENV, TOKEN_REQUIRED, WORKER_NAME

    settings = Settings.from_env()
    if not settings.twilio_auth_token and not args.insecure_skip_signature:
        raise ConfigError("TWILIO_AUTH_TOKEN", TOKEN_REQUIRED)
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    port = resolve_port(args.port, os.environ)
    configure_logging(settings.log_format, settings.log_level)
    current_worker.set(WORKER_NAME)
    require_schema_at_head(settings.database_url)
    if args.insecure_skip_signature:
        os.environ[INSECURE_ENV] = "1"
    else:
        os.environ.pop(INSECURE_ENV, None)
    # uvicorn re-raises the stop signal after its graceful shutdown; a handler of ours takes it,
    # so SIGTERM/SIGINT end the service with exit code 0 as every livesell service does.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, _stopped)
    uvicorn.run(
        "entrypoints.webhook_server:create_app_from_env",
        factory=True,
        http="entrypoints.webhook_server:NoDelayHttpToolsProtocol",
        loop="uvloop",
        host=args.host,
        port=port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=True,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    return 0


def resolve_port(explicit: int | None, environ: Mapping[str, str]) -> int:
    """``--port``, else ``PORT`` (set by Railway and Heroku-style platforms), else 8000. A start
    command needs no ``$PORT`` then, which a platform starting it without a shell would pass
    literally. Raises ConfigError for a PORT that is not a port number."""
    from entrypoints.settings import ConfigError

    if explicit is not None:
        return explicit
    raw = (environ.get("PORT") or "").strip()
    if not raw:
        return DEFAULT_PORT
    port = port_number(raw)
    if port is None:
        raise ConfigError("PORT", f"must be a port number in 1..65535, got {raw!r}")
    return port


def _stopped(_signum: int, _frame: object) -> None:
    """The signal uvicorn re-raises once it has shut down: nothing left to do."""
