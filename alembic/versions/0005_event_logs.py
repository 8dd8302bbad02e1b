"""Event logs: what happened, written by the transaction that made it happen.

Revision ID: 0005
Revises: 0004
Create Date: 2026-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_logs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("tenant_id", sa.Text(), nullable=True),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("subject_id", sa.Text(), nullable=False),
        sa.Column(
            "payload", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("correlation_id", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="event_logs_pkey"),
    )
    op.create_index(
        "event_logs_tenant_id_event_type_id_idx", "event_logs", ["tenant_id", "event_type", "id"]
    )
    op.create_index("event_logs_subject_id_idx", "event_logs", ["subject_id"])


def downgrade() -> None:
    op.drop_index("event_logs_subject_id_idx", table_name="event_logs")
    op.drop_index("event_logs_tenant_id_event_type_id_idx", table_name="event_logs")
    op.drop_table("event_logs")
