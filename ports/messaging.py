"""Sending WhatsApp messages through a provider (Twilio in production)."""

from __future__ import annotations

from typing import Protocol

import attrs

from domain.outbox import DeliveryFailure

STATUS_CALLBACK_PATH = "/webhooks/twilio/status"
"""The webhook's path for delivery status callbacks: the provider puts it in each message's
callback URL, and the webhook serves it."""


@attrs.frozen(kw_only=True)
class SendRequest:
    """One outbound message. ``from_phone`` None means the provider's default sender number.

    Either a free-form ``body`` (with optional ``media_urls``) or a template: ``content_sid`` (a
    Twilio Content API SID, ``HX...``, or a Meta template ``name:language``, ADR 0023) and its
    ``content_variables`` (``domain.outbox.check_content``). ``validity_period``: when the
    message expires, the seconds the provider may still queue it (a Messaging Service honours
    it); None for no expiry.
    ``provider`` names the provider it goes out through (``domain.tenants.PROVIDERS``), None
    the deployment's default (ADR 0019)."""

    outbox_id: str
    tenant_id: str
    to_phone: str
    body: str
    correlation_id: str
    from_phone: str | None = None
    content_sid: str | None = None
    content_variables: dict[str, str] | None = None
    media_urls: tuple[str, ...] = ()
    validity_period: int | None = None
    provider: str | None = None


@attrs.frozen
class SendReceipt:
    """The provider accepted the message under this id (Twilio's MessageSid)."""

    provider_message_id: str


class DeliveryFailed(Exception):
    """A send failed; ``failure`` says transient or permanent, with the provider's code."""

    def __init__(self, failure: DeliveryFailure) -> None:
        self.failure = failure
        kind = "transient" if failure.transient else "permanent"
        code = f" [{failure.code}]" if failure.code else ""
        super().__init__(f"{kind} delivery failure{code}: {failure.message}")


class MessagingProvider(Protocol):
    """Delivers one message. Thread-safe: the sender calls it from several threads at once."""

    def send(self, request: SendRequest) -> SendReceipt:
        """Hand the message to the provider. Raises DeliveryFailed for every failure, never a
        vendor or transport exception.
        """
        ...

    def sender_key(self, request: SendRequest) -> str:
        """The sender number this request goes out from (the rate limit is per sender number)."""
        ...


class RateLimiter(Protocol):
    """Paces sends per key (the sender number): at most N acquisitions per second per key."""

    def acquire(self, key: str) -> None:
        """Block until one more send is allowed for ``key``."""
        ...
