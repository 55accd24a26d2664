"""The saga event history: one row per transition of a saga or its steps, or operator action.

Revision ID: f0002_saga_events
Revises: f0001_framework
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from dotmac_shared.business_logic.persistence import JSONDocument, UTCDateTime

revision: str = "f0002_saga_events"
down_revision: str | None = "f0001_framework"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dotmac_saga_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("saga_id", sa.String(length=64), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("step_name", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("worker", sa.String(length=64), nullable=True),
        sa.Column("operator", sa.String(length=255), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("error", JSONDocument, nullable=True),
        sa.Column("data", JSONDocument, nullable=True),
        sa.ForeignKeyConstraint(
            ["saga_id"],
            ["dotmac_saga_executions.saga_id"],
            name=op.f("fk_dotmac_saga_events_saga_id_dotmac_saga_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dotmac_saga_events")),
    )
    op.create_index("ix_dotmac_saga_events_saga_id_id", "dotmac_saga_events", ["saga_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_dotmac_saga_events_saga_id_id", table_name="dotmac_saga_events")
    op.drop_table("dotmac_saga_events")
