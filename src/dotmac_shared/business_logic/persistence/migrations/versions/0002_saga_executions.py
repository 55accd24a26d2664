"""Saga executions and step executions.

Revision ID: 0002_sagas
Revises: 0001_idempotency
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from dotmac_shared.business_logic.persistence.types import JSONDocument, UTCDateTime

revision: str = "0002_sagas"
down_revision: str | None = "0001_idempotency"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "saga_executions",
        sa.Column("saga_id", sa.String(64), nullable=False),
        sa.Column("saga_name", sa.String(255), nullable=False),
        sa.Column("saga_version", sa.String(32), nullable=False),
        sa.Column("tenant_id", sa.String(255), nullable=True),
        sa.Column("user_id", sa.String(255), nullable=True),
        sa.Column("correlation_id", sa.String(64), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("current_step", sa.Integer(), nullable=False),
        sa.Column("initial_data", JSONDocument, nullable=False),
        sa.Column("context", JSONDocument, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("failed_step", sa.String(255), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("deadline_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("saga_id", name=op.f("pk_saga_executions")),
    )
    op.create_index(
        "ix_saga_executions_status_lease", "saga_executions", ["status", "lease_expires_at"]
    )
    op.create_index("ix_saga_executions_tenant_status", "saga_executions", ["tenant_id", "status"])
    op.create_table(
        "saga_step_executions",
        sa.Column("saga_id", sa.String(64), nullable=False),
        sa.Column("step_name", sa.String(255), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("compensation_attempts", sa.Integer(), nullable=False),
        sa.Column("result", JSONDocument, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.Column("compensated_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["saga_id"],
            ["saga_executions.saga_id"],
            name=op.f("fk_saga_step_executions_saga_id_saga_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("saga_id", "step_name", name=op.f("pk_saga_step_executions")),
    )


def downgrade() -> None:
    op.drop_table("saga_step_executions")
    op.drop_index("ix_saga_executions_tenant_status", table_name="saga_executions")
    op.drop_index("ix_saga_executions_status_lease", table_name="saga_executions")
    op.drop_table("saga_executions")
