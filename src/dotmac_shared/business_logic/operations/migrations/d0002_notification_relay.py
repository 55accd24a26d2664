"""The notification relay's columns: delivery status, attempts, schedule, lease, last error.

A row is ``pending`` until the relay marks it ``sent`` or ``dead`` (the dead letter, with
the last error). ``next_attempt_at`` is both the retry schedule and the claim's lease end;
``claimed_by`` fences a relay whose lease was taken over. Rows sent before this revision
(``sent_at`` set) become ``sent``.

Revision ID: d0002_notification_relay
Revises: d0001_isp_domain
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from dotmac_shared.business_logic.persistence import UTCDateTime

revision: str = "d0002_notification_relay"
down_revision: str | None = "d0001_isp_domain"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLE = "dotmac_notification_outbox"


def upgrade() -> None:
    with op.batch_alter_table(_TABLE) as batch:
        batch.add_column(
            sa.Column("status", sa.String(length=16), server_default="pending", nullable=False)
        )
        batch.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("next_attempt_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("claimed_by", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("last_error_code", sa.String(length=64), nullable=True))
    op.execute(f"UPDATE {_TABLE} SET status = 'sent' WHERE sent_at IS NOT NULL")
    op.create_index(
        "ix_dotmac_notification_outbox_due", _TABLE, ["status", "next_attempt_at", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_dotmac_notification_outbox_due", table_name=_TABLE)
    with op.batch_alter_table(_TABLE) as batch:
        for column in (
            "last_error_code",
            "last_error",
            "claimed_by",
            "next_attempt_at",
            "attempts",
            "status",
        ):
            batch.drop_column(column)
