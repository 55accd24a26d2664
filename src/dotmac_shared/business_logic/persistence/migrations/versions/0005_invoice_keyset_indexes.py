"""Invoice indexes for keyset batches: a billing run stays linear in its customers.

Revision ID: 0005_invoice_keyset
Revises: 0004_domain
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005_invoice_keyset"
down_revision: str | None = "0004_domain"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_invoices_run_status", table_name="invoices")
    op.create_index("ix_invoices_run_status_id", "invoices", ["billing_run_id", "status", "id"])
    op.create_index("ix_invoices_run_id", "invoices", ["billing_run_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_invoices_run_id", table_name="invoices")
    op.drop_index("ix_invoices_run_status_id", table_name="invoices")
    op.create_index("ix_invoices_run_status", "invoices", ["billing_run_id", "status"])
