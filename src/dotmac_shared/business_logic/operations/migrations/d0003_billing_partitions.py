"""Billing partitions: slices of a billing run's customers that any worker may claim.

A billing run cuts its customers into id ranges; worker processes claim them (``FOR UPDATE
SKIP LOCKED`` on PostgreSQL) under a lease, so several workers bill one run together. A
partition charges its customers' invoices in customer order: an index on invoices serves it.

Revision ID: d0003_billing_partitions
Revises: d0002_notification_relay
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from dotmac_shared.business_logic.persistence import UTCDateTime

revision: str = "d0003_billing_partitions"
down_revision: str | None = "d0002_notification_relay"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dotmac_billing_partitions",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("partition", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("billing_period", sa.String(length=7), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("customer_after", sa.String(length=64), nullable=False),
        sa.Column("customer_last", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("resume_after", sa.String(length=64), nullable=False),
        sa.Column("invoices_created", sa.Integer(), nullable=False),
        sa.Column("customers_seen", sa.Integer(), nullable=False),
        sa.Column("paid", sa.Integer(), nullable=False),
        sa.Column("declined", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "partition", name=op.f("pk_dotmac_billing_partitions")),
    )
    op.create_index(
        "ix_dotmac_invoices_run_status_customer",
        "dotmac_invoices",
        ["billing_run_id", "status", "customer_id"],
    )
    op.create_index(
        "ix_dotmac_billing_partitions_status",
        "dotmac_billing_partitions",
        ["status", "lease_until"],
    )


def downgrade() -> None:
    op.drop_index("ix_dotmac_billing_partitions_status", table_name="dotmac_billing_partitions")
    op.drop_table("dotmac_billing_partitions")
    op.drop_index("ix_dotmac_invoices_run_status_customer", table_name="dotmac_invoices")
