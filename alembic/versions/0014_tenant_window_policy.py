"""Each tenant's customer-service window policy, and the index that finds when a customer last
wrote (ADR 0021).

- ``tenants.window_policy`` (``send`` | ``template`` | ``drop``, default ``send``: every existing
  tenant keeps today's behaviour), ``fallback_content_sid`` and ``fallback_variable``;
- ``inbound_messages (tenant_id, from_e164, received_at)``: the sender's one grouped read per
  claimed batch of the last message each recipient sent the tenant.

SQLite adds a column with its CHECK constraint in one ``ADD COLUMN`` (no table rebuild: a rebuild
of ``tenants``, which every table references, would trip the foreign keys); Postgres adds the
column and then the named constraint.

Revision ID: 0014_tenant_window
Revises: 0011_outbox_rate_limited_since
Create Date: 2026-12-02 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0014_tenant_window"
down_revision: str | None = "0013_outbox_order"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POLICY_CHECK = "tenants_window_policy_check"
POLICIES = "window_policy IN ('send', 'template', 'drop')"
INDEX = "inbound_messages_tenant_id_from_e164_received_at_idx"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "ALTER TABLE tenants ADD COLUMN window_policy TEXT DEFAULT 'send' NOT NULL"
            f" CONSTRAINT {POLICY_CHECK} CHECK ({POLICIES})"
        )
    else:
        op.add_column(
            "tenants",
            sa.Column("window_policy", sa.Text(), nullable=False, server_default="send"),
        )
        op.create_check_constraint(op.f(POLICY_CHECK), "tenants", sa.text(POLICIES))
    op.add_column("tenants", sa.Column("fallback_content_sid", sa.Text(), nullable=True))
    op.add_column(
        "tenants", sa.Column("fallback_variable", sa.Text(), nullable=False, server_default="1")
    )
    op.create_index(INDEX, "inbound_messages", ["tenant_id", "from_e164", "received_at"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="inbound_messages")
    op.drop_column("tenants", "fallback_variable")
    op.drop_column("tenants", "fallback_content_sid")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(op.f(POLICY_CHECK), "tenants", type_="check")
    op.drop_column("tenants", "window_policy")
