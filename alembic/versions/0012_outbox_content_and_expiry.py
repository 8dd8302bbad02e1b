"""Outbound templates, media and expiry (issue 15 §2, §4, §6).

- ``content_sid`` (a Twilio Content API template, ``HX...``) and ``content_variables`` (JSON, as
  the project stores JSON elsewhere: JSONB on Postgres) for a template message, whose ``body`` is
  then empty (``''``: the column stays NOT NULL, as SPEC §2 has it);
- ``media_urls`` (a JSON list, as ``inbound_messages.media_urls``; NULL for none);
- ``expires_at``: not handed to the provider at or after it;
- ``status`` may be ``expired`` (terminal, no dead letter).

All new columns are nullable: rows written by other services without them are plain messages.
SQLite cannot change a CHECK constraint in place: the table is rebuilt (Alembic batch mode), and
its partial indexes are dropped before and created again after, so the rebuild cannot lose their
WHERE clauses. On Postgres the columns are added and the constraint replaced in place (the
NOTIFY triggers of 0006 stay).

Revision ID: 0012_outbox_content
Revises: 0011_outbox_rate_limited_since
Create Date: 2026-12-02 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0012_outbox_content"
down_revision: str | None = "0011_outbox_rate_limited_since"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUS_CHECK = "messages_out_status_check"
OLD_STATUSES = ("pending", "sending", "sent", "failed", "dead")
NEW_STATUSES = (*OLD_STATUSES, "expired")
WAITING = sa.text("status IN ('pending', 'failed')")
SENDING = sa.text("status = 'sending'")
HAS_PROVIDER_ID = sa.text("provider_message_id IS NOT NULL")
PARTIAL_INDEXES = (
    ("messages_out_due_idx", ["tenant_id", "next_attempt_at", "id"], WAITING),
    ("messages_out_lease_idx", ["tenant_id", "locked_until", "id"], SENDING),
    ("messages_out_provider_message_id_idx", ["provider_message_id"], HAS_PROVIDER_ID),
)


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _columns() -> list[sa.Column[object]]:
    return [
        sa.Column("content_sid", sa.Text(), nullable=True),
        sa.Column("content_variables", _json(), nullable=True),
        sa.Column("media_urls", _json(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    ]


def _check(statuses: tuple[str, ...]) -> sa.TextClause:
    return sa.text("status IN (" + ", ".join(f"'{s}'" for s in statuses) + ")")


def _rebuilds_table() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _drop_partial_indexes() -> None:
    if _rebuilds_table():
        for name, _, _ in PARTIAL_INDEXES:
            op.drop_index(name, table_name="messages_out")


def _create_partial_indexes() -> None:
    if _rebuilds_table():
        for name, columns, where in PARTIAL_INDEXES:
            op.create_index(
                name, "messages_out", columns, postgresql_where=where, sqlite_where=where
            )


def upgrade() -> None:
    _drop_partial_indexes()
    with op.batch_alter_table("messages_out") as batch:
        for column in _columns():
            batch.add_column(column)
        batch.drop_constraint(op.f(STATUS_CHECK), type_="check")
        batch.create_check_constraint(op.f(STATUS_CHECK), _check(NEW_STATUSES))
    _create_partial_indexes()


def downgrade() -> None:
    # The old schema has no expired state: such rows end dead, which an operator can replay.
    op.execute(
        "UPDATE messages_out SET status = 'dead', last_error_code = 'expired'"
        " WHERE status = 'expired'"
    )
    _drop_partial_indexes()
    with op.batch_alter_table("messages_out") as batch:
        batch.drop_constraint(op.f(STATUS_CHECK), type_="check")
        batch.create_check_constraint(op.f(STATUS_CHECK), _check(OLD_STATUSES))
        for column in reversed(_columns()):
            batch.drop_column(column.name)
    _create_partial_indexes()
