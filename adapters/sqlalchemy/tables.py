"""The schema of SPEC §2 as SQLAlchemy Core tables: one ``MetaData``, read by Alembic too.

Column names are the contract; the extra columns hold what the domain keeps beyond SPEC §2
(message counts of a session, the sender number of an outbound message, the inbound record's
normalised sender and media). Constraint names follow Postgres' own conventions on both backends,
so migrations can name what they drop.
"""

from __future__ import annotations

import sqlalchemy as sa

from adapters.sqlalchemy.types import UtcDateTime, id_type, json_type

metadata = sa.MetaData(
    naming_convention={
        "pk": "%(table_name)s_pkey",
        "uq": "%(table_name)s_%(column_0_N_name)s_key",
        "fk": "%(table_name)s_%(column_0_name)s_fkey",
        "ck": "%(table_name)s_%(constraint_name)s_check",
        "ix": "%(table_name)s_%(column_0_N_name)s_idx",
    }
)


def _status_check(
    column: str, values: tuple[str, ...], *, nullable: bool = False
) -> sa.CheckConstraint:
    allowed = ", ".join(f"'{v}'" for v in values)
    condition = f"{column} IN ({allowed})"
    if nullable:
        condition = f"{column} IS NULL OR {condition}"
    return sa.CheckConstraint(condition, name=column)


def _tenant_fk() -> sa.ForeignKey:
    return sa.ForeignKey("tenants.id")


tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("whatsapp_number", sa.Text, nullable=True, unique=True),
    sa.Column("default_region", sa.Text, nullable=False, server_default="FR"),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # The customer-service window policy and its fallback template (alembic 0014, ADR 0021).
    sa.Column("window_policy", sa.Text, nullable=False, server_default="send"),
    sa.Column("fallback_content_sid", sa.Text, nullable=True),
    sa.Column("fallback_variable", sa.Text, nullable=False, server_default="1"),
    _status_check("window_policy", ("send", "template", "drop")),
    sa.Column("provider", sa.Text, nullable=False, server_default="twilio"),
    sa.Column("meta_phone_number_id", sa.Text, nullable=True),
    sa.Index("tenants_meta_phone_number_id_key", "meta_phone_number_id", unique=True),
)

