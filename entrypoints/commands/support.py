"""What the ``livesell`` commands share: the usage error, the store's errors as exit codes, the
shape of a command with actions, port numbers and instants as the commands print them.

Only the standard library is imported here, so ``livesell health`` (the image's HEALTHCHECK,
every 30 s) and every command's ``--help`` stay light; ``store_errors`` imports the schema check
and the store's errors when a handler runs.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, overload

Handler = Callable[[argparse.Namespace], int]
Check = Callable[[argparse.Namespace], None]


class UsageError(Exception):
    """Bad input from the operator; printed as one line, exit code 2."""


def add_actions(parser: argparse.ArgumentParser, command: str) -> Any:
    """The sub-parsers of ``livesell <command> ACTION``. The action lands in ``<command>_command``,
    which ``cli.command_name`` reads to print ``livesell tenants add: …``."""
    return parser.add_subparsers(dest=f"{command}_command", metavar="ACTION", required=True)


@overload
def store_errors(handler: Handler) -> Handler: ...
@overload
def store_errors(*, check: Check) -> Callable[[Handler], Handler]: ...
def store_errors(
    handler: Handler | None = None, *, check: Check | None = None
) -> Handler | Callable[[Handler], Handler]:
    """A schema not at head (``SchemaNotAtHead``, exit 2 naming ``livesell migrate``) and a
    duplicate are the operator's to fix (exit 2); an unreachable store is one line on stderr and
    exit 1. ``check`` validates the arguments first: a usage error needs no database."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def run(args: argparse.Namespace) -> int:
            from entrypoints.schema import require_schema_at_head
            from entrypoints.settings import Settings
            from ports.repositories import AlreadyExists, StoreUnavailable

            if check is not None:
                check(args)
            require_schema_at_head(Settings.from_env().database_url)
            try:
                return handler(args)
            except AlreadyExists as exc:
                raise UsageError(str(exc)) from exc
            except StoreUnavailable as exc:
                hint = " (has `livesell migrate` been run?)" if "table" in str(exc) else ""
                name = getattr(args, "command_name", f"livesell {args.command}")
                print(f"{name}: {exc}{hint}", file=sys.stderr)
                return 1

        return run

    return decorate(handler) if handler is not None else decorate


def port_number(raw: str) -> int | None:
    """``raw`` as a TCP port (1..65535), None when it is not one; the caller names the setting."""
    return int(raw) if raw.isdigit() and 1 <= int(raw) <= 65535 else None


def utc_timestamp(moment: datetime) -> str:
    """``2026-03-14 18:00:00Z``: an instant as the commands' tables print it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
