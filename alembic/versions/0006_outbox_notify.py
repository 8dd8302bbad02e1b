"""Wake the outbox sender when a message is written: NOTIFY livesell_outbox (ADR 0006).

A statement-level trigger notifies once per INSERT statement into ``messages_out``, and a
row-level one when a row goes back to ``pending`` (a dead letter replayed). Postgres sends the
notification at commit and folds identical ones of a transaction into one, so a bulk insert costs
one notification. Postgres only: SQLite has no LISTEN, its sender polls.

Revision ID: 0006_outbox_notify
Revises: 0005
Create Date: 2026-01-02 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006_outbox_notify"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNEL = "livesell_outbox"  # adapters.sqlalchemy.notify.CHANNEL


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE FUNCTION messages_out_notify() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', '');
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER messages_out_inserted_notify
        AFTER INSERT ON messages_out
        FOR EACH STATEMENT EXECUTE FUNCTION messages_out_notify()
        """
    )
    op.execute(
        """
        CREATE TRIGGER messages_out_requeued_notify
        AFTER UPDATE OF status ON messages_out
        FOR EACH ROW
        WHEN (NEW.status = 'pending' AND OLD.status IS DISTINCT FROM 'pending')
        EXECUTE FUNCTION messages_out_notify()
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS messages_out_requeued_notify ON messages_out")
    op.execute("DROP TRIGGER IF EXISTS messages_out_inserted_notify ON messages_out")
    op.execute("DROP FUNCTION IF EXISTS messages_out_notify()")
