"""Order per recipient: a partial index of each recipient's queued outbox messages (ADR 0020).

The claim takes only the head of each recipient's queue: a due message with no earlier queued
message (pending, failed or sending) to the same ``(tenant_id, to_phone)``. This index makes that
test one probe: queued rows only (``WHERE status IN ('pending', 'failed', 'sending')``), so sent
and dead history does not grow it.

Revision ID: 0013_outbox_order
Revises: 0011_outbox_rate_limited_since
Create Date: 2026-12-02 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0013_outbox_order"
down_revision: str | None = "0012_outbox_content"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "messages_out_recipient_queue_idx"
QUEUED = sa.text("status IN ('pending', 'failed', 'sending')")


def upgrade() -> None:
    op.create_index(
        INDEX,
        "messages_out",
        ["tenant_id", "to_phone", "created_at", "id"],
        postgresql_where=QUEUED,
        sqlite_where=QUEUED,
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="messages_out")
