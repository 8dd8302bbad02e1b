"""``livesell sellers add|list``: the phones whose messages count as the seller's."""

from __future__ import annotations

import argparse
from typing import Any

from application.tenants import add_seller
from domain.errors import UnknownTenant
from entrypoints.commands.support import add_actions, store_errors
from entrypoints.container import build


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("sellers", help="register and list sellers")
    actions = add_actions(parser, "sellers")
    add = actions.add_parser(
        "add",
        help="register a seller's phone",
        description="Register a seller's phone; it is normalised with the tenant's region.",
    )
    add.add_argument("--tenant", required=True, help="the tenant id")
    add.add_argument(
        "--phone", required=True, help="the seller's phone (E.164, national, whatsapp: allowed)"
    )
    add.add_argument("--name", help="the seller's name")
    add.set_defaults(handler=add_command)
    listing = actions.add_parser("list", help="list a tenant's sellers")
    listing.add_argument("--tenant", required=True, help="the tenant id")
    listing.set_defaults(handler=list_command)


@store_errors
def add_command(args: argparse.Namespace) -> int:
    container = build()
    seller = add_seller(
        uow_factory=container.uow_factory(),
        clock=container.clock(),
        ids=container.ids(),
        tenant_id=args.tenant,
        phone=args.phone,
        name=args.name,
    )
    print(f"Seller {seller.phone_e164} added to tenant {seller.tenant_id} (id {seller.id})")
    return 0


@store_errors
def list_command(args: argparse.Namespace) -> int:
    container = build()
    with container.uow_factory()() as uow:
        if uow.tenants.get(args.tenant) is None:
            raise UnknownTenant(args.tenant)
        sellers = list(uow.sellers.list(args.tenant))
    for seller in sellers:
        print(f"{seller.id}\t{seller.phone_e164}\t{seller.name or '-'}")
    return 0
