"""Billing attempts: a compensated billing run of a period can be run again as attempt n+1.

``billing_runs`` gets an ``attempt`` number (existing runs are attempt 1) and is unique per
tenant, period and attempt. An invoice is unique per tenant, customer and period only while it
is live: the void invoices of a compensated attempt stay beside the next attempt's invoice.
Downgrading fails while a period holds more than one attempt or a void and a live invoice of
one customer.

Revision ID: 0006_billing_attempts
Revises: 0005_invoice_keyset
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_billing_attempts"
down_revision: str | None = "0005_invoice_keyset"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIVE = "status <> 'void'"


def upgrade() -> None:
    with op.batch_alter_table("billing_runs") as batch:
        batch.add_column(
            sa.Column("attempt", sa.Integer(), server_default=sa.text("1"), nullable=False)
        )
        batch.drop_constraint("uq_billing_runs_tenant_id_billing_period", type_="unique")
        batch.create_unique_constraint(
            "uq_billing_runs_tenant_id_billing_period_attempt",
            ["tenant_id", "billing_period", "attempt"],
        )
    with op.batch_alter_table("invoices") as batch:
        batch.drop_constraint("uq_invoices_tenant_id_customer_id_billing_period", type_="unique")
    op.create_index(
        "uq_invoices_live_per_customer_period",
        "invoices",
        ["tenant_id", "customer_id", "billing_period"],
        unique=True,
        sqlite_where=sa.text(_LIVE),
        postgresql_where=sa.text(_LIVE),
    )


def downgrade() -> None:
    op.drop_index("uq_invoices_live_per_customer_period", table_name="invoices")
    with op.batch_alter_table("invoices") as batch:
        batch.create_unique_constraint(
            "uq_invoices_tenant_id_customer_id_billing_period",
            ["tenant_id", "customer_id", "billing_period"],
        )
    with op.batch_alter_table("billing_runs") as batch:
        batch.drop_constraint("uq_billing_runs_tenant_id_billing_period_attempt", type_="unique")
        batch.create_unique_constraint(
            "uq_billing_runs_tenant_id_billing_period", ["tenant_id", "billing_period"]
        )
        batch.drop_column("attempt")
