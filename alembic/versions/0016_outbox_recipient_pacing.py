"""Per-recipient pacing: a partial index of each recipient's sent messages by ``sent_at``
(ADR 0025).

With ``OUTBOX_RECIPIENT_MIN_GAP_SECONDS`` above 0 the claim skips a recipient sent a message less
than that long ago: "a sent message to this ``(tenant_id, to_phone)`` with ``sent_at`` after
``now - gap``" is one probe of this index (``WHERE status = 'sent'``: the queued rows, which the
claim reads through the other indexes, are not in it).

Revision ID: 0016_outbox_recipient_pacing
Revises: 0015_tenant_provider
Create Date: 2026-12-02 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0016_outbox_recipient_pacing"
down_revision: str | None = "0015_tenant_provider"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "messages_out_recipient_sent_idx"
SENT = sa.text("status = 'sent'")


def upgrade() -> None:
    op.create_index(
        INDEX,
        "messages_out",
        ["tenant_id", "to_phone", "sent_at"],
        postgresql_where=SENT,
        sqlite_where=SENT,
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="messages_out")
