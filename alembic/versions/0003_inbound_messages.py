"""Inbound messages: the durable inbox, idempotent per (tenant_id, provider_message_id).

Revision ID: 0003
Revises: 0002
Create Date: 2026-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RECEIVED = sa.text("status = 'received'")


def upgrade() -> None:
    op.create_table(
        "inbound_messages",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("provider_message_id", sa.Text(), nullable=False),
        sa.Column("from_phone", sa.Text(), nullable=False),
        sa.Column("from_e164", sa.Text(), nullable=True),
        sa.Column("to_phone", sa.Text(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("message_type", sa.Text(), nullable=True),
        sa.Column("live_session_id", sa.Text(), nullable=True),
        sa.Column("correlation_id", sa.Text(), nullable=False),
        sa.Column("profile_name", sa.Text(), nullable=True),
        sa.Column("num_media", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "media_urls",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=False,
        ),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('received', 'processed')", name=op.f("inbound_messages_status_check")
        ),
        sa.CheckConstraint(
            "message_type IS NULL OR message_type IN ('seller', 'client')",
            name=op.f("inbound_messages_message_type_check"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="inbound_messages_tenant_id_fkey"
        ),
        sa.ForeignKeyConstraint(
            ["live_session_id"], ["live_sessions.id"], name="inbound_messages_live_session_id_fkey"
        ),
        sa.PrimaryKeyConstraint("id", name="inbound_messages_pkey"),
        sa.UniqueConstraint(
            "tenant_id",
            "provider_message_id",
            name="inbound_messages_tenant_id_provider_message_id_key",
        ),
    )
    op.create_index(
        "inbound_messages_received_idx",
        "inbound_messages",
        ["received_at"],
        postgresql_where=RECEIVED,
        sqlite_where=RECEIVED,
    )


def downgrade() -> None:
    op.drop_index("inbound_messages_received_idx", table_name="inbound_messages")
    op.drop_table("inbound_messages")
