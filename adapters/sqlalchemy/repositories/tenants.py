"""The tenants repository (``ports.repositories.TenantRepository``)."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from adapters.sqlalchemy import mappers
from adapters.sqlalchemy.repositories.base import Repository
from adapters.sqlalchemy.tables import tenants
from domain.tenants import Tenant
from ports.repositories import AlreadyExists

# Built once (the inbound hot path): a statement object reused keeps its cache key memoised, so
# executing it skips SQLAlchemy's per-call construction and cache-key work (ADR 0022).
_GET = sa.select(tenants).where(tenants.c.id == sa.bindparam("tenant_id"))


class SqlTenantRepository(Repository):
    def get(self, tenant_id: str) -> Tenant | None:
        row = self._tx.execute(_GET, {"tenant_id": tenant_id}).first()
        return mappers.tenant_to_domain(row._mapping) if row else None

    def find_by_whatsapp_number(self, number_e164: str) -> Tenant | None:
        """The webhook's lookup of a tenant by the number a message was sent to (all tenants)."""
        statement = sa.select(tenants).where(tenants.c.whatsapp_number == number_e164)
        row = self._tx.execute(statement).first()
        return mappers.tenant_to_domain(row._mapping) if row else None

    def add(self, tenant: Tenant) -> None:
        try:
            with self._tx.savepoint():
                self._tx.execute(sa.insert(tenants).values(mappers.tenant_to_row(tenant)))
        except sa_exc.IntegrityError as exc:
            if self.get(tenant.id) is not None:
                raise AlreadyExists(f"tenant {tenant.id!r} already exists") from exc
            raise AlreadyExists("another tenant already uses this WhatsApp number") from exc

    def list(self) -> Sequence[Tenant]:
        rows = self._tx.execute(sa.select(tenants).order_by(tenants.c.id))
        return [mappers.tenant_to_domain(r._mapping) for r in rows]
