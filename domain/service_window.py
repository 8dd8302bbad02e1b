"""WhatsApp's customer-service window: what a free-form message may do outside it (ADR 0021).

WhatsApp accepts a free-form message to a customer only within 24 hours of that customer's last
message to the business; outside it only an approved template goes through (Twilio error 63016,
https://www.twilio.com/docs/api/errors/63016). Each tenant chooses what its free-form messages do
outside the window: ``send`` them as written (the default, as before), send its ``template``
instead, or ``drop`` them (dead, code ``outside_window``, without a provider call).
"""

from __future__ import annotations

import enum
import re
from datetime import datetime, timedelta

import attrs

from domain.errors import InvalidSetting

SERVICE_WINDOW = timedelta(hours=24)
"""The customer-service window: a customer's message opens it for exactly this long."""
OUTSIDE_WINDOW_CODE = "outside_window"
"""The error code of a message dropped outside the window (policy ``drop``)."""
DEFAULT_FALLBACK_VARIABLE = "1"
CONTENT_SID_PATTERN = re.compile(r"^HX[0-9a-fA-F]{32}$")
"""A Twilio Content SID: ``HX`` and 32 hexadecimal digits."""


class WindowPolicy(enum.StrEnum):
    """What a tenant's free-form message to a customer outside the window does."""

    SEND = "send"
    TEMPLATE = "template"
    DROP = "drop"


@attrs.frozen(kw_only=True)
class FallbackTemplate:
    """The approved template sent instead of a free-form message outside the window: the
    message's body becomes the value of one variable (``{{1}}`` by default)."""

    content_sid: str
    variable: str = DEFAULT_FALLBACK_VARIABLE

    def __attrs_post_init__(self) -> None:
        check_content_sid(self.content_sid)
        if not self.variable.strip():
            raise InvalidSetting("the fallback template's variable must not be empty")

    def variables_for(self, body: str) -> dict[str, str]:
        return {self.variable: body}


@attrs.frozen
class SendAsWritten:
    """Hand the message to the provider as it is."""


@attrs.frozen
class SendTemplate:
    """Send the tenant's fallback template, filled with the message's body, instead."""

    content_sid: str
    content_variables: dict[str, str]


@attrs.frozen
class DropOutsideWindow:
    """End the message ``dead`` (code ``outside_window``) without calling the provider."""

    last_inbound_at: datetime | None

    def error(self) -> str:
        last = self.last_inbound_at.isoformat() if self.last_inbound_at else "never"
        return (
            "outside the 24-hour customer-service window (the customer last wrote: "
            f"{last}); the tenant's window policy drops free-form messages"
        )


WindowDecision = SendAsWritten | SendTemplate | DropOutsideWindow


def inside_window(last_inbound_at: datetime | None, now: datetime) -> bool:
    """True while ``now`` is less than 24 hours after the customer's last message; a customer
    who never wrote is outside. At exactly 24 hours the window has closed."""
    return last_inbound_at is not None and now - last_inbound_at < SERVICE_WINDOW


def decide_window(
    *,
    is_template: bool,
    body: str,
    last_inbound_at: datetime | None,
    now: datetime,
    policy: WindowPolicy,
    fallback: FallbackTemplate | None,
) -> WindowDecision:
    """What to do with one message: a template, a message inside the window and any message of a
    ``send`` tenant go as written; outside the window ``template`` sends ``fallback`` with the body
    as its variable and ``drop`` drops it. Raises InvalidSetting for ``template`` without a
    fallback (``Tenant`` never holds that)."""
    if is_template or policy is WindowPolicy.SEND or inside_window(last_inbound_at, now):
        return SendAsWritten()
    if policy is WindowPolicy.DROP:
        return DropOutsideWindow(last_inbound_at)
    if fallback is None:
        raise InvalidSetting("window policy 'template' needs a fallback template")
    return SendTemplate(fallback.content_sid, fallback.variables_for(body))


def check_content_sid(content_sid: str) -> None:
    """Raises InvalidSetting unless ``content_sid`` is a template reference: a Twilio Content SID
    (``HX`` + 32 hex) or a Meta template ``<name>:<language>`` (ADR 0023), so a tenant on either
    provider can have a fallback template."""
    from domain.template_refs import meta_template  # it reads this module's pattern

    if not CONTENT_SID_PATTERN.match(content_sid) and meta_template(content_sid) is None:
        raise InvalidSetting(
            f"{content_sid!r} is not a Twilio Content SID (HX followed by 32 hexadecimal digits)"
            " nor a Meta template reference (name:language, e.g. order_update:fr)"
        )
