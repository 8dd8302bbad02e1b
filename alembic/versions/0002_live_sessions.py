"""Live sessions: at most one active per tenant, and the stale-session scan.

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = sa.text("status = 'active'")


def upgrade() -> None:
    op.create_table(
        "live_sessions",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("close_reason", sa.Text(), nullable=True),
        sa.Column("seller_message_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("client_message_count", sa.Integer(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'closed')", name=op.f("live_sessions_status_check")
        ),
        sa.CheckConstraint(
            "close_reason IS NULL OR close_reason IN ('inactivity', 'superseded')",
            name=op.f("live_sessions_close_reason_check"),
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="live_sessions_tenant_id_fkey"),
        sa.PrimaryKeyConstraint("id", name="live_sessions_pkey"),
    )
    op.create_index(
        "live_sessions_tenant_id_active_key",
        "live_sessions",
        ["tenant_id"],
        unique=True,
        postgresql_where=ACTIVE,
        sqlite_where=ACTIVE,
    )
    op.create_index(
        "live_sessions_stale_idx",
        "live_sessions",
        ["last_activity_at"],
        postgresql_where=ACTIVE,
        sqlite_where=ACTIVE,
    )


def downgrade() -> None:
    op.drop_index("live_sessions_stale_idx", table_name="live_sessions")
    op.drop_index("live_sessions_tenant_id_active_key", table_name="live_sessions")
    op.drop_table("live_sessions")
