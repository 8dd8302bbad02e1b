"""The outbox (messages_out) with its due-claim indexes, and dead-letter jobs.

Revision ID: 0004
Revises: 0003
Create Date: 2026-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WAITING = sa.text("status IN ('pending', 'failed')")
SENDING = sa.text("status = 'sending'")


def upgrade() -> None:
    op.create_table(
        "messages_out",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("to_phone", sa.Text(), nullable=False),
        sa.Column("from_phone", sa.Text(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_code", sa.Text(), nullable=True),
        sa.Column("provider_message_id", sa.Text(), nullable=True),
        sa.Column("correlation_id", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'sending', 'sent', 'failed', 'dead')",
            name=op.f("messages_out_status_check"),
        ),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="messages_out_tenant_id_fkey"),
        sa.PrimaryKeyConstraint("id", name="messages_out_pkey"),
    )
    # The due claim reads each tenant's queue in due order: waiting rows by next attempt ...
    op.create_index(
        "messages_out_due_idx",
        "messages_out",
        ["tenant_id", "next_attempt_at", "id"],
        postgresql_where=WAITING,
        sqlite_where=WAITING,
    )
    # ... and rows being sent by lease expiry (their sender may have died).
    op.create_index(
        "messages_out_lease_idx",
        "messages_out",
        ["tenant_id", "locked_until", "id"],
        postgresql_where=SENDING,
        sqlite_where=SENDING,
    )
    op.create_table(
        "dead_letter_jobs",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_id", sa.Text(), nullable=False),
        sa.Column(
            "payload", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("error_code", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "source IN ('messages_out', 'webhook-processing')",
            name=op.f("dead_letter_jobs_source_check"),
        ),
        sa.PrimaryKeyConstraint("id", name="dead_letter_jobs_pkey"),
    )
    op.create_index("dead_letter_jobs_created_at_idx", "dead_letter_jobs", ["created_at"])
    op.create_index(
        "dead_letter_jobs_tenant_id_created_at_idx", "dead_letter_jobs", ["tenant_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("dead_letter_jobs_tenant_id_created_at_idx", table_name="dead_letter_jobs")
    op.drop_index("dead_letter_jobs_created_at_idx", table_name="dead_letter_jobs")
    op.drop_table("dead_letter_jobs")
    op.drop_index("messages_out_lease_idx", table_name="messages_out")
    op.drop_index("messages_out_due_idx", table_name="messages_out")
    op.drop_table("messages_out")
