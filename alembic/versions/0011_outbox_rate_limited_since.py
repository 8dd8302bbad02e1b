"""When the provider first answered an outbound message "rate limited" (ADR 0015).

A 429 / Twilio 20429 reschedules the message without spending an attempt, for as long as it has
been rate limited for less than ``OUTBOX_RATE_LIMITED_MAX_SECONDS``; this column is where that time
starts. A plain nullable column: ``ADD COLUMN`` on both backends, no table rebuild on SQLite.

Revision ID: 0011_outbox_rate_limited_since
Revises: 0010_outbox_sid_index
Create Date: 2026-12-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0011_outbox_rate_limited_since"
down_revision: str | None = "0010_outbox_sid_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "messages_out",
        sa.Column("rate_limited_since", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("messages_out", "rate_limited_since")
