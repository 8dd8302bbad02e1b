"""The tenants repository (``ports.repositories.TenantRepository``)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

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

    def find_by_meta_phone_number_id(self, phone_number_id: str) -> Tenant | None:
        """Meta's webhook's lookup of a tenant by business phone-number id (all tenants)."""
        statement = sa.select(tenants).where(tenants.c.meta_phone_number_id == phone_number_id)
        row = self._tx.execute(statement).first()
        return mappers.tenant_to_domain(row._mapping) if row else None

    def add(self, tenant: Tenant) -> None:
        try:
            with self._tx.savepoint():
                self._tx.execute(sa.insert(tenants).values(mappers.tenant_to_row(tenant)))
        except sa_exc.IntegrityError as exc:
            if self.get(tenant.id) is not None:
                raise AlreadyExists(f"tenant {tenant.id!r} already exists") from exc
            if tenant.meta_phone_number_id and self.find_by_meta_phone_number_id(
                tenant.meta_phone_number_id
            ):
                raise AlreadyExists(
                    "another tenant already uses this Meta phone-number id"
                ) from exc
            raise AlreadyExists("another tenant already uses this WhatsApp number") from exc

    def list(self) -> Sequence[Tenant]:
        rows = self._tx.execute(sa.select(tenants).order_by(tenants.c.id))
        return [mappers.tenant_to_domain(r._mapping) for r in rows]

    def get_many(self, tenant_ids: Collection[str]) -> dict[str, Tenant]:
        if not tenant_ids:
            return {}
        statement = sa.select(tenants).where(tenants.c.id.in_(sorted(tenant_ids)))
        found = (mappers.tenant_to_domain(r._mapping) for r in self._tx.execute(statement))
        return {tenant.id: tenant for tenant in found}

    def update_window_policy(self, tenant: Tenant) -> bool:
        statement = (
            sa.update(tenants)
            .where(tenants.c.id == tenant.id)
            .values(mappers.tenant_window_to_row(tenant))
        )
        return bool(self._tx.execute(statement).rowcount == 1)
