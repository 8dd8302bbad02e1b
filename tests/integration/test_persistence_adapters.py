"""What the SQL adapters promise beyond the port contracts: aware UTC instants on both backends,
the SQLite connection settings, and store failures translated into ``StoreUnavailable``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from adapters.sqlalchemy.engine import build_engine
from adapters.sqlalchemy.unit_of_work import SqlUnitOfWorkFactory
from domain.tenants import Tenant
from ports.repositories import StoreUnavailable
from tests.contract.builders import tenant

PARIS = timezone(timedelta(hours=2))


@pytest.fixture(params=["sqlite", "postgres"])
def sql_uow_factory(request: pytest.FixtureRequest) -> SqlUnitOfWorkFactory:
    name = "sqlite_uow_factory" if request.param == "sqlite" else "pg_uow_factory"
    factory: SqlUnitOfWorkFactory = request.getfixturevalue(name)
    return factory


class TestInstants:
    def test_an_instant_in_any_offset_reads_back_as_the_same_instant_in_utc(
        self, sql_uow_factory: SqlUnitOfWorkFactory
    ) -> None:
        created = datetime(2026, 6, 1, 14, 30, 15, 123456, tzinfo=PARIS)
        with sql_uow_factory() as uow:
            uow.tenants.add(Tenant(id="shop-a", name="A", created_at=created))
            uow.commit()

        with sql_uow_factory() as uow:
            stored = uow.tenants.get("shop-a")

        assert stored is not None
        assert created == stored.created_at
        assert UTC == stored.created_at.tzinfo
        assert datetime(2026, 6, 1, 12, 30, 15, 123456, tzinfo=UTC) == stored.created_at

    def test_a_naive_datetime_is_refused(self, sql_uow_factory: SqlUnitOfWorkFactory) -> None:
        naive = Tenant(id="shop-a", name="A", created_at=datetime(2026, 1, 1))

        with sql_uow_factory() as uow, pytest.raises(sa.exc.StatementError, match="naive"):
            uow.tenants.add(naive)


class TestSqliteConnections:
    def test_foreign_keys_wal_and_a_busy_timeout_are_on(self, sqlite_engine: Engine) -> None:
        with sqlite_engine.connect() as connection:
            settings = [
                connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("foreign_keys", "journal_mode", "busy_timeout")
            ]

        assert [1, "wal", 30000] == settings


class TestStoreUnavailable:
    def test_an_unreachable_postgres_raises_store_unavailable_on_enter(self) -> None:
        engine = build_engine("postgresql+psycopg://postgres@127.0.0.1:1/nowhere", pool_size=1)

        with pytest.raises(StoreUnavailable), SqlUnitOfWorkFactory(engine)():
            pass

    def test_a_connection_killed_mid_transaction_raises_store_unavailable(
        self, pg_uow_factory: SqlUnitOfWorkFactory, postgres_url: str
    ) -> None:
        uow = pg_uow_factory()
        with uow:
            uow.tenants.add(tenant("shop-a"))
            pid = uow._tx.connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            _terminate(postgres_url, pid)
            with pytest.raises(StoreUnavailable):
                uow.commit()

        with pg_uow_factory() as again:
            assert again.tenants.get("shop-a") is None

    def test_a_pooled_connection_dropped_while_idle_is_replaced_by_the_next_unit_of_work(
        self, pg_engine: Engine, pg_uow_factory: SqlUnitOfWorkFactory, postgres_url: str
    ) -> None:
        # No ping on checkout (ADR 0028): the first statement finds the connection dead and the
        # unit of work carries on, on a fresh one, without an error for the caller.
        with pg_uow_factory() as uow:
            uow.tenants.add(tenant("shop-a"))
            uow.commit()
            pid = uow._tx.connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        _terminate(postgres_url, pid)

        with pg_uow_factory() as uow:
            found = uow.tenants.get("shop-a")
            now_pid = uow._tx.connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()

        assert found is not None
        assert pid != now_pid

    def test_a_connection_lost_after_the_first_statement_is_not_replaced(
        self, pg_uow_factory: SqlUnitOfWorkFactory, postgres_url: str
    ) -> None:
        with pg_uow_factory() as uow:
            uow.tenants.add(tenant("shop-a"))
            uow.commit()
        with pg_uow_factory() as uow:
            assert uow.tenants.get("shop-a") is not None
            pid = uow._tx.connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            _terminate(postgres_url, pid)
            with pytest.raises(StoreUnavailable):
                uow.tenants.get("shop-a")


def _terminate(url: str, pid: object) -> None:
    engine = sa.create_engine(url, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        engine.dispose()
