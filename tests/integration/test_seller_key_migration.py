"""Migration 0009 (ADR 0012): existing sellers get the canonical key of their number, and two
sellers of one tenant holding two forms of one number stop the upgrade with their ids."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from adapters.sqlalchemy import migrations
from tests.conftest import create_postgres_database, drop_postgres_database

BEFORE = "0008_inbound_terminal_states"
KEY_REVISION = "0009_seller_phone_key"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["postgres", "sqlite"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'keys.db'}"
        return
    url = create_postgres_database("livesell_keys")
    try:
        yield url
    finally:
        drop_postgres_database(url)


def run(url: str, sql: str, rows: list[dict[str, object]] | None = None) -> list[sa.Row[object]]:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.begin() as connection:
            result = connection.execute(sa.text(sql), rows or [])
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def seed(url: str, *sellers: tuple[str, str, str]) -> None:
    migrations.upgrade(url, BEFORE)
    run(url, "INSERT INTO tenants (id, name, created_at) VALUES ('shop-a', 'A', :t)", [{"t": T0}])
    run(url, "INSERT INTO tenants (id, name, created_at) VALUES ('shop-b', 'B', :t)", [{"t": T0}])
    run(
        url,
        "INSERT INTO sellers (id, tenant_id, phone_e164, created_at) VALUES (:i, :tenant, :p, :t)",
        [{"i": i, "tenant": tenant, "p": p, "t": T0} for i, tenant, p in sellers],
    )


class TestBackfillingTheKey:
    def test_every_existing_seller_gets_the_key_of_its_number(self, database: str) -> None:
        seed(
            database,
            ("s1", "shop-a", "+5491123456789"),
            ("s2", "shop-a", "+33612345678"),
            ("s3", "shop-b", "+541123456789"),
        )

        migrations.upgrade(database, KEY_REVISION)

        rows = run(database, "SELECT id, phone_e164, phone_key FROM sellers ORDER BY id")
        assert [
            ("s1", "+5491123456789", "+541123456789"),
            ("s2", "+33612345678", "+33612345678"),
            ("s3", "+541123456789", "+541123456789"),
        ] == [tuple(r) for r in rows]

    def test_the_key_is_unique_per_tenant_after_the_upgrade(self, database: str) -> None:
        seed(database, ("s1", "shop-a", "+5491123456789"))
        migrations.upgrade(database, KEY_REVISION)

        with pytest.raises(sa.exc.IntegrityError):
            run(
                database,
                "INSERT INTO sellers (id, tenant_id, phone_e164, phone_key, created_at)"
                " VALUES ('s2', 'shop-a', '+541123456789', '+541123456789', :t)",
                [{"t": T0}],
            )

    def test_two_forms_of_one_number_in_one_tenant_stop_the_upgrade_naming_the_sellers(
        self, database: str
    ) -> None:
        seed(database, ("s1", "shop-a", "+5491123456789"), ("s2", "shop-a", "+541123456789"))

        with pytest.raises(RuntimeError, match="tenant shop-a: sellers s1, s2") as caught:
            migrations.upgrade(database, KEY_REVISION)

        assert "6789" not in str(caught.value)
        assert BEFORE == migrations.current(database)
        run(database, "DELETE FROM sellers WHERE id = 's2'")
        migrations.upgrade(database, KEY_REVISION)
        assert KEY_REVISION == migrations.current(database)

    def test_the_downgrade_removes_the_key_and_keeps_the_sellers(self, database: str) -> None:
        seed(database, ("s1", "shop-a", "+5491123456789"))
        migrations.upgrade(database, KEY_REVISION)

        migrations.downgrade(database, BEFORE)

        columns = {c["name"] for c in sa.inspect(sa.create_engine(database)).get_columns("sellers")}
        assert "phone_key" not in columns
        assert [("s1",)] == [tuple(r) for r in run(database, "SELECT id FROM sellers")]
