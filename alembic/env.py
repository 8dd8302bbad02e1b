"""Alembic environment: the same MetaData as the adapters (``adapters.sqlalchemy.tables``).

The URL is, first found: ``config.attributes["url"]`` (set by ``adapters.sqlalchemy.migrations``
for ``livesell migrate``, the embedded demo and the tests), ``-x url=...``, ``DATABASE_URL`` (for
``alembic upgrade head`` run by hand), else the embedded default; normalised as the service does
(``adapters.sqlalchemy.urls``). A caller may also hand over an open connection in
``config.attributes["connection"]``. Nothing of ``entrypoints`` is imported: the migrations need
the adapter's tables, not the service's settings.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from adapters.sqlalchemy.tables import metadata
from adapters.sqlalchemy.urls import DEFAULT_DATABASE_URL, normalise_database_url
from alembic import context

config = context.config
target_metadata = metadata

if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    url = (
        config.attributes.get("url")
        or context.get_x_argument(as_dictionary=True).get("url")
        or os.environ.get("DATABASE_URL", "").strip()
        or DEFAULT_DATABASE_URL
    )
    return normalise_database_url(str(url))


def _configure(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: future revisions get copy-and-move batches.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        compare_server_default=True,
    )


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    # A plain engine: no pool to keep, and SQLite's foreign keys stay off while tables are
    # rebuilt in batch mode.
    engine = sa.create_engine(_url(), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
