"""One deployment, tenants on several providers (issue 17 §3, ADR 0019): the outbox sender talks
to one ``MessagingProvider``, and this one hands each message to the provider its request names.

The choice is made when the message is written: ``application.outbox.write_outbound_message``
copies the tenant's provider and its sender there (a Twilio WhatsApp number, a Meta
phone-number id) into the outbox row, and ``deliver`` puts both in the ``SendRequest``. A
message goes out through the provider it was written for, as it goes out from the sender it was
written with; a request that names no provider (rows written before providers were per tenant)
goes to the default.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from domain.outbox import DeliveryFailure
from ports.messaging import DeliveryFailed, MessagingProvider, SendReceipt, SendRequest

UNCONFIGURED_CODE = "provider-not-configured"


class ProviderRouter:
    """A ``MessagingProvider`` over providers by name. ``providers`` maps a provider name to a
    callable that gives it, called for each request (the container's singletons: built on first
    use, so a deployment without Meta never builds it); ``default`` serves a request
    without a provider. A request for a name this deployment does not serve fails permanently
    with a configuration error (``dlq replay`` once the provider is configured)."""

    def __init__(
        self,
        providers: Mapping[str, Callable[[], MessagingProvider]],
        *,
        default: str,
        owns: Collection[str] = (),
    ) -> None:
        if default not in providers:
            raise ValueError(f"the default provider {default!r} is not one of {sorted(providers)}")
        self._makers = dict(providers)
        self._used: dict[str, MessagingProvider] = {}
        self._owns = frozenset(owns)
        self.default = default

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._makers))

    def provider_for(self, request: SendRequest) -> MessagingProvider:
        """The provider ``request`` goes out through. Raises DeliveryFailed (permanent) for a
        provider this deployment does not serve."""
        name = request.provider or self.default
        maker = self._makers.get(name)
        if maker is None:
            raise DeliveryFailed(
                DeliveryFailure(
                    transient=False,
                    code=UNCONFIGURED_CODE,
                    message=f"configuration error: this deployment does not send through "
                    f"{name!r} (it serves {', '.join(self.names)})",
                )
            )
        provider = maker()
        self._used.setdefault(name, provider)
        return provider

    def close(self) -> None:
        """Close the providers it ``owns`` (built for it alone: Meta's HTTP pool) that it sent
        through; the others belong to whoever gave them."""
        for name, provider in list(self._used.items()):
            if name not in self._owns:
                continue
            close = getattr(provider, "close", None)
            if callable(close):
                close()

    def send(self, request: SendRequest) -> SendReceipt:
        return self.provider_for(request).send(request)

    def sender_key(self, request: SendRequest) -> str:
        """``provider:sender``: one rate limit per sender of each provider, so a Twilio number and
        a Meta phone-number id never share a bucket."""
        name = request.provider or self.default
        try:
            sender = self.provider_for(request).sender_key(request)
        except DeliveryFailed:
            sender = request.from_phone or "-"
        return f"{name}:{sender}"
