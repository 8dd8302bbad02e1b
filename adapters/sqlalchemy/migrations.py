"""Alembic, driven from code: ``livesell migrate``, the embedded demo and the tests call these.

The revisions are part of the installed distribution: the repository's ``alembic/`` folder is
installed as the package ``livesell_migrations`` (see setup.py and ADR 0016), so a wheel installed
anywhere finds them with no checkout beside it. No ``alembic.ini`` is read: the Config is built
here (``alembic.ini`` stays for the ``alembic`` command line in a checkout).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from alembic import command

MIGRATIONS_PACKAGE = "livesell_migrations"


class MigrationsNotFound(RuntimeError):
    """The installation has no migration scripts (a broken or partial install)."""


def script_location() -> Path:
    """The folder of ``env.py`` and ``versions/`` inside the installed distribution."""
    spec = importlib.util.find_spec(MIGRATIONS_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        if (Path(location) / "env.py").is_file():
            return Path(location)
    raise MigrationsNotFound(
        f"the package {MIGRATIONS_PACKAGE} (the Alembic revisions) is not installed; "
        "reinstall livesell"
    )


def alembic_config(url: str) -> Config:
    """A Config for ``url`` that leaves the caller's logging alone."""
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.set_main_option("path_separator", "os")
    config.attributes["url"] = url
    config.attributes["configure_logger"] = False
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def head() -> str | None:
    """The newest revision the code knows."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current(url: str) -> str | None:
    """The revision the database at ``url`` is at (None before the first migration)."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
