"""``livesell tenants add|list``: the shops an operator registers before their first message."""

from __future__ import annotations

import argparse
from typing import Any

from application.tenants import add_tenant
from domain.tenants import DEFAULT_REGION, check_tenant_id
from entrypoints.commands.support import add_actions, store_errors
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
        "--region",
        default=DEFAULT_REGION,
        help=f"region for numbers written without + (default {DEFAULT_REGION})",
    )
    add.set_defaults(handler=add_command)
    listing = actions.add_parser("list", help="list every tenant")
    listing.set_defaults(handler=list_command)


def _check_add(args: argparse.Namespace) -> None:
    check_tenant_id(args.tenant_id)


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
    )
    number = tenant.whatsapp_number or "no WhatsApp number"
    print(f"Tenant {tenant.id} added ({tenant.name}, region {tenant.default_region}, {number})")
    return 0


@store_errors
def list_command(args: argparse.Namespace) -> int:
    container = build()
    with container.uow_factory()() as uow:
        tenants = list(uow.tenants.list())
    for tenant in tenants:
        print(
            f"{tenant.id}\t{tenant.name}\t{tenant.default_region}\t{tenant.whatsapp_number or '-'}"
        )
    return 0
