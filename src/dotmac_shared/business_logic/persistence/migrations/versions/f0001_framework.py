"""The framework's tables: idempotency records, saga executions and steps, policy decisions.

The first revision of the ``dotmac_framework`` branch: all a user of idempotency or sagas needs.

Revision ID: f0001_framework
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from dotmac_shared.business_logic.persistence import JSONDocument, UTCDateTime

revision: str = "f0001_framework"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("dotmac_framework",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dotmac_idempotency_records",
        sa.Column("tenant_id", sa.String(length=255), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("operation_type", sa.String(length=255), nullable=False),
        sa.Column("payload_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("result", JSONDocument, nullable=True),
        sa.Column("error", JSONDocument, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint(
            "tenant_id", "idempotency_key", name=op.f("pk_dotmac_idempotency_records")
        ),
    )
    op.create_index(
        "ix_dotmac_idempotency_records_expires_at", "dotmac_idempotency_records", ["expires_at"]
    )
    op.create_table(
        "dotmac_policy_decisions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("policy_name", sa.String(length=200), nullable=False),
        sa.Column("policy_version", sa.String(length=64), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=255), nullable=True),
        sa.Column("decision", sa.String(length=32), nullable=False),
        sa.Column("failed_rules", JSONDocument, nullable=False),
        sa.Column("input", JSONDocument, nullable=False),
        sa.Column("context", JSONDocument, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dotmac_policy_decisions")),
    )
    op.create_index(
        "ix_dotmac_policy_decisions_policy",
        "dotmac_policy_decisions",
        ["policy_name", "recorded_at"],
    )
    op.create_index(
        "ix_dotmac_policy_decisions_tenant", "dotmac_policy_decisions", ["tenant_id", "recorded_at"]
    )
    op.create_table(
        "dotmac_saga_executions",
        sa.Column("saga_id", sa.String(length=64), nullable=False),
        sa.Column("saga_name", sa.String(length=255), nullable=False),
        sa.Column("saga_version", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=255), nullable=True),
        sa.Column("user_id", sa.String(length=255), nullable=True),
        sa.Column("correlation_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("current_step", sa.Integer(), nullable=False),
        sa.Column("initial_data", JSONDocument, nullable=False),
        sa.Column("context", JSONDocument, nullable=False),
        sa.Column("error", JSONDocument, nullable=True),
        sa.Column("failed_step", sa.String(length=255), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("deadline_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("saga_id", name=op.f("pk_dotmac_saga_executions")),
    )
    op.create_index(
        "ix_dotmac_saga_executions_status_lease",
        "dotmac_saga_executions",
        ["status", "lease_expires_at"],
    )
    op.create_index(
        "ix_dotmac_saga_executions_tenant_status", "dotmac_saga_executions", ["tenant_id", "status"]
    )
    op.create_table(
        "dotmac_saga_step_executions",
        sa.Column("saga_id", sa.String(length=64), nullable=False),
        sa.Column("step_name", sa.String(length=255), nullable=False),
        sa.Column("step_index", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("compensation_attempts", sa.Integer(), nullable=False),
        sa.Column("result", JSONDocument, nullable=True),
        sa.Column("error", JSONDocument, nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.Column("compensated_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["saga_id"],
            ["dotmac_saga_executions.saga_id"],
            name=op.f("fk_dotmac_saga_step_executions_saga_id_dotmac_saga_executions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "saga_id", "step_name", name=op.f("pk_dotmac_saga_step_executions")
        ),
    )


def downgrade() -> None:
    op.drop_table("dotmac_saga_step_executions")
    op.drop_table("dotmac_saga_executions")
    op.drop_table("dotmac_policy_decisions")
    op.drop_table("dotmac_idempotency_records")
