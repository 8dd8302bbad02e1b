"""``livesell outbox send``: write one outbound message to the outbox and print its id.

The message goes out through the outbox sender like any other (``livesell worker --only outbox``):
a free-form ``--body`` (with an optional ``--media`` URL), or a template ``--template HX...``
(Twilio) or ``--template name:language`` (Meta, ADR 0023) with its ``--var NAME=VALUE``;
``--expires-in 10m`` drops it unsent if it has not gone out by then. A bad phone, an unknown
tenant, content Twilio would refuse, a malformed ``--var`` or duration exits 2 with one line
saying so.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import timedelta
from typing import Any

from application.outbox import queue_outbound_message
from domain.errors import DomainError
from entrypoints.commands.support import UsageError, add_actions
from entrypoints.container import build
from entrypoints.schema import require_schema_at_head


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("outbox", help="the outbound message outbox")
    actions = add_actions(parser, "outbox")
    send = actions.add_parser(
        "send",
        help="write one outbound WhatsApp message to the outbox",
        description="Write one pending message to messages_out and print its id.",
    )
    send.add_argument("--tenant", required=True, help="the tenant id")
    send.add_argument(
        "--to",
        required=True,
        help="the recipient's phone (E.164, or national in the tenant's region; whatsapp: allowed)",
    )
    send.add_argument(
        "--body",
        default="",
        help="the message text (at most 4096 characters); none with --template",
    )
    send.add_argument(
        "--template",
        metavar="HX...|NAME:LANG",
        help="send this approved template instead of a body: a Twilio Content SID (HX...) or, "
        "for a tenant on Meta, a Meta template name and language (order_ready:fr)",
    )
    send.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a template variable, e.g. --var 1=Robe (repeatable)",
    )
    send.add_argument(
        "--media",
        action="append",
        default=[],
        metavar="URL",
        help="an http(s) media URL sent with the body (WhatsApp takes one)",
    )
    send.add_argument(
        "--expires-in",
        metavar="DURATION",
        help="not sent at all if not handed to the provider within this time: 30s, 10m, 2h",
    )
    send.add_argument(
        "--correlation-id", help="carried into every log line and event (default: a new id)"
    )
    send.set_defaults(handler=send_message)


_DURATION = re.compile(r"(\d+)([smh])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> timedelta:
    """``30s``, ``10m``, ``2h`` -> a positive timedelta; UsageError otherwise."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise UsageError(
            f"--expires-in {text!r}: expected a positive whole number of s, m or h (30s, 10m, 2h)"
        )
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def parse_variables(pairs: list[str]) -> dict[str, str] | None:
    """``["1=Robe", "2=39 EUR"]`` -> ``{"1": "Robe", "2": "39 EUR"}``; None for none."""
    variables: dict[str, str] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or not name.strip():
            raise UsageError(f"--var {pair!r}: expected NAME=VALUE, e.g. --var 1=Robe")
        variables[name.strip()] = value
    return variables or None


def send_message(args: argparse.Namespace) -> int:
    variables = parse_variables(args.var)
    if variables is not None and args.template is None:
        raise UsageError("--var needs --template")
    expires_in = parse_duration(args.expires_in) if args.expires_in is not None else None
    container = build()
    require_schema_at_head(container.settings().database_url)
    ids = container.ids()
    correlation_id = args.correlation_id or f"cli-{ids.new_id()}"
    try:
        message_id = queue_outbound_message(
            uow_factory=container.uow_factory(),
            tenant_id=args.tenant,
            to=args.to,
            body=args.body,
            correlation_id=correlation_id,
            clock=container.clock(),
            ids=ids,
            content_sid=args.template,
            content_variables=variables,
            media_urls=args.media,
            expires_in=expires_in,
        )
    except DomainError:
        raise  # unknown tenant, invalid phone, refused content: cli.main prints them, exits 2
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    print(message_id, file=sys.stdout)
    return 0
