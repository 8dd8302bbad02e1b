"""Alembic builds the schema of SPEC §2 on Postgres and SQLite, both ways, without drift; run by
hand in a checkout (``alembic upgrade head``, which reads ``alembic.ini`` in the current folder:
https://alembic.sqlalchemy.org/en/latest/tutorial.html#running-our-first-migration) it migrates
``DATABASE_URL``, normalised as the service does."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from adapters.sqlalchemy import migrations
from adapters.sqlalchemy.tables import metadata
from tests.conftest import create_postgres_database, drop_postgres_database

ROOT = Path(__file__).resolve().parents[2]

SPEC_TABLES = {
    "tenants": {"id", "name", "whatsapp_number", "default_region", "created_at"},
    "sellers": {"id", "tenant_id", "phone_e164", "name", "created_at"},
    "live_sessions": {
        "id",
        "tenant_id",
        "status",
        "started_at",
        "last_activity_at",
        "closed_at",
        "close_reason",
    },
    "inbound_messages": {
        "id",
        "tenant_id",
        "provider_message_id",
        "from_phone",
        "body",
        "status",
        "message_type",
        "live_session_id",
        "correlation_id",
        "received_at",
        "processed_at",
    },
    "messages_out": {
        "id",
        "tenant_id",
        "to_phone",
        "body",
        "status",
        "attempts",
        "next_attempt_at",
        "locked_until",
        "last_error",
        "last_error_code",
        "provider_message_id",
        "correlation_id",
        "created_at",
        "updated_at",
        "sent_at",
    },
    "dead_letter_jobs": {
        "id",
        "tenant_id",
        "source",
        "source_id",
        "payload",
        "error",
        "error_code",
        "attempts",
        "created_at",
        "replayed_at",
    },
    "event_logs": {
        "id",
        "tenant_id",
        "event_type",
        "subject_id",
        "payload",
        "correlation_id",
        "created_at",
    },
}


@pytest.fixture(params=["postgres", "sqlite"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own (not the session's migrated one)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    url = create_postgres_database("livesell_migrations")
    try:
        yield url
    finally:
        drop_postgres_database(url)


def differences(url: str) -> list[object]:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def inspect(url: str) -> sa.Inspector:
    return sa.inspect(sa.create_engine(url, poolclass=sa.NullPool))


class TestMigrations:
    def test_upgrade_builds_every_table_and_column_of_the_spec(self, empty_database: str) -> None:
        migrations.upgrade(empty_database)

        inspector = inspect(empty_database)
        columns = {t: {c["name"] for c in inspector.get_columns(t)} for t in SPEC_TABLES}
        assert all(SPEC_TABLES[t] <= columns[t] for t in SPEC_TABLES), columns
        assert migrations.head() == migrations.current(empty_database)

    def test_alembic_run_by_hand_migrates_database_url_without_the_service_s_settings(
        self, empty_database: str
    ) -> None:
        handed_out = empty_database.replace("postgresql+psycopg://", "postgres://")  # as Neon does
        script = (
            "import sys\n"
            "from alembic.config import main\n"
            "main(['upgrade', 'head'])\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'entrypoints'))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": handed_out},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

        assert (0, "[]") == (done.returncode, done.stdout.strip()), done.stderr
        assert migrations.head() == migrations.current(empty_database)

    def test_the_active_session_key_is_a_partial_unique_index(self, empty_database: str) -> None:
        migrations.upgrade(empty_database)

        definition = index_definition(empty_database, "live_sessions_tenant_id_active_key")

        assert "UNIQUE" in definition.upper()
        assert "tenant_id" in definition
        assert "status = 'active'" in definition.replace("::text", "")

    def test_the_migrated_schema_matches_the_adapters_metadata(self, empty_database: str) -> None:
        migrations.upgrade(empty_database)

        assert [] == differences(empty_database)

    def test_drift_between_metadata_and_migrations_would_be_found(
        self, empty_database: str
    ) -> None:
        migrations.upgrade(empty_database)
        engine = sa.create_engine(empty_database, poolclass=sa.NullPool)
        with engine.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE tenants ADD COLUMN stray TEXT")
        engine.dispose()

        assert [] != differences(empty_database)

    def test_downgrade_to_base_removes_everything_and_upgrade_rebuilds_it(
        self, empty_database: str
    ) -> None:
        migrations.upgrade(empty_database)

        migrations.downgrade(empty_database, "base")
        left = set(inspect(empty_database).get_table_names()) - {"alembic_version"}
        migrations.upgrade(empty_database)

        assert set() == left
        assert [] == differences(empty_database)

    def test_each_revision_downgrades_one_step_at_a_time(self, empty_database: str) -> None:
        migrations.upgrade(empty_database)
        tables_seen = []
        while migrations.current(empty_database) is not None:
            migrations.downgrade(empty_database, "-1")
            tables_seen.append(set(inspect(empty_database).get_table_names()) - {"alembic_version"})

        assert set() == tables_seen[-1]
        assert all(later <= earlier for earlier, later in pairwise(tables_seen))


def index_definition(url: str, name: str) -> str:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    query = (
        "SELECT sql FROM sqlite_master WHERE name = :name"
        if url.startswith("sqlite")
        else "SELECT indexdef FROM pg_indexes WHERE indexname = :name"
    )
    try:
        with engine.connect() as connection:
            return str(connection.execute(sa.text(query), {"name": name}).scalar_one())
    finally:
        engine.dispose()


class TestConstraintNames:
    def test_check_constraints_carry_the_names_the_metadata_gives_them(
        self, empty_database: str
    ) -> None:
        migrations.upgrade(empty_database)
        inspector = inspect(empty_database)

        stored = {c["name"] for t in metadata.tables for c in inspector.get_check_constraints(t)}
        expected = {
            c.name
            for t in metadata.tables.values()
            for c in t.constraints
            if isinstance(c, sa.CheckConstraint)
        }

        assert expected == stored
