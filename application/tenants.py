"""Operator use cases: the data needed before the first message."""

from __future__ import annotations

from domain.errors import UnknownTenant
from domain.service_window import DEFAULT_FALLBACK_VARIABLE, WindowPolicy
from domain.tenants import DEFAULT_REGION, TWILIO, Seller, Tenant
from ports.clock import Clock, IdGenerator
from ports.unit_of_work import UnitOfWorkFactory


def add_tenant(
    *,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    tenant_id: str,
    name: str,
    whatsapp_number: str | None = None,
    region: str = DEFAULT_REGION,
    window_policy: WindowPolicy = WindowPolicy.SEND,
    fallback_content_sid: str | None = None,
    fallback_variable: str = DEFAULT_FALLBACK_VARIABLE,
    provider: str = TWILIO,
    meta_phone_number_id: str | None = None,
) -> Tenant:
    """Register a tenant on ``provider`` (Twilio by default; Meta with its phone-number id).
    Raises InvalidSetting, InvalidPhoneNumber or AlreadyExists."""
    tenant = Tenant.register(
        id=tenant_id,
        name=name,
        now=clock.now(),
        whatsapp_number=whatsapp_number,
        default_region=region,
        window_policy=window_policy,
        fallback_content_sid=fallback_content_sid,
        fallback_variable=fallback_variable,
        provider=provider,
        meta_phone_number_id=meta_phone_number_id,
    )
    with uow_factory() as uow:
        uow.tenants.add(tenant)
        uow.commit()
    return tenant


def set_window_policy(
    *,
    uow_factory: UnitOfWorkFactory,
    tenant_id: str,
    policy: WindowPolicy | None = None,
    fallback_content_sid: str | None = None,
    fallback_variable: str | None = None,
) -> Tenant:
    """Change a tenant's customer-service window policy and/or fallback template (None: keep
    it; ADR 0021). Raises UnknownTenant or InvalidSetting (``template`` without a fallback, a
    malformed Content SID)."""
    with uow_factory() as uow:
        tenant = uow.tenants.get(tenant_id)
        if tenant is None:
            raise UnknownTenant(tenant_id)
        changed = tenant.with_window_policy(
            policy, fallback_content_sid=fallback_content_sid, fallback_variable=fallback_variable
        )
        if not uow.tenants.update_window_policy(changed):
            raise UnknownTenant(tenant_id)
        uow.commit()
    return changed


def add_seller(
    *,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    ids: IdGenerator,
    tenant_id: str,
    phone: str,
    name: str | None = None,
) -> Seller:
    """Register a seller phone (read with the tenant's region). Raises UnknownTenant,
    InvalidPhoneNumber or AlreadyExists."""
    with uow_factory() as uow:
        tenant = uow.tenants.get(tenant_id)
        if tenant is None:
            raise UnknownTenant(tenant_id)
        seller = Seller.register(
            id=ids.new_id(), tenant=tenant, phone=phone, now=clock.now(), name=name
        )
        uow.sellers.add(seller)
        uow.commit()
    return seller
