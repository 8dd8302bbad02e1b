"""The provider's delivery report on messages_out: status, error code, when it last moved.

Twilio's status callbacks (``POST /webhooks/twilio/status``) write these columns, forward only
(``domain.delivery``, ADR 0008). Plain nullable columns: ``ADD COLUMN`` on both backends, no table
rebuild on SQLite; the allowed values are the domain's to check.

Revision ID: 0007_outbox_delivery_status
Revises: 0006_outbox_notify
Create Date: 2026-11-29 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0007_outbox_delivery_status"
down_revision: str | None = "0006_outbox_notify"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("delivery_status", "delivery_error_code", "delivery_updated_at")


def upgrade() -> None:
    op.add_column("messages_out", sa.Column("delivery_status", sa.Text(), nullable=True))
    op.add_column("messages_out", sa.Column("delivery_error_code", sa.Text(), nullable=True))
    op.add_column(
        "messages_out",
        sa.Column("delivery_updated_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    # SQLite >= 3.35 drops a column in place (no table rebuild that could lose partial indexes).
    for column in reversed(COLUMNS):
        op.drop_column("messages_out", column)
