"""Find an outbox row by its MessageSid: a partial index on messages_out.provider_message_id.

A status callback configured on a Messaging Service carries no ids in its URL; it names the
message by ``MessageSid`` only, which the sender stored as ``provider_message_id`` (ADR 0011).
Partial (``WHERE provider_message_id IS NOT NULL``): rows not yet sent are not indexed. The one
column serves both lookups, the tenant-scoped one and the by-row one.

Revision ID: 0010_outbox_sid_index
Revises: 0009_seller_phone_key
Create Date: 2026-12-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0010_outbox_sid_index"
down_revision: str | None = "0009_seller_phone_key"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "messages_out_provider_message_id_idx"
HAS_PROVIDER_ID = sa.text("provider_message_id IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        INDEX,
        "messages_out",
        ["provider_message_id"],
        postgresql_where=HAS_PROVIDER_ID,
        sqlite_where=HAS_PROVIDER_ID,
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="messages_out")
