"""``livesell tenants add|list``: the shops an operator registers before their first message."""

from __future__ import annotations

import argparse
from typing import Any

from application.tenants import add_tenant
from domain.tenants import DEFAULT_REGION, META, PROVIDERS, TWILIO, Tenant, check_tenant_id
from entrypoints.commands.support import UsageError, add_actions, store_errors
from entrypoints.container import build


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("tenants", help="register and list tenants")
    actions = add_actions(parser, "tenants")
    add = actions.add_parser(
        "add",
        help="register a tenant",
        description="Register a tenant (a shop that goes live on WhatsApp).",
    )
    add.add_argument("--id", required=True, dest="tenant_id", help="the tenant id (tenantId)")
    add.add_argument("--name", required=True, help="the shop's name")
    add.add_argument(
        "--whatsapp-number", help="the tenant's WhatsApp number (the `to` of its messages)"
    )
    add.add_argument(
        "--provider",
        choices=PROVIDERS,
        default=TWILIO,
        help=f"the provider that serves the tenant (default {TWILIO}): twilio sends from "
        "--whatsapp-number, meta from --meta-phone-number-id",
    )
    add.add_argument(
        "--meta-phone-number-id",
        help="the tenant's Meta business phone-number id (--provider meta; Meta's webhook "
        "names it as metadata.phone_number_id)",
    )
    add.add_argument(
        "--region",
        default=DEFAULT_REGION,
        help=f"region for numbers written without + (default {DEFAULT_REGION})",
    )
    add.set_defaults(handler=add_command)
    listing = actions.add_parser("list", help="list every tenant")
    listing.set_defaults(handler=list_command)


def _check_add(args: argparse.Namespace) -> None:
    check_tenant_id(args.tenant_id)
    if args.provider == META and not args.meta_phone_number_id:
        raise UsageError("--provider meta needs --meta-phone-number-id")
    if args.provider != META and args.meta_phone_number_id:
        raise UsageError("--meta-phone-number-id is for --provider meta")


@store_errors(check=_check_add)
def add_command(args: argparse.Namespace) -> int:
    container = build()
    tenant = add_tenant(
        uow_factory=container.uow_factory(),
        clock=container.clock(),
        tenant_id=args.tenant_id,
        name=args.name,
        whatsapp_number=args.whatsapp_number,
        region=args.region,
        provider=args.provider,
        meta_phone_number_id=args.meta_phone_number_id,
    )
    number = tenant.whatsapp_number or "no WhatsApp number"
    served = f", on meta as {tenant.meta_phone_number_id}" if tenant.provider == META else ""
    print(
        f"Tenant {tenant.id} added ({tenant.name}, region {tenant.default_region}, {number}"
        f"{served})"
    )
    return 0


@store_errors
def list_command(args: argparse.Namespace) -> int:
    container = build()
    with container.uow_factory()() as uow:
        tenants = list(uow.tenants.list())
    for tenant in tenants:
        print(
            f"{tenant.id}\t{tenant.name}\t{tenant.default_region}\t{tenant.whatsapp_number or '-'}"
            f"\t{_provider_of(tenant)}"
        )
    return 0


def _provider_of(tenant: Tenant) -> str:
    """``twilio``, or ``meta:<phone-number id>``."""
    return f"{META}:{tenant.meta_phone_number_id}" if tenant.provider == META else tenant.provider
