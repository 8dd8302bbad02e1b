"""``livesell``: the one console script. Each subcommand lives in ``entrypoints/commands/``.

Exit codes: 0 success, 1 a failure at run time, 2 bad input or configuration (one clear line).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from domain.errors import DomainError
from entrypoints.settings import ConfigError

COMMAND_MODULES = (
    "entrypoints.commands.simulate",
    "entrypoints.commands.outbox",
    "entrypoints.commands.dlq",
    "entrypoints.commands.stats",
    "entrypoints.commands.migrate",
    "entrypoints.commands.tenants",
    "entrypoints.commands.sellers",
    "entrypoints.commands.worker",
    "entrypoints.commands.webhook",
)

EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the operator; printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livesell",
        description="Workers of a multi-tenant WhatsApp live-selling service.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if (sys.argv[1:] if argv is None else list(argv))[:1] == ["worker"]:
        # A signal during start-up is a stop request, not a kill (ADR 0014).
        from entrypoints.runner import process_shutdown

        process_shutdown()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (ConfigError, UsageError, DomainError) as exc:
        print(f"livesell {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (``livesell stats | head``): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
