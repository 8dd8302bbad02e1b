"""``livesell``: the one console script. Each subcommand lives in ``entrypoints/commands/``, what
they share (``UsageError``, ``store_errors``) in ``entrypoints/commands/support.py``.

Conventions (DEVELOPERS.md, ADR 0016): exit 0 success, 1 a failure at run time, 2 bad input or
configuration, printed as ONE line that starts with the full sub-command name
(``livesell tenants add: …``). Only the chosen command's module is imported, so ``livesell
--help`` stays fast; the others are listed from COMMANDS.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

# name: (module with register(sub) and the handlers, one-line help for ``livesell --help``)
COMMANDS: dict[str, tuple[str, str]] = {
    "migrate": (
        "entrypoints.commands.migrate",
        "create or upgrade the database schema (alembic upgrade head)",
    ),
    "worker": ("entrypoints.commands.worker", "run the workers until SIGTERM/SIGINT"),
    "webhook": (
        "entrypoints.commands.webhook",
        "serve the Twilio webhook (inbound messages, status callbacks, health)",
    ),
    "health": (
        "entrypoints.commands.health",
        "probe this container's health endpoint (the image's HEALTHCHECK)",
    ),
    "simulate": (
        "entrypoints.commands.simulate",
        "run a scripted live-selling scenario and print a report",
    ),
    "tenants": ("entrypoints.commands.tenants", "register and list tenants"),
    "sellers": ("entrypoints.commands.sellers", "register and list sellers"),
    "outbox": ("entrypoints.commands.outbox", "the outbound message outbox"),
    "dlq": ("entrypoints.commands.dlq", "list and replay dead letters"),
    "stats": (
        "entrypoints.commands.stats",
        "queue depths, outbox by status, dead letters, active sessions",
    ),
}
COMMAND_MODULES = tuple(module for module, _help in COMMANDS.values())

EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """argparse with the house convention for its own errors: one line naming the problem, the
    full sub-command name first (``livesell tenants add: the following arguments are required:
    --id``), exit 2. Sub-command parsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


class _Version(argparse.Action):
    """``--version``: the version and build commit, read only when asked for (importlib.metadata
    costs more than the rest of ``--help``)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and build commit")

    def __call__(self, parser: argparse.ArgumentParser, *_args: object, **_kw: object) -> None:
        from entrypoints.build_info import describe

        print(describe())
        parser.exit(0)


def _chosen(argv: Sequence[str]) -> str | None:
    """The command named in ``argv`` (the first word that is not an option), if one is."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the full definition of the command ``argv`` names (every command when
    ``argv`` is None) and a one-line entry for the others."""
    parser = Parser(
        prog="livesell",
        description="Workers of a multi-tenant WhatsApp live-selling service.",
    )
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = _chosen(argv) if argv is not None else None
    for name, (module, summary) in COMMANDS.items():
        if argv is None or name == chosen:
            importlib.import_module(module).register(sub)
        else:
            sub.add_parser(name, help=summary)
    return parser


def command_name(args: argparse.Namespace) -> str:
    """``livesell tenants add``: the command and its action, as the operator typed them."""
    words = [args.command]
    words += [
        str(value)
        for key, value in sorted(vars(args).items())
        if key.endswith("_command") and isinstance(value, str)
    ]
    return " ".join(["livesell", *words])


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        # A signal during start-up is a stop request, not a kill (ADR 0014).
        from entrypoints.runner import process_shutdown

        process_shutdown()
    args = build_parser(argv).parse_args(argv)
    args.command_name = command_name(args)
    from domain.errors import DomainError
    from entrypoints.commands.support import UsageError
    from entrypoints.settings import ConfigError

    try:
        return int(args.handler(args) or 0)
    except (ConfigError, UsageError, DomainError) as exc:
        print(f"{args.command_name}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (``livesell stats | head``): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
