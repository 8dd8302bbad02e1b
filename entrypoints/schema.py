"""The schema check every command that touches the database makes (ADR 0015).

A database that was never migrated, or is behind (or ahead of) this build, must not be worked on:
an unmigrated one gave "Worker started successfully" then a loop of tracebacks, and ``livesell
tenants add`` printed raw SQL. ``require_schema_at_head`` refuses it with ``SchemaNotAtHead``, a
ConfigError, so the CLI prints one line naming ``livesell migrate`` and exits 2. A database that
cannot be reached is not judged here: the command reports that its own way (the worker and the
webhook start and say so on ``/readyz``).
"""

from __future__ import annotations

import functools
import logging

import sqlalchemy as sa

from adapters.sqlalchemy import migrations
from entrypoints.settings import ConfigError, mask_url

log = logging.getLogger("livesell.schema")

CONNECT_TIMEOUT_SECONDS = 5
VERSION_TABLE = "alembic_version"


class SchemaNotAtHead(ConfigError):
    """The database's schema is not the one this build's migrations end at."""

    def __init__(self, current: tuple[str, ...], head: str | None) -> None:
        self.current = current
        self.head = head
        found = ", ".join(current) if current else "no revision (never migrated)"
        super().__init__(
            "DATABASE_URL",
            f"the database schema is at {found}, this build needs {head}: run `livesell migrate`",
        )


@functools.cache
def expected_head() -> str | None:
    """The newest revision this build's migrations know (read once: the scripts do not change)."""
    return migrations.head()


def current_heads(connection: sa.Connection) -> tuple[str, ...]:
    """The revisions recorded in the database's ``alembic_version`` (empty before any). Read
    with a plain query: Alembic's ``MigrationContext`` logs two INFO lines each time."""
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return ()
    rows = connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars()
    return tuple(sorted(str(r) for r in rows))


def check_schema(connection: sa.Connection) -> None:
    """Raise SchemaNotAtHead unless the database is exactly at this build's head."""
    heads = current_heads(connection)
    head = expected_head()
    if heads != ((head,) if head else ()):
        raise SchemaNotAtHead(heads, head)


def require_schema_at_head(database_url: str) -> None:
    """Raise SchemaNotAtHead when the database at ``database_url`` answers and is not at head;
    return quietly when it is, or when it cannot be reached."""
    connect_args = (
        {"connect_timeout": CONNECT_TIMEOUT_SECONDS} if "postgresql" in database_url else {}
    )
    engine = sa.create_engine(database_url, poolclass=sa.NullPool, connect_args=connect_args)
    try:
        with engine.connect() as connection:
            check_schema(connection)
    except sa.exc.SQLAlchemyError as exc:
        log.warning(
            "Schema not checked: the database cannot be reached",
            extra={"context": {"database": mask_url(database_url), "error": type(exc).__name__}},
        )
    finally:
        engine.dispose()
