"""Explicit mappers between rows and domain objects (STYLE rule 6): ``to_row(obj)`` gives the
column values to write, ``to_domain(row)`` rebuilds the object. The domain never sees a row.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import RowMapping

from domain.dead_letters import DeadLetter, DeadLetterSource
from domain.delivery import DeliveryReport, DeliveryStatus
from domain.events import Event
from domain.inbound import InboundMessage, InboundRecord, InboundStatus
from domain.inbound_content import InboundContent
from domain.live_sessions import CloseReason, LiveSession, SessionStatus
from domain.outbox import OutboxMessage, OutboxStatus
from domain.senders import SenderType
from domain.service_window import WindowPolicy
from domain.tenants import Seller, Tenant

Row = RowMapping


def tenant_to_row(tenant: Tenant) -> dict[str, Any]:
    return {
        "id": tenant.id,
        "name": tenant.name,
        "whatsapp_number": tenant.whatsapp_number,
        "default_region": tenant.default_region,
        "created_at": tenant.created_at,
        "provider": tenant.provider,
        "meta_phone_number_id": tenant.meta_phone_number_id,
        **tenant_window_to_row(tenant),
    }


def tenant_window_to_row(tenant: Tenant) -> dict[str, Any]:
    return {
        "window_policy": tenant.window_policy.value,
        "fallback_content_sid": tenant.fallback_content_sid,
        "fallback_variable": tenant.fallback_variable,
    }


def tenant_to_domain(row: Row) -> Tenant:
    return Tenant(
        id=row["id"],
        name=row["name"],
        whatsapp_number=row["whatsapp_number"],
        default_region=row["default_region"],
        created_at=row["created_at"],
        window_policy=WindowPolicy(row["window_policy"]),
        fallback_content_sid=row["fallback_content_sid"],
        fallback_variable=row["fallback_variable"],
        provider=row["provider"],
        meta_phone_number_id=row["meta_phone_number_id"],
    )


def seller_to_row(seller: Seller) -> dict[str, Any]:
    return {
        "id": seller.id,
        "tenant_id": seller.tenant_id,
        "phone_e164": seller.phone_e164,
        "phone_key": seller.phone_key,
        "name": seller.name,
        "created_at": seller.created_at,
    }


def seller_to_domain(row: Row) -> Seller:
    return Seller(
        id=row["id"],
        tenant_id=row["tenant_id"],
        phone_e164=row["phone_e164"],
        phone_key=row["phone_key"],
        name=row["name"],
        created_at=row["created_at"],
    )


def session_to_row(session: LiveSession) -> dict[str, Any]:
    return {
        "id": session.id,
        "tenant_id": session.tenant_id,
        "status": session.status.value,
        "started_at": session.started_at,
        "last_activity_at": session.last_activity_at,
        "closed_at": session.closed_at,
        "close_reason": session.close_reason.value if session.close_reason else None,
        "seller_message_count": session.seller_message_count,
        "client_message_count": session.client_message_count,
    }


def session_to_domain(row: Row) -> LiveSession:
    return LiveSession(
        id=row["id"],
        tenant_id=row["tenant_id"],
        status=SessionStatus(row["status"]),
        started_at=row["started_at"],
        last_activity_at=row["last_activity_at"],
        closed_at=row["closed_at"],
        close_reason=CloseReason(row["close_reason"]) if row["close_reason"] else None,
        seller_message_count=row["seller_message_count"],
        client_message_count=row["client_message_count"],
    )


def inbound_to_row(record: InboundRecord) -> dict[str, Any]:
    message = record.message
    return {
        "id": record.id,
        "tenant_id": message.tenant_id,
        "provider_message_id": message.provider_message_id,
        "from_phone": message.from_address,
        "from_e164": record.from_e164,
        "to_phone": message.to_address,
        "body": message.body,
        "status": record.status.value,
        "message_type": record.message_type.value if record.message_type else None,
        "live_session_id": record.live_session_id,
        "correlation_id": message.correlation_id,
        "profile_name": message.profile_name,
        "num_media": message.num_media,
        "media_urls": list(message.media_urls),
        "received_at": message.received_at,
        "processed_at": record.processed_at,
        **_content_to_row(message.content),
        "reject_reason": record.reject_reason,
        "rejected_at": record.rejected_at,
        "dead_letter_id": record.dead_letter_id,
    }


def _content_to_row(content: InboundContent) -> dict[str, Any]:
    return {
        "message_kind": content.kind,
        "media_content_types": list(content.media_content_types) or None,
        "latitude": content.latitude,
        "longitude": content.longitude,
        "location_address": content.address,
        "location_label": content.label,
        "button_text": content.button_text,
        "button_payload": content.button_payload,
        "replied_to_message_id": content.replied_to_message_id,
        "replied_to_sender": content.replied_to_sender,
        "referral": dict(content.referral) or None,
        "wa_id": content.wa_id,
        "forwarded": content.forwarded,
        "frequently_forwarded": content.frequently_forwarded,
        "provider_params": dict(content.provider_params) or None,
        "raw_form": content.raw_form,
        "input_flags": list(content.flags) or None,
    }


def _content_to_domain(row: Row) -> InboundContent:
    return InboundContent(
        kind=row["message_kind"],
        media_content_types=tuple(row["media_content_types"] or ()),
        latitude=row["latitude"],
        longitude=row["longitude"],
        address=row["location_address"],
        label=row["location_label"],
        button_text=row["button_text"],
        button_payload=row["button_payload"],
        replied_to_message_id=row["replied_to_message_id"],
        replied_to_sender=row["replied_to_sender"],
        referral=row["referral"] or {},
        wa_id=row["wa_id"],
        forwarded=bool(row["forwarded"]),
        frequently_forwarded=bool(row["frequently_forwarded"]),
        provider_params=row["provider_params"] or {},
        raw_form=row["raw_form"],
        flags=tuple(row["input_flags"] or ()),
    )


def inbound_to_domain(row: Row) -> InboundRecord:
    message = InboundMessage(
        tenant_id=row["tenant_id"],
        provider_message_id=row["provider_message_id"],
        from_address=row["from_phone"],
        body=row["body"],
        correlation_id=row["correlation_id"],
        received_at=row["received_at"],
        to_address=row["to_phone"],
        profile_name=row["profile_name"],
        num_media=row["num_media"],
        media_urls=tuple(row["media_urls"] or ()),
        content=_content_to_domain(row),
    )
    return InboundRecord(
        id=row["id"],
        message=message,
        from_e164=row["from_e164"],
        status=InboundStatus(row["status"]),
        message_type=SenderType(row["message_type"]) if row["message_type"] else None,
        live_session_id=row["live_session_id"],
        processed_at=row["processed_at"],
        reject_reason=row["reject_reason"],
        rejected_at=row["rejected_at"],
        dead_letter_id=row["dead_letter_id"],
    )


def outbox_to_row(message: OutboxMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "tenant_id": message.tenant_id,
        "to_phone": message.to_phone,
        "from_phone": message.from_phone,
        "body": message.body,
        "status": message.status.value,
        "attempts": message.attempts,
        "next_attempt_at": message.next_attempt_at,
        "locked_until": message.locked_until,
        "last_error": message.last_error,
        "last_error_code": message.last_error_code,
        "provider_message_id": message.provider_message_id,
        "correlation_id": message.correlation_id,
        "created_at": message.created_at,
        "updated_at": message.updated_at,
        "sent_at": message.sent_at,
        "rate_limited_since": message.rate_limited_since,
        "content_sid": message.content_sid,
        "content_variables": message.content_variables,
        "media_urls": list(message.media_urls) if message.media_urls else None,
        "expires_at": message.expires_at,
        "provider": message.provider,
    }


def outbox_to_domain(row: Row, *, claimed: bool = False) -> OutboxMessage:
    """``claimed``: the row was just claimed, so its attempt number and lease end are the fencing
    token its outcome will be stored under."""
    return OutboxMessage(
        id=row["id"],
        tenant_id=row["tenant_id"],
        to_phone=row["to_phone"],
        body=row["body"],
        correlation_id=row["correlation_id"],
        status=OutboxStatus(row["status"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        locked_until=row["locked_until"],
        last_error=row["last_error"],
        last_error_code=row["last_error_code"],
        provider_message_id=row["provider_message_id"],
        from_phone=row["from_phone"],
        provider=row["provider"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        sent_at=row["sent_at"],
        rate_limited_since=row["rate_limited_since"],
        content_sid=row["content_sid"],
        content_variables=(
            dict(row["content_variables"]) if row["content_variables"] is not None else None
        ),
        media_urls=tuple(row["media_urls"] or ()),
        expires_at=row["expires_at"],
        claimed_attempt=row["attempts"] if claimed else None,
        claimed_until=row["locked_until"] if claimed else None,
    )


def delivery_to_row(report: DeliveryReport) -> dict[str, Any]:
    """The ``messages_out`` delivery columns; never part of ``outbox_to_row``, so a sender's
    outcome cannot overwrite a report that arrived meanwhile."""
    return {
        "delivery_status": report.status.value,
        "delivery_error_code": report.error_code,
        "delivery_updated_at": report.updated_at,
    }


def delivery_to_domain(row: Row) -> DeliveryReport | None:
    if row["delivery_status"] is None:
        return None
    return DeliveryReport(
        status=DeliveryStatus(row["delivery_status"]),
        error_code=row["delivery_error_code"],
        updated_at=row["delivery_updated_at"],
    )


def dead_letter_to_row(dead_letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": dead_letter.id,
        "tenant_id": dead_letter.tenant_id,
        "source": dead_letter.source.value,
        "source_id": dead_letter.source_id,
        "payload": dead_letter.payload,
        "error": dead_letter.error,
        "error_code": dead_letter.error_code,
        "attempts": dead_letter.attempts,
        "created_at": dead_letter.created_at,
        "replayed_at": dead_letter.replayed_at,
    }


def dead_letter_to_domain(row: Row) -> DeadLetter:
    return DeadLetter(
        id=row["id"],
        tenant_id=row["tenant_id"],
        source=DeadLetterSource(row["source"]),
        source_id=row["source_id"],
        payload=dict(row["payload"]),
        error=row["error"],
        error_code=row["error_code"],
        attempts=row["attempts"],
        created_at=row["created_at"],
        replayed_at=row["replayed_at"],
    )


def event_to_row(event: Event) -> dict[str, Any]:
    return {
        "tenant_id": event.tenant_id,
        "event_type": event.event_type,
        "subject_id": event.subject_id,
        "payload": event.payload(),
        "correlation_id": event.correlation_id,
        "created_at": event.occurred_at,
    }


def event_to_tuple(row: Row) -> tuple[str, str | None, str, dict[str, object], str]:
    """The EventLog port's view of a stored event."""
    return (
        row["event_type"],
        row["tenant_id"],
        row["subject_id"],
        dict(row["payload"]),
        row["correlation_id"],
    )
