"""``livesell migrate``: bring the database at ``DATABASE_URL`` to the newest schema (Alembic)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sqlalchemy import exc as sa_exc

from adapters.sqlalchemy import migrations
from entrypoints.commands.support import UsageError
from entrypoints.container import build
from entrypoints.settings import mask_url


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "migrate",
        help="create or upgrade the database schema (alembic upgrade head)",
        description="Run the Alembic migrations on DATABASE_URL (default: a local SQLite file).",
    )
    parser.add_argument(
        "--revision", default="head", help="the revision to upgrade to (default: head)"
    )
    parser.set_defaults(handler=migrate)


def migrate(args: argparse.Namespace) -> int:
    from alembic.util import CommandError

    url: str = build().settings().database_url
    try:
        migrations.upgrade(url, args.revision)
        revision = migrations.current(url)
    except CommandError as exc:  # an unknown --revision
        raise UsageError(f"--revision {args.revision!r}: {exc}") from exc
    except migrations.MigrationsNotFound as exc:
        print(f"{args.command_name}: {exc}", file=sys.stderr)
        return 1
    except sa_exc.OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0]
        print(f"{args.command_name}: cannot reach {mask_url(url)}: {reason}", file=sys.stderr)
        return 1
    print(f"Database {mask_url(url)} is at revision {revision}")
    return 0
