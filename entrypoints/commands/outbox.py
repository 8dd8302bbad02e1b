"""``livesell outbox send``: write one outbound message to the outbox and print its id.

The message goes out through the outbox sender like any other (``livesell worker --only outbox``).
A bad phone, an unknown tenant or an oversize body exits 2 with one line saying so.
"""

from __future__ import annotations

import argparse
import sys
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
    send.add_argument("--body", required=True, help="the message text (at most 4096 characters)")
    send.add_argument(
        "--correlation-id", help="carried into every log line and event (default: a new id)"
    )
    send.set_defaults(handler=send_message)


def send_message(args: argparse.Namespace) -> int:
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
        )
    except DomainError:
        raise  # unknown tenant, invalid phone: cli.main prints them and exits 2
    except ValueError as exc:  # the oversize body
        raise UsageError(str(exc)) from exc
    print(message_id, file=sys.stdout)
    return 0