sellers = sa.Table(
    "sellers",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("tenant_id", sa.Text, _tenant_fk(), nullable=False),
    sa.Column("phone_e164", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # The canonical key of the number (domain.phones.phone_key, ADR 0012).
    sa.Column("phone_key", sa.Text, nullable=False),
    sa.UniqueConstraint("tenant_id", "phone_e164"),
    # One seller per number whatever its form; serves the sender-classification lookup.
    sa.Index("sellers_tenant_id_phone_key_key", "tenant_id", "phone_key", unique=True),
)

live_sessions = sa.Table(
    "live_sessions",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("tenant_id", sa.Text, _tenant_fk(), nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("last_activity_at", UtcDateTime, nullable=False),
    sa.Column("closed_at", UtcDateTime, nullable=True),
    sa.Column("close_reason", sa.Text, nullable=True),
    sa.Column("seller_message_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("client_message_count", sa.Integer, nullable=False, server_default="0"),
    _status_check("status", ("active", "closed")),
    _status_check("close_reason", ("inactivity", "superseded"), nullable=True),
)
ACTIVE_SESSION = live_sessions.c.status == "active"
# At most one active session per tenant (SPEC §2); also serves get_active.
sa.Index(
    "live_sessions_tenant_id_active_key",
    live_sessions.c.tenant_id,
    unique=True,
    postgresql_where=ACTIVE_SESSION,
    sqlite_where=ACTIVE_SESSION,
)
# The closing job's stale scan: active sessions by last activity.
sa.Index(
    "live_sessions_stale_idx",
    live_sessions.c.last_activity_at,
    postgresql_where=ACTIVE_SESSION,
    sqlite_where=ACTIVE_SESSION,
)

inbound_messages = sa.Table(
    "inbound_messages",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("tenant_id", sa.Text, _tenant_fk(), nullable=False),
    sa.Column("provider_message_id", sa.Text, nullable=False),
    sa.Column("from_phone", sa.Text, nullable=False),
    sa.Column("from_e164", sa.Text, nullable=True),
    sa.Column("to_phone", sa.Text, nullable=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("message_type", sa.Text, nullable=True),
    sa.Column("live_session_id", sa.Text, sa.ForeignKey("live_sessions.id"), nullable=True),
    sa.Column("correlation_id", sa.Text, nullable=False),
    sa.Column("profile_name", sa.Text, nullable=True),
    sa.Column("num_media", sa.Integer, nullable=False, server_default="0"),
    sa.Column("media_urls", json_type(), nullable=False),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("processed_at", UtcDateTime, nullable=True),
    # What WhatsApp sent beyond the text (migration 0008, ADR 0010).
    sa.Column("message_kind", sa.Text, nullable=True),
    sa.Column("media_content_types", json_type(), nullable=True),
    sa.Column("latitude", sa.Text, nullable=True),
    sa.Column("longitude", sa.Text, nullable=True),
    sa.Column("location_address", sa.Text, nullable=True),
    sa.Column("location_label", sa.Text, nullable=True),
    sa.Column("button_text", sa.Text, nullable=True),
    sa.Column("button_payload", sa.Text, nullable=True),
    sa.Column("replied_to_message_id", sa.Text, nullable=True),
    sa.Column("replied_to_sender", sa.Text, nullable=True),
    sa.Column("referral", json_type(), nullable=True),
    sa.Column("wa_id", sa.Text, nullable=True),
    sa.Column("forwarded", sa.Boolean, nullable=True),
    sa.Column("frequently_forwarded", sa.Boolean, nullable=True),
    # The provider's whole signed parameter set; the exact form when a field had to be cleaned.
    sa.Column("provider_params", json_type(), nullable=True),
    sa.Column("raw_form", sa.Text, nullable=True),
    sa.Column("input_flags", json_type(), nullable=True),
    # The terminal rejected state: why, when, and its one dead letter.
    sa.Column("reject_reason", sa.Text, nullable=True),
    sa.Column("rejected_at", UtcDateTime, nullable=True),
    sa.Column("dead_letter_id", sa.Text, nullable=True),
    # Idempotency per (tenantId, providerMessageId).
    sa.UniqueConstraint("tenant_id", "provider_message_id"),
    _status_check("status", ("received", "processed", "rejected")),
    _status_check("message_type", ("seller", "client"), nullable=True),
)
RECEIVED = inbound_messages.c.status == "received"
# When each customer last wrote to the tenant (the customer-service window, ADR 0021).
sa.Index(
    "inbound_messages_tenant_id_from_e164_received_at_idx",
    inbound_messages.c.tenant_id,
    inbound_messages.c.from_e164,
    inbound_messages.c.received_at,
)
# The reconciler's scan of records still waiting in the durable inbox.
sa.Index(
    "inbound_messages_received_idx",
    inbound_messages.c.received_at,
    postgresql_where=RECEIVED,
    sqlite_where=RECEIVED,
)

messages_out = sa.Table(
    "messages_out",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("tenant_id", sa.Text, _tenant_fk(), nullable=False),
    sa.Column("to_phone", sa.Text, nullable=False),
    sa.Column("from_phone", sa.Text, nullable=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UtcDateTime, nullable=False),
    sa.Column("locked_until", UtcDateTime, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("last_error_code", sa.Text, nullable=True),
    sa.Column("provider_message_id", sa.Text, nullable=True),
    sa.Column("correlation_id", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("sent_at", UtcDateTime, nullable=True),
    # When the provider first answered "rate limited" (ADR 0015; alembic 0011).
    sa.Column("rate_limited_since", UtcDateTime, nullable=True),
    # The provider's delivery report (status callbacks, forward only; domain.delivery).
    sa.Column("delivery_status", sa.Text, nullable=True),
    sa.Column("delivery_error_code", sa.Text, nullable=True),
    sa.Column("delivery_updated_at", UtcDateTime, nullable=True),
    # A template (Twilio Content API; body then ''), media and expiry (alembic 0012), last as
    # the migration appends them.
    sa.Column("content_sid", sa.Text, nullable=True),
    sa.Column("content_variables", json_type(), nullable=True),
    sa.Column("media_urls", json_type(), nullable=True),
    sa.Column("expires_at", UtcDateTime, nullable=True),
    # The provider the message goes out through, its tenant's when written (ADR 0019; alembic
    # 0015); NULL: the default provider (Twilio), as every message written before. Last: the claim
    # reads the columns in the table's order (ADD COLUMN appends).
    sa.Column("provider", sa.Text, nullable=True),
    _status_check("status", ("pending", "sending", "sent", "failed", "dead", "expired")),
)
WAITING = messages_out.c.status.in_(("pending", "failed"))
SENDING = messages_out.c.status == "sending"
# The due claim, per tenant in due order: waiting messages by next attempt ...
sa.Index(
    "messages_out_due_idx",
    messages_out.c.tenant_id,
    messages_out.c.next_attempt_at,
    messages_out.c.id,
    postgresql_where=WAITING,
    sqlite_where=WAITING,
)
# ... and messages being sent by lease expiry (their sender may have died).
sa.Index(
    "messages_out_lease_idx",
    messages_out.c.tenant_id,
    messages_out.c.locked_until,
    messages_out.c.id,
    postgresql_where=SENDING,
    sqlite_where=SENDING,
)
# Order per recipient (ADR 0020): each recipient's queued messages in written order, so the
# claim's "no earlier queued message to the same recipient" is one index probe.
QUEUED = messages_out.c.status.in_(("pending", "failed", "sending"))
sa.Index(
    "messages_out_recipient_queue_idx",
    messages_out.c.tenant_id,
    messages_out.c.to_phone,
    messages_out.c.created_at,
    messages_out.c.id,
    postgresql_where=QUEUED,
    sqlite_where=QUEUED,
)
# Per-recipient pacing (ADR 0025): a recipient's sent messages by ``sent_at``, so the claim's "a
# message to this recipient was sent less than the gap ago" is one probe (alembic 0016).
SENT = messages_out.c.status == "sent"
sa.Index(
    "messages_out_recipient_sent_idx",
    messages_out.c.tenant_id,
    messages_out.c.to_phone,
    messages_out.c.sent_at,
    postgresql_where=SENT,
    sqlite_where=SENT,
)
# Status callbacks without ids in their URL (a Messaging Service's) find the row by its
# MessageSid (ADR 0011).
HAS_PROVIDER_ID = messages_out.c.provider_message_id.is_not(None)
sa.Index(
    "messages_out_provider_message_id_idx",
    messages_out.c.provider_message_id,
    postgresql_where=HAS_PROVIDER_ID,
    sqlite_where=HAS_PROVIDER_ID,
)

dead_letter_jobs = sa.Table(
    "dead_letter_jobs",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    # No foreign key: a rejected payload may name no tenant or an unknown one.
    sa.Column("tenant_id", sa.Text, nullable=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("source_id", sa.Text, nullable=False),
    sa.Column("payload", json_type(), nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("error_code", sa.Text, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("replayed_at", UtcDateTime, nullable=True),
    _status_check("source", ("messages_out", "webhook-processing")),
    # The operator's listing, newest first, all tenants or one.
    sa.Index(None, "created_at"),
    sa.Index(None, "tenant_id", "created_at"),
    # The rejection's idempotency lookup: the open dead letter of one message (migration 0008).
    sa.Index(None, "source_id"),
)

event_logs = sa.Table(
    "event_logs",
    metadata,
    sa.Column("id", id_type(), primary_key=True, autoincrement=True),
    # No foreign key: an inbound.rejected event may name no tenant.
    sa.Column("tenant_id", sa.Text, nullable=True),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("subject_id", sa.Text, nullable=False),
    sa.Column("payload", json_type(), nullable=False),
    sa.Column("correlation_id", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    # A tenant's events in insertion order (optionally of one type).
    sa.Index(None, "tenant_id", "event_type", "id"),
    sa.Index(None, "subject_id"),
)
