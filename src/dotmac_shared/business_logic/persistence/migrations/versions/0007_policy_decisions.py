"""Policy decision log: ``dotmac_policy_decisions``, written in batches by the SQL recorder.

Revision ID: 0007_policy_decisions
Revises: 0006_billing_attempts
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from dotmac_shared.business_logic.persistence.types import JSONDocument, UTCDateTime

revision: str = "0007_policy_decisions"
down_revision: str | None = "0006_billing_attempts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dotmac_policy_decisions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("policy_name", sa.String(200), nullable=False),
        sa.Column("policy_version", sa.String(64), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.String(255), nullable=True),
        sa.Column("decision", sa.String(32), nullable=False),
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
        "ix_dotmac_policy_decisions_tenant",
        "dotmac_policy_decisions",
        ["tenant_id", "recorded_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_dotmac_policy_decisions_tenant", table_name="dotmac_policy_decisions")
    op.drop_index("ix_dotmac_policy_decisions_policy", table_name="dotmac_policy_decisions")
    op.drop_table("dotmac_policy_decisions")
