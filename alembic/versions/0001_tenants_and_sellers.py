"""Tenants and their sellers (the seller lookup is served by the unique key).

Revision ID: 0001
Revises:
Create Date: 2026-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("whatsapp_number", sa.Text(), nullable=True),
        sa.Column("default_region", sa.Text(), server_default="FR", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="tenants_pkey"),
        sa.UniqueConstraint("whatsapp_number", name="tenants_whatsapp_number_key"),
    )
    op.create_table(
        "sellers",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("phone_e164", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="sellers_tenant_id_fkey"),
        sa.PrimaryKeyConstraint("id", name="sellers_pkey"),
        sa.UniqueConstraint("tenant_id", "phone_e164", name="sellers_tenant_id_phone_e164_key"),
    )


def downgrade() -> None:
    op.drop_table("sellers")
    op.drop_table("tenants")
