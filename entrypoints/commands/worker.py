"""``livesell worker [--only webhook,outbox,closer]``: run the worker parts until SIGTERM/SIGINT.

Each part is built, with its collaborators, by the container configured from the environment
(``entrypoints.runner.build_parts``, ADR 0017). A part whose module is not part of this build is
an error only when it is asked for.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from typing import Any

from entrypoints.commands.support import UsageError
from entrypoints.runner import PARTS

DEFAULT_PARTS = ("webhook", "outbox", "closer", "reconciler", "spool")
EXIT_UNAVAILABLE = 1


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "worker",
        help="run the workers until SIGTERM/SIGINT",
        description=(
            "Run the background workers: webhook (queue webhook-processing), outbox (the "
            "outbound sender) and closer (close inactive live sessions). The first SIGTERM or "
            "SIGINT stops taking work and lets in-flight work finish (30 s at most); a second "
            "one stops at once."
        ),
    )
    parser.add_argument(
        "--only",
        default=",".join(DEFAULT_PARTS),
        metavar="PARTS",
        help=f"comma-separated parts to run (default: {','.join(DEFAULT_PARTS)})",
    )
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="print the effective configuration (secrets masked) and exit; 2 if it is invalid",
    )
    parser.set_defaults(handler=run_workers)


def parse_parts(value: str) -> list[str]:
    """The parts named in ``--only``, in order, once each. Raises UsageError for an empty list, an
    unknown name or a part whose module is missing from this build."""
    names: list[str] = []
    for raw in value.split(","):
        name = raw.strip().lower()
        if name and name not in names:
            names.append(name)
    if not names:
        raise UsageError(f"--only needs at least one of {', '.join(PARTS)}")
    unknown = [name for name in names if name not in PARTS]
    if unknown:
        raise UsageError(
            f"unknown worker part {', '.join(map(repr, unknown))}; choose from {', '.join(PARTS)}"
        )
    missing = [name for name in names if importlib.util.find_spec(PARTS[name]) is None]
    if missing:
        raise UsageError(
            "worker part "
            + ", ".join(f"{name!r} (module {PARTS[name]})" for name in missing)
            + " is not available in this build; run the others with --only"
        )
    return names


def run_workers(args: argparse.Namespace) -> int:
    from entrypoints.runner import Runner, Shutdown, build_parts, process_shutdown

    # Before anything slow (settings, container, Sentry, child processes): a SIGTERM or SIGINT
    # from here on is a stop request, also during start-up (ADR 0014).
    shutdown = Shutdown() if args.check_config else process_shutdown()
    from entrypoints.container import build
    from entrypoints.health import start_worker_health, worker_health_routes
    from entrypoints.logs import configure_logging
    from entrypoints.metrics import start_worker_metrics
    from entrypoints.observability import init_sentry
    from entrypoints.schema import require_schema_at_head
    from entrypoints.settings import Settings
    from ports.queue import QueueUnavailable

    names = parse_parts(args.only)
    settings = Settings.from_env()
    if "outbox" in names:  # the part that sends: an incomplete Twilio set is a start-up error
        settings.check_messaging_provider()
    if args.check_config:
        width = max(len(name) for name in settings.describe())
        for name, value in settings.describe().items():
            print(f"{name:<{width}}  {'(unset)' if value is None else value}")
        print(f"{'PARTS':<{width}}  {','.join(names)}")
        return 0
    configure_logging(settings.log_format, settings.log_level)
    require_schema_at_head(settings.database_url)
    init_sentry(settings, component="worker")
    container = build(settings)
    try:
        parts = build_parts(container, names)
        health = worker_health_routes(settings, container, parts, names)
        start_worker_metrics(settings, container, parts, queue="webhook" in names, routes=health)
        start_worker_health(settings, health)
        return Runner(parts, shutdown=shutdown).run()
    except QueueUnavailable as exc:
        if shutdown.stop.is_set():
            return 0
        print(f"livesell worker: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
