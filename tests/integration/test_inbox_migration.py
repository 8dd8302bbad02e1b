"""Migration 0008 ends the rows the reconciler looped on (issue 11 §1, ADR 0010), on Postgres and
SQLite: a row still ``received`` with a ``webhook-processing`` dead letter not replayed yet is
moved to ``rejected`` with that dead letter's reason and id; nothing else moves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from adapters.sqlalchemy import migrations
from tests.conftest import create_postgres_database, drop_postgres_database

BEFORE = "0007_outbox_delivery_status"
T = "2026-11-30 10:00:{:02d}+00:00"


@pytest.fixture(params=["postgres", "sqlite"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrating.db'}"
        return
    url = create_postgres_database("livesell_migration_0008")
    try:
        yield url
    finally:
        drop_postgres_database(url)


def at(second: int, sqlite: bool) -> str:
    moment = T.format(second)
    return moment.replace("+00:00", ".000000") if sqlite else moment


def seed_looping_rows(engine: sa.Engine, sqlite: bool) -> None:
    def inbound(sid: str, status: str) -> dict[str, object]:
        return {"id": f"in-{sid}", "sid": sid, "status": status, "at": at(0, sqlite)}

    def dead(dl_id: str, sid: str, second: int, replayed: bool = False) -> dict[str, object]:
        return {
            "id": dl_id,
            "sid": sid,
            "at": at(second, sqlite),
            "replayed": at(second + 1, sqlite) if replayed else None,
        }

    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO tenants (id, name, whatsapp_number, default_region, created_at)"
                " VALUES ('shop-a', 'Shop A', '+14155238886', 'FR', :at)"
            ),
            {"at": at(0, sqlite)},
        )
        connection.execute(
            sa.text(
                "INSERT INTO inbound_messages (id, tenant_id, provider_message_id, from_phone,"
                " body, status, correlation_id, num_media, media_urls, received_at)"
                " VALUES (:id, 'shop-a', :sid, 'whatsapp:+5215512345678', 'hola', :status,"
                " 'corr', 0, '[]', :at)"
            ),
            [
                inbound("SM-looping", "received"),
                inbound("SM-replayed", "received"),
                inbound("SM-waiting", "received"),
                inbound("SM-done", "processed"),
            ],
        )
        connection.execute(
            sa.text(
                "INSERT INTO dead_letter_jobs (id, tenant_id, source, source_id, payload, error,"
                " error_code, attempts, created_at, replayed_at)"
                " VALUES (:id, 'shop-a', 'webhook-processing', :sid, '{}', 'invalid phone',"
                " 'invalid_phone', 1, :at, :replayed)"
            ),
            [
                dead("dl-pass-1", "SM-looping", 10),
                dead("dl-pass-2", "SM-looping", 20),
                dead("dl-replayed", "SM-replayed", 10, replayed=True),
                dead("dl-done", "SM-done", 10),
            ],
        )


class TestMigration0008:
    def test_looping_received_rows_become_rejected_on_their_newest_open_dead_letter(
        self, database: str
    ) -> None:
        sqlite = database.startswith("sqlite")
        migrations.upgrade(database, BEFORE)
        engine = sa.create_engine(database, poolclass=sa.NullPool)
        seed_looping_rows(engine, sqlite)

        migrations.upgrade(database)

        with engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT provider_message_id, status, reject_reason, dead_letter_id"
                    " FROM inbound_messages ORDER BY provider_message_id"
                )
            ).all()
        engine.dispose()
        assert [
            ("SM-done", "processed", None, None),
            ("SM-looping", "rejected", "invalid_phone", "dl-pass-2"),
            ("SM-replayed", "received", None, None),
            ("SM-waiting", "received", None, None),
        ] == [tuple(r) for r in rows]

    def test_downgrade_returns_rejected_rows_to_received(self, database: str) -> None:
        sqlite = database.startswith("sqlite")
        migrations.upgrade(database, BEFORE)
        engine = sa.create_engine(database, poolclass=sa.NullPool)
        seed_looping_rows(engine, sqlite)
        migrations.upgrade(database)

        migrations.downgrade(database, BEFORE)

        with engine.connect() as connection:
            statuses = connection.execute(
                sa.text("SELECT status, count(*) FROM inbound_messages GROUP BY status")
            ).all()
        engine.dispose()
        assert {("processed", 1), ("received", 3)} == {tuple(r) for r in statuses}
