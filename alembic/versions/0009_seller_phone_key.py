"""Sellers get the canonical key of their number, unique per tenant (ADR 0012).

``phone_key`` makes WhatsApp's country variants of one number equal (Mexico ``+52 1``, Argentina
``+54 9``, Brazil's ninth digit): the sender classification looks sellers up by it, and a tenant
cannot hold two sellers for two forms of one number. Existing rows are backfilled with
``domain.phones.phone_key`` (a later change of that function needs its own migration to
recompute the column). Two sellers of one tenant whose numbers share a key stop the upgrade with
their ids: one of them must go before the key can be unique.

Revision ID: 0009_seller_phone_key
Revises: 0008_inbound_terminal_states
Create Date: 2026-12-01 00:00:00
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from domain.phones import phone_key

revision: str = "0009_seller_phone_key"
down_revision: str | None = "0008_inbound_terminal_states"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "sellers_tenant_id_phone_key_key"

sellers = sa.table(
    "sellers",
    sa.column("id", sa.Text()),
    sa.column("tenant_id", sa.Text()),
    sa.column("phone_e164", sa.Text()),
    sa.column("phone_key", sa.Text()),
)


class DuplicateSellerNumbers(RuntimeError):
    """Two sellers of one tenant hold two forms of one number; the key cannot be unique."""


def upgrade() -> None:
    connection = op.get_bind()
    keys = keys_of_existing_sellers(connection)  # refuses before any change (SQLite DDL commits)
    op.add_column("sellers", sa.Column("phone_key", sa.Text(), nullable=True))
    if keys:
        statement = (
            sa.update(sellers)
            .where(sellers.c.id == sa.bindparam("seller_id"))
            .values(phone_key=sa.bindparam("key"))
        )
        connection.execute(statement, [{"seller_id": i, "key": k} for i, k in keys.items()])
    with op.batch_alter_table("sellers") as batch:
        batch.alter_column("phone_key", existing_type=sa.Text(), nullable=False)
    op.create_index(INDEX, "sellers", ["tenant_id", "phone_key"], unique=True)


def keys_of_existing_sellers(connection: sa.Connection) -> dict[str, str]:
    """Every seller's key by seller id; raises DuplicateSellerNumbers (naming tenant and seller
    ids, never the numbers) when two sellers of one tenant would share one."""
    rows = connection.execute(sa.select(sellers.c.id, sellers.c.tenant_id, sellers.c.phone_e164))
    owners: dict[tuple[str, str], list[str]] = defaultdict(list)
    keys: dict[str, str] = {}
    for seller_id, tenant_id, phone in rows:
        keys[seller_id] = phone_key(phone)
        owners[(tenant_id, keys[seller_id])].append(seller_id)
    clashes = [(tenant, ids) for (tenant, _), ids in owners.items() if len(ids) > 1]
    if clashes:
        listed = "; ".join(
            f"tenant {tenant}: sellers {', '.join(sorted(ids))}" for tenant, ids in clashes
        )
        raise DuplicateSellerNumbers(
            f"sellers registered twice under two forms of one number ({listed}); delete one of"
            " each group, then run the migration again"
        )
    return keys


def downgrade() -> None:
    op.drop_index(INDEX, table_name="sellers")
    # SQLite >= 3.35 drops a column in place; the index on it is gone already.
    op.drop_column("sellers", "phone_key")
