"""In-memory tenants and the seller directory."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import attrs

from adapters.memory.repositories.base import _Repo
from domain.errors import UnknownTenant
from domain.tenants import Seller, Tenant
from ports.repositories import AlreadyExists


class MemoryTenantRepository(_Repo):
    def get(self, tenant_id: str) -> Tenant | None:
        return self._store.tenants.get(tenant_id)

    def find_by_whatsapp_number(self, number_e164: str) -> Tenant | None:
        for tenant in self._store.tenants.values():
            if tenant.whatsapp_number == number_e164:
                return tenant
        return None

    def find_by_meta_phone_number_id(self, phone_number_id: str) -> Tenant | None:
        for tenant in self._store.tenants.values():
            if tenant.meta_phone_number_id == phone_number_id:
                return tenant
        return None

    def add(self, tenant: Tenant) -> None:
        if tenant.id in self._store.tenants:
            raise AlreadyExists(f"tenant {tenant.id!r} already exists")
        if tenant.whatsapp_number and self.find_by_whatsapp_number(tenant.whatsapp_number):
            raise AlreadyExists("another tenant already uses this WhatsApp number")
        if tenant.meta_phone_number_id and self.find_by_meta_phone_number_id(
            tenant.meta_phone_number_id
        ):
            raise AlreadyExists("another tenant already uses this Meta phone-number id")
        self._journal.put(self._store.tenants, tenant.id, tenant)

    def list(self) -> Sequence[Tenant]:
        return sorted(self._store.tenants.values(), key=lambda t: t.id)

    def get_many(self, tenant_ids: Collection[str]) -> dict[str, Tenant]:
        return {i: self._store.tenants[i] for i in tenant_ids if i in self._store.tenants}

    def update_window_policy(self, tenant: Tenant) -> bool:
        stored = self._store.tenants.get(tenant.id)
        if stored is None:
            return False
        changed = attrs.evolve(
            stored,
            window_policy=tenant.window_policy,
            fallback_content_sid=tenant.fallback_content_sid,
            fallback_variable=tenant.fallback_variable,
        )
        self._journal.put(self._store.tenants, tenant.id, changed)
        return True


class MemorySellerDirectory(_Repo):
    """Sellers keyed by ``(tenant_id, phone_key)``, the unique key of the sellers table."""

    def find_by_key(self, tenant_id: str, phone_key: str) -> Seller | None:
        return self._store.sellers.get((tenant_id, phone_key))

    def add(self, seller: Seller) -> None:
        key = (seller.tenant_id, seller.phone_key)
        if seller.tenant_id not in self._store.tenants:
            raise UnknownTenant(seller.tenant_id)
        if key in self._store.sellers:
            raise AlreadyExists("the tenant already has a seller with this phone")
        self._journal.put(self._store.sellers, key, seller)

    def list(self, tenant_id: str) -> Sequence[Seller]:
        return [s for (t, _), s in self._store.sellers.items() if t == tenant_id]
