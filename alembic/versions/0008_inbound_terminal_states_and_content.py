"""Inbound messages: the terminal ``rejected`` state, and everything WhatsApp sends (ADR 0010).

- ``status`` may be ``rejected`` (with ``reject_reason``, ``rejected_at``, ``dead_letter_id``);
- the content columns (kind, media content types, location, button, replied-to message,
  referral, WaId, forwarded flags), the provider's whole signed parameter set
  (``provider_params``), the exact form when a field had to be cleaned (``raw_form``) and the
  flags saying what was cleaned (``input_flags``);
- an index on ``dead_letter_jobs.source_id`` for the rejection's idempotency lookup;
- data: every row still ``received`` that already has a ``webhook-processing`` dead letter not
  replayed yet is moved to ``rejected`` with that dead letter's reason and id. Those are the rows
  the reconciler re-enqueued forever (each pass adding one more dead letter and event): their
  processing had been given up on (invalid phone, invalid payload, retries exhausted) and only an
  operator's replay may run them again. A row whose dead letters were all replayed is in flight
  again and stays ``received``.

SQLite cannot change a CHECK constraint in place: the table is rebuilt (Alembic batch mode), the
partial index on received rows dropped before and created again after, so the rebuild cannot lose
its WHERE clause.

Revision ID: 0008_inbound_terminal_states
Revises: 0007_outbox_delivery_status
Create Date: 2026-12-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0008_inbound_terminal_states"
down_revision: str | None = "0007_outbox_delivery_status"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RECEIVED = sa.text("status = 'received'")
STATUS_CHECK = "inbound_messages_status_check"


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _columns() -> list[sa.Column[object]]:
    text = ("message_kind", "latitude", "longitude", "location_address", "location_label")
    text += ("button_text", "button_payload", "replied_to_message_id", "replied_to_sender")
    columns: list[sa.Column[object]] = [sa.Column(name, sa.Text(), nullable=True) for name in text]
    columns.insert(1, sa.Column("media_content_types", _json(), nullable=True))
    columns += [
        sa.Column("referral", _json(), nullable=True),
        sa.Column("wa_id", sa.Text(), nullable=True),
        sa.Column("forwarded", sa.Boolean(), nullable=True),
        sa.Column("frequently_forwarded", sa.Boolean(), nullable=True),
        sa.Column("provider_params", _json(), nullable=True),
        sa.Column("raw_form", sa.Text(), nullable=True),
        sa.Column("input_flags", _json(), nullable=True),
        sa.Column("reject_reason", sa.Text(), nullable=True),
        sa.Column("rejected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dead_letter_id", sa.Text(), nullable=True),
    ]
    return columns


def _open_dead_letter(column: str) -> str:
    """The newest open webhook-processing dead letter of the row being updated."""
    return (
        f"(SELECT d.{column} FROM dead_letter_jobs d"
        " WHERE d.source = 'webhook-processing' AND d.replayed_at IS NULL"
        " AND d.tenant_id = inbound_messages.tenant_id"
        " AND d.source_id = inbound_messages.provider_message_id"
        " ORDER BY d.created_at DESC, d.id DESC LIMIT 1)"
    )


def upgrade() -> None:
    op.drop_index("inbound_messages_received_idx", table_name="inbound_messages")
    with op.batch_alter_table("inbound_messages") as batch:
        for column in _columns():
            batch.add_column(column)
        batch.drop_constraint(op.f(STATUS_CHECK), type_="check")
        batch.create_check_constraint(
            op.f(STATUS_CHECK), sa.text("status IN ('received', 'processed', 'rejected')")
        )
    op.create_index(
        "inbound_messages_received_idx",
        "inbound_messages",
        ["received_at"],
        postgresql_where=RECEIVED,
        sqlite_where=RECEIVED,
    )
    op.create_index("dead_letter_jobs_source_id_idx", "dead_letter_jobs", ["source_id"])
    op.execute(
        "UPDATE inbound_messages SET status = 'rejected',"
        f" reject_reason = COALESCE({_open_dead_letter('error_code')}, 'rejected'),"
        f" rejected_at = {_open_dead_letter('created_at')},"
        f" dead_letter_id = {_open_dead_letter('id')}"
        f" WHERE status = 'received' AND {_open_dead_letter('id')} IS NOT NULL"
    )


def downgrade() -> None:
    # The old schema has no terminal rejected state: such rows go back to received (where the
    # old reconciler will pick them up again, as it did before this revision).
    op.execute("UPDATE inbound_messages SET status = 'received' WHERE status = 'rejected'")
    op.drop_index("dead_letter_jobs_source_id_idx", table_name="dead_letter_jobs")
    op.drop_index("inbound_messages_received_idx", table_name="inbound_messages")
    with op.batch_alter_table("inbound_messages") as batch:
        batch.drop_constraint(op.f(STATUS_CHECK), type_="check")
        batch.create_check_constraint(
            op.f(STATUS_CHECK), sa.text("status IN ('received', 'processed')")
        )
        for column in reversed(_columns()):
            batch.drop_column(column.name)
    op.create_index(
        "inbound_messages_received_idx",
        "inbound_messages",
        ["received_at"],
        postgresql_where=RECEIVED,
        sqlite_where=RECEIVED,
    )
