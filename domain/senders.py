"""Sender classification: a seller is never treated as a client."""

from __future__ import annotations

import enum

from domain.tenants import Seller


class SenderType(enum.StrEnum):
    """Who wrote an inbound message."""

    SELLER = "seller"
    CLIENT = "client"


def classify_sender(seller: Seller | None) -> SenderType:
    """``seller`` iff the normalised sender is one of the tenant's seller phones, else ``client``.

    The caller passes the result of the seller lookup; when that lookup cannot be done the caller
    must fail (and be retried), never fall back to ``client``.
    """
    return SenderType.SELLER if seller is not None else SenderType.CLIENT
