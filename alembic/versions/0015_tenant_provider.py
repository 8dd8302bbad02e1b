"""Each tenant's messaging provider and its Meta phone-number id; each outbound message's
provider (issue 17 §3, ADR 0019).

``tenants.provider`` is ``twilio`` (every existing tenant, the default) or ``meta``;
``tenants.meta_phone_number_id`` is the Meta business phone-number id Meta's webhook names
(unique when set: a unique index, NULLs distinct on both backends). ``messages_out.provider`` is
the tenant's provider when the message was written (NULL: the default, Twilio, as every message
written before). Plain ``ADD COLUMN`` and ``CREATE INDEX`` on both backends, no table rebuild on
SQLite.

Revision ID: 0015_tenant_provider
Revises: 0011_outbox_rate_limited_since
Create Date: 2026-12-02 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0015_tenant_provider"
down_revision: str | None = "0014_tenant_window"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "tenants", sa.Column("provider", sa.Text, nullable=False, server_default="twilio")
    )
    op.add_column("tenants", sa.Column("meta_phone_number_id", sa.Text, nullable=True))
    op.create_index(
        "tenants_meta_phone_number_id_key", "tenants", ["meta_phone_number_id"], unique=True
    )
    op.add_column("messages_out", sa.Column("provider", sa.Text, nullable=True))


def downgrade() -> None:
    op.drop_column("messages_out", "provider")
    op.drop_index("tenants_meta_phone_number_id_key", table_name="tenants")
    op.drop_column("tenants", "meta_phone_number_id")
    op.drop_column("tenants", "provider")
