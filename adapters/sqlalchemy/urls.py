"""Database URLs as this adapter's engines take them: the embedded default, and the URLs that
Postgres hosts hand out (``postgres://``, ``postgresql://``: Neon, Railway) given the psycopg 3
driver. Only the standard library is imported: ``entrypoints.settings`` and ``alembic/env.py``
(``alembic upgrade head`` run by hand) read it without loading SQLAlchemy."""

from __future__ import annotations

DEFAULT_DATABASE_URL = "sqlite:///livesell.db"


class UnsupportedDatabaseUrl(ValueError):
    """A database URL the adapter cannot use: not a URL, or neither Postgres nor SQLite."""


def normalise_database_url(url: str) -> str:
    """``postgres://`` and ``postgresql://`` use psycopg 3; a SQLite URL is kept as it is.
    Raises UnsupportedDatabaseUrl (its text says what to use) for anything else."""
    scheme, _, rest = url.partition("://")
    if not rest:
        raise UnsupportedDatabaseUrl("is not a URL (use postgresql://… or sqlite:///path)")
    if scheme in ("postgres", "postgresql", "postgresql+psycopg"):
        return "postgresql+psycopg://" + rest
    if scheme in ("sqlite", "sqlite+pysqlite"):
        return url
    raise UnsupportedDatabaseUrl(
        f"scheme {scheme!r} is not supported (use postgresql://, postgres:// or sqlite:///path)"
    )
