"""The domain's error tree. Each error subclasses the builtin a caller would naturally catch."""

from __future__ import annotations

import attrs


class DomainError(Exception):
    """Base of every error the core raises on purpose."""


@attrs.frozen
class FieldError:
    """One bad field of an input: its name and what is wrong with it."""

    field: str
    problem: str

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}"


class InvalidPayload(DomainError, ValueError):
    """An inbound payload broke the contract of SPEC §2; ``errors`` names each bad field."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = tuple(errors)
        super().__init__("invalid payload: " + "; ".join(str(e) for e in self.errors))


class InvalidPhoneNumber(DomainError, ValueError):
    """A phone number could not be parsed or is not a valid number."""

    def __init__(self, raw: str, reason: str) -> None:
        self.raw = raw
        self.reason = reason
        super().__init__(f"invalid phone number {raw!r}: {reason}")


class UnknownTenant(DomainError, LookupError):
    """No tenant has this id."""

    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        super().__init__(f"unknown tenant {tenant_id!r}")


class InvalidSetting(DomainError, ValueError):
    """A business setting (window, retry policy) is out of its allowed range."""


class IllegalTransition(DomainError, RuntimeError):
    """An aggregate was asked to move to a state its rules forbid (e.g. touch a closed session)."""


class InvalidOutboundContent(DomainError, ValueError):
    """An outbound message's content is not one Twilio would send: neither a body, media nor a
    template; a template with a body or media; bad media URLs; or an expiry not in the future."""
