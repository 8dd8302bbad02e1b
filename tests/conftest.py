"""Shared fixtures: test databases and units of work on every backend.

Fixture names are stable; other suites reuse them.

Postgres (the real server on 127.0.0.1:5432, trust auth; override the server with
``LIVESELL_TEST_POSTGRES=postgresql://user@host:port``):

- ``postgres_url`` (session): a fresh database ``livesell_test_<random>`` created for this run,
  migrated to head with Alembic, dropped at the end (its connections terminated first). Tests
  never touch a database they did not create. When the server is unreachable the test fails
  (never skips) and says how to start it.
- ``pg_engine`` (session): a pooled engine on ``postgres_url`` (``build_engine``).
- ``pg_reset`` (function): empties every table of ``postgres_url`` with one TRUNCATE.
- ``pg_uow_factory`` (function): a ``SqlUnitOfWorkFactory`` on ``pg_engine``, tables emptied
  before the test.

SQLite:

- ``sqlite_url`` (function): a migrated SQLite file in the test's tmp dir (copied from one
  migrated template per run, so it is cheap).
- ``sqlite_engine`` / ``sqlite_uow_factory`` (function): engine and units of work on it.

Memory:

- ``memory_uow_factory`` (function): a ``MemoryUnitOfWorkFactory`` over a fresh store.

All three:

- ``uow_factory`` (function): parametrized ``memory`` / ``sqlite`` / ``postgres``; contract
  suites take it so the fakes cannot drift from the databases.
- ``backend`` (function): the name of the backend ``uow_factory`` runs on.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from adapters.memory.store import MemoryUnitOfWorkFactory
from adapters.sqlalchemy import migrations
from adapters.sqlalchemy.engine import build_engine
from adapters.sqlalchemy.unit_of_work import SqlUnitOfWorkFactory
from entrypoints.settings import normalise_database_url
from ports.unit_of_work import UnitOfWorkFactory

POSTGRES_SERVER = os.environ.get("LIVESELL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
BACKENDS = ("memory", "sqlite", "postgres")


@pytest.fixture(autouse=True)
def _root_logger_restored() -> Iterator[None]:
    """Put the root logger back as it was: commands run in-process (``simulate`` sets it to
    CRITICAL) must not silence the ERROR records later tests read, e.g. what Sentry's logging
    integration turns into events."""
    root = logging.getLogger()
    level, handlers = root.level, root.handlers[:]
    yield
    root.setLevel(level)
    root.handlers[:] = handlers


def _server_url(database: str) -> sa.URL:
    return sa.make_url(normalise_database_url(POSTGRES_SERVER)).set(database=database)


def _admin_engine() -> Engine:
    return sa.create_engine(
        _server_url("postgres"),
        isolation_level="AUTOCOMMIT",
        poolclass=sa.NullPool,
        connect_args={"connect_timeout": 5},
    )


def create_postgres_database(prefix: str = "livesell_test") -> str:
    """Create an empty database ``<prefix>_<random>``; returns its URL. Fails with how to start
    Postgres when it is unreachable."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = _admin_engine()
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        pytest.fail(
            f"Postgres is unreachable at {POSTGRES_SERVER} ({exc.orig}).\n"
            f"Start it with: {START_POSTGRES}",
            pytrace=False,
        )
    finally:
        admin.dispose()
    return _server_url(name).render_as_string(hide_password=False)


def drop_postgres_database(url: str) -> None:
    """Terminate the connections to the database at ``url``, then drop it."""
    name = sa.make_url(url).database
    if name is None or not name.startswith("livesell_"):
        raise ValueError(f"refusing to drop {name!r}: not a livesell test database")
    admin = _admin_engine()
    try:
        with admin.connect() as connection:
            connection.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    url = create_postgres_database()
    try:
        migrations.upgrade(url)
        yield url
    finally:
        drop_postgres_database(url)


@pytest.fixture(scope="session")
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    engine = build_engine(postgres_url, pool_size=10)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def _pg_truncate(pg_engine: Engine) -> str:
    with pg_engine.connect() as connection:
        tables = connection.execute(
            sa.text(
                "SELECT quote_ident(tablename) FROM pg_tables"
                " WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            )
        ).scalars()
        return f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"


@pytest.fixture
def pg_reset(pg_engine: Engine, _pg_truncate: str) -> None:
    with pg_engine.begin() as connection:
        connection.exec_driver_sql(_pg_truncate)


@pytest.fixture
def pg_uow_factory(pg_engine: Engine, pg_reset: None) -> SqlUnitOfWorkFactory:
    return SqlUnitOfWorkFactory(pg_engine)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "livesell.db"
    migrations.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(_sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "livesell.db"
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    engine = build_engine(sqlite_url, pool_size=5)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_uow_factory(sqlite_engine: Engine) -> SqlUnitOfWorkFactory:
    return SqlUnitOfWorkFactory(sqlite_engine)


@pytest.fixture
def memory_uow_factory() -> MemoryUnitOfWorkFactory:
    return MemoryUnitOfWorkFactory()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def uow_factory(backend: str, request: pytest.FixtureRequest) -> UnitOfWorkFactory:
    fixture = {"memory": "memory_uow_factory", "sqlite": "sqlite_uow_factory"}.get(
        backend, "pg_uow_factory"
    )
    factory: UnitOfWorkFactory = request.getfixturevalue(fixture)
    return factory
