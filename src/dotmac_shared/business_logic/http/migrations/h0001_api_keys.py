"""API keys of the HTTP layer: ``dotmac_api_keys`` (hashed secrets, looked up by key id).

Revision ID: h0001_api_keys
Revises:
Branch: dotmac_http (the HTTP layer's tables; created by ``schema="all"``)
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from dotmac_shared.business_logic.persistence import UTCDateTime

revision: str = "h0001_api_keys"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("dotmac_http",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dotmac_api_keys",
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("tenant_id", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_dotmac_api_keys")),
    )
    op.create_index("ix_dotmac_api_keys_tenant", "dotmac_api_keys", ["tenant_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_dotmac_api_keys_tenant", table_name="dotmac_api_keys")
    op.drop_table("dotmac_api_keys")
