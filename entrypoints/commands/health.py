"""``livesell health``: probe the health endpoint of the service running in this container.

The image's ``HEALTHCHECK`` runs it. The worker serves ``/healthz`` on ``HEALTH_PORT``, the
webhook on ``PORT``: the probe asks each port that is set (``--port`` first) and is healthy as soon
as one answers 200, so one image and one HEALTHCHECK serve both services. Exit 0 healthy, 1 not
(one line saying what was tried), 2 a port that is not a number. Only the standard library is
imported: a probe every 30 s must cost next to nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from typing import Any

from entrypoints.commands.support import UsageError, port_number

PORT_VARIABLES = ("HEALTH_PORT", "PORT")
EXIT_UNHEALTHY = 1


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "health",
        help="probe this container's health endpoint (the image's HEALTHCHECK)",
        description=(
            "GET http://127.0.0.1:<port>/healthz for --port, else HEALTH_PORT (the worker) and "
            "PORT (the webhook); exit 0 when one answers 200, 1 otherwise."
        ),
    )
    parser.add_argument("--port", type=int, help="probe this port only")
    parser.add_argument(
        "--path",
        default="/healthz",
        help="the path to probe (default /healthz; /readyz also checks the database and Redis)",
    )
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per probe (default 3)")
    parser.set_defaults(handler=probe_command)


def ports_to_probe(explicit: int | None, environ: dict[str, str] | os._Environ[str]) -> list[int]:
    """``--port``, else the ports in HEALTH_PORT then PORT, once each. Raises UsageError for a
    value that is not a port number."""
    if explicit is not None:
        candidates = [("--port", str(explicit))]
    else:
        candidates = [(name, environ.get(name, "").strip()) for name in PORT_VARIABLES]
    ports: list[int] = []
    for name, raw in candidates:
        if not raw:
            continue
        port = port_number(raw)
        if port is None:
            raise UsageError(f"{name} must be a port number in 1..65535, got {raw!r}")
        if port not in ports:
            ports.append(port)
    return ports


def probe_command(args: argparse.Namespace) -> int:
    ports = ports_to_probe(args.port, os.environ)
    if not ports:
        print(
            f"{args.command_name}: no port to probe: set HEALTH_PORT (worker) or PORT (webhook), "
            "or pass --port",
            file=sys.stderr,
        )
        return EXIT_UNHEALTHY
    tried: list[str] = []
    for port in ports:
        url = f"http://127.0.0.1:{port}{args.path}"
        try:
            with urllib.request.urlopen(url, timeout=args.timeout) as response:
                if response.status == 200:
                    print(f"{url} 200")
                    return 0
                tried.append(f"{url} {response.status}")
        except urllib.error.HTTPError as exc:
            tried.append(f"{url} {exc.code}")
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            tried.append(f"{url} {reason}")
    print(f"{args.command_name}: unhealthy: {'; '.join(tried)}", file=sys.stderr)
    return EXIT_UNHEALTHY
