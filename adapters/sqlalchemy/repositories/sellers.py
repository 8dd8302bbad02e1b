"""The seller directory (``ports.repositories.SellerDirectory``)."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from adapters.sqlalchemy import mappers
from adapters.sqlalchemy.repositories.base import Repository
from adapters.sqlalchemy.tables import sellers, tenants
from domain.errors import UnknownTenant
from domain.tenants import Seller
from ports.repositories import AlreadyExists

# Built once (the inbound hot path, ADR 0022).
_FIND_BY_KEY = sa.select(sellers).where(
    sellers.c.tenant_id == sa.bindparam("tenant_id"),
    sellers.c.phone_key == sa.bindparam("phone_key"),
)


class SqlSellerDirectory(Repository):
    def find_by_key(self, tenant_id: str, phone_key: str) -> Seller | None:
        parameters = {"tenant_id": tenant_id, "phone_key": phone_key}
        row = self._tx.execute(_FIND_BY_KEY, parameters).first()
        return mappers.seller_to_domain(row._mapping) if row else None

    def add(self, seller: Seller) -> None:
        try:
            with self._tx.savepoint():
                self._tx.execute(sa.insert(sellers).values(mappers.seller_to_row(seller)))
        except sa_exc.IntegrityError as exc:
            exists = sa.select(tenants.c.id).where(tenants.c.id == seller.tenant_id)
            if self._tx.execute(exists).first() is None:
                raise UnknownTenant(seller.tenant_id) from exc
            raise AlreadyExists("the tenant already has a seller with this phone") from exc

    def list(self, tenant_id: str) -> Sequence[Seller]:
        statement = (
            sa.select(sellers)
            .where(sellers.c.tenant_id == tenant_id)
            .order_by(sellers.c.created_at, sellers.c.id)
        )
        return [mappers.seller_to_domain(r._mapping) for r in self._tx.execute(statement)]
