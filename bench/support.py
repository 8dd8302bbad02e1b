"""Shared by the benchmarks: a throwaway Postgres database and the repository on sys.path."""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from adapters.sqlalchemy import migrations  # noqa: E402
from entrypoints.settings import normalise_database_url  # noqa: E402

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432"
START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


@contextmanager
def bench_database(server: str = DEFAULT_SERVER, prefix: str = "livesell_bench") -> Iterator[str]:
    """A new database ``<prefix>_<random>`` migrated to head; dropped on the way out."""
    base = sa.make_url(normalise_database_url(server))
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = sa.create_engine(
        base.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=sa.NullPool
    )
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        raise SystemExit(
            f"Postgres is unreachable at {server}; start it: {START_POSTGRES}"
        ) from exc
    url = base.set(database=name).render_as_string(hide_password=False)
    try:
        migrations.upgrade(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@contextmanager
def json_output(enabled: bool) -> Iterator[dict[str, Any]]:
    """``--json`` for a benchmark: while it runs, its usual lines go to stderr; on the way out the
    dict it filled is printed on stdout as one JSON document (for bench/summary.py)."""
    figures: dict[str, Any] = {}
    if not enabled:
        yield figures
        return
    stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield figures
    finally:
        sys.stdout = stdout
    print(json.dumps(figures, indent=2, default=str))
