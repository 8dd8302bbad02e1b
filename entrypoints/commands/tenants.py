"""``livesell tenants add|set|list``: the shops an operator registers before their first message,
and what their free-form messages do outside the customer-service window (ADR 0021)."""

from __future__ import annotations

import argparse
from typing import Any

from application.tenants import add_tenant, set_window_policy
from domain.service_window import DEFAULT_FALLBACK_VARIABLE, WindowPolicy, check_content_sid
from domain.tenants import DEFAULT_REGION, META, PROVIDERS, TWILIO, Tenant, check_tenant_id
from entrypoints.commands.support import UsageError, add_actions, store_errors
from entrypoints.container import build

POLICIES = "|".join(p.value for p in WindowPolicy)


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
    _window_arguments(add)
    add.set_defaults(handler=add_command)
    change = actions.add_parser(
        "set",
        help="change a tenant's customer-service window policy",
        description="Change what a tenant's free-form messages do outside WhatsApp's 24-hour "
        "customer-service window, and its fallback template.",
    )
    change.add_argument("--id", required=True, dest="tenant_id", help="the tenant id (tenantId)")
    _window_arguments(change)
    change.set_defaults(handler=set_command)
    listing = actions.add_parser("list", help="list every tenant")
    listing.set_defaults(handler=list_command)


def _window_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--window-policy",
        metavar=POLICIES,
        help="a free-form message to a customer outside the 24-hour window: send it as written "
        "(the default), send the fallback template instead, or drop it (dead, outside_window)",
    )
    parser.add_argument(
        "--fallback-template",
        metavar="HX...|NAME:LANG",
        help="the approved template sent outside the window: a Twilio Content SID, or a Meta"
        " template name and language (ADR 0023)",
    )
    parser.add_argument(
        "--fallback-variable",
        metavar="NAME",
        help="the template variable the message's body fills "
        f"(default {DEFAULT_FALLBACK_VARIABLE})",
    )


def _policy(args: argparse.Namespace) -> WindowPolicy | None:
    """``--window-policy`` read; raises UsageError for an unknown one."""
    if args.window_policy is None:
        return None
    try:
        return WindowPolicy(args.window_policy.strip().lower())
    except ValueError:
        raise UsageError(
            f"--window-policy must be one of {POLICIES}, got {args.window_policy!r}"
        ) from None


def _check_window(args: argparse.Namespace) -> None:
    _policy(args)
    if args.fallback_template is not None:
        check_content_sid(args.fallback_template)


def _check_add(args: argparse.Namespace) -> None:
    check_tenant_id(args.tenant_id)
    if args.provider == META and not args.meta_phone_number_id:
        raise UsageError("--provider meta needs --meta-phone-number-id")
    if args.provider != META and args.meta_phone_number_id:
        raise UsageError("--meta-phone-number-id is for --provider meta")
    _check_window(args)


def _check_set(args: argparse.Namespace) -> None:
    _check_window(args)
    if (args.window_policy, args.fallback_template, args.fallback_variable) == (None,) * 3:
        raise UsageError("nothing to change: give --window-policy, --fallback-template or both")


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
        window_policy=_policy(args) or WindowPolicy.SEND,
        fallback_content_sid=args.fallback_template,
        fallback_variable=args.fallback_variable or DEFAULT_FALLBACK_VARIABLE,
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


@store_errors(check=_check_set)
def set_command(args: argparse.Namespace) -> int:
    container = build()
    tenant = set_window_policy(
        uow_factory=container.uow_factory(),
        tenant_id=args.tenant_id,
        policy=_policy(args),
        fallback_content_sid=args.fallback_template,
        fallback_variable=args.fallback_variable,
    )
    print(f"Tenant {tenant.id}: outside the window, {_window(tenant)}")
    return 0


def _window(tenant: Tenant) -> str:
    template = tenant.fallback_content_sid
    if tenant.window_policy is WindowPolicy.TEMPLATE:
        return f"template {template} (body as {{{{{tenant.fallback_variable}}}}})"
    fallback = f", fallback template {template}" if template else ""
    return f"{tenant.window_policy.value}{fallback}"


@store_errors
def list_command(args: argparse.Namespace) -> int:
    container = build()
    with container.uow_factory()() as uow:
        tenants = list(uow.tenants.list())
    for tenant in tenants:
        print(
            f"{tenant.id}\t{tenant.name}\t{tenant.default_region}\t{tenant.whatsapp_number or '-'}"
            f"\twindow: {_window(tenant)}"
            f"\t{_provider_of(tenant)}"
        )
    return 0


def _provider_of(tenant: Tenant) -> str:
    """``twilio``, or ``meta:<phone-number id>``."""
    return f"{META}:{tenant.meta_phone_number_id}" if tenant.provider == META else tenant.provider
