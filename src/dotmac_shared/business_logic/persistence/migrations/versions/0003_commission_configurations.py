"""Commission configurations: rates per tier and per partner.

Revision ID: 0003_commissions
Revises: 0002_sagas
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from dotmac_shared.business_logic.persistence.types import Money, UTCDateTime

revision: str = "0003_commissions"
down_revision: str | None = "0002_sagas"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "commission_configurations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(255), nullable=False),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("partner_id", sa.String(255), nullable=False),
        sa.Column("rate", Money(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commission_configurations")),
        sa.UniqueConstraint(
            "tenant_id",
            "tier",
            "partner_id",
            name=op.f("uq_commission_configurations_tenant_id_tier_partner_id"),
        ),
    )


def downgrade() -> None:
    op.drop_table("commission_configurations")
