"""``livesell sellers add|list``: the phones whose messages count as the seller's."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from typing import Any, overload

from application.tenants import add_seller
from domain.errors import UnknownTenant
from entrypoints.container import build
from entrypoints.schema import require_schema_at_head
from entrypoints.settings import Settings
from ports.repositories import AlreadyExists, StoreUnavailable

Handler = Callable[[argparse.Namespace], int]


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("sellers", help="register and list sellers")
    actions = parser.add_subparsers(dest="sellers_command", metavar="ACTION", required=True)
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


@overload
def store_errors(handler: Handler) -> Handler: ...
@overload
def store_errors(
    *, check: Callable[[argparse.Namespace], None]
) -> Callable[[Handler], Handler]: ...
def store_errors(
    handler: Handler | None = None, *, check: Callable[[argparse.Namespace], None] | None = None
) -> Handler | Callable[[Handler], Handler]:
    """A schema not at head (``SchemaNotAtHead``, exit 2 naming ``livesell migrate``) and a
    duplicate are the operator's to fix (exit 2); an unreachable store is one line on stderr and
    exit 1. ``check`` validates the arguments first: a usage error needs no database."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def run(args: argparse.Namespace) -> int:
            from entrypoints.cli import UsageError

            if check is not None:
                check(args)
            require_schema_at_head(Settings.from_env().database_url)
            try:
                return handler(args)
            except AlreadyExists as exc:
                raise UsageError(str(exc)) from exc
            except StoreUnavailable as exc:
                hint = " (has `livesell migrate` been run?)" if "table" in str(exc) else ""
                name = getattr(args, "command_name", f"livesell {args.command}")
                print(f"{name}: {exc}{hint}", file=sys.stderr)
                return 1

        return run

    return decorate(handler) if handler is not None else decorate


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
