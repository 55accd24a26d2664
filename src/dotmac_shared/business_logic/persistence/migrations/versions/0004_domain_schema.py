"""Domain schema: tenants, customers, plans, services, resources, billing, payments, outbox.

Revision ID: 0004_domain
Revises: 0003_commissions
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from dotmac_shared.business_logic.persistence.types import JSONDocument, Money, UTCDateTime

revision: str = "0004_domain"
down_revision: str | None = "0003_commissions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gateway_ledger",
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("payment_method_token", sa.String(length=64), nullable=False),
        sa.Column("amount", Money(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("idempotency_key", name=op.f("pk_gateway_ledger")),
    )
    op.create_table(
        "network_configurations",
        sa.Column("service_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("configuration", JSONDocument, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("service_id", name=op.f("pk_network_configurations")),
    )
    op.create_table(
        "notification_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("dedupe_key", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("payload", JSONDocument, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_outbox")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_notification_outbox_dedupe_key")),
    )
    op.create_index(
        "ix_notification_outbox_unsent", "notification_outbox", ["sent_at", "id"], unique=False
    )
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("domain", sa.String(length=63), nullable=False),
        sa.Column("plan", sa.String(length=32), nullable=False),
        sa.Column("admin_email", sa.String(length=320), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("schema_name", sa.String(length=63), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("activated_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
        sa.UniqueConstraint("domain", name=op.f("uq_tenants_domain")),
    )
    op.create_table(
        "billing_runs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("billing_period", sa.String(length=7), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("saga_id", sa.String(length=64), nullable=True),
        sa.Column("report", JSONDocument, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finalized_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_billing_runs_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_runs")),
        sa.UniqueConstraint(
            "tenant_id", "billing_period", name=op.f("uq_billing_runs_tenant_id_billing_period")
        ),
    )
    op.create_table(
        "customers",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("customer_type", sa.String(length=32), nullable=False),
        sa.Column("profile", JSONDocument, nullable=False),
        sa.Column("payment_method_token", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_customers_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
    )
    op.create_index("ix_customers_tenant_id_id", "customers", ["tenant_id", "id"], unique=False)
    op.create_table(
        "resource_pools",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("resource_type", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_resource_pools_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resource_pools")),
        sa.UniqueConstraint(
            "tenant_id",
            "resource_type",
            "name",
            name=op.f("uq_resource_pools_tenant_id_resource_type_name"),
        ),
    )
    op.create_table(
        "service_plans",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("service_type", sa.String(length=32), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("monthly_price", Money(), nullable=False),
        sa.Column("bandwidth_mbps", sa.Integer(), nullable=False),
        sa.Column("eligibility_plan", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_service_plans_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_plans")),
        sa.UniqueConstraint(
            "tenant_id",
            "service_type",
            "code",
            name=op.f("uq_service_plans_tenant_id_service_type_code"),
        ),
    )
    op.create_table(
        "tenant_settings",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", JSONDocument, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_tenant_settings_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "key", name=op.f("pk_tenant_settings")),
    )
    op.create_table(
        "billing_accounts",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("payment_method_token", sa.String(length=64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_billing_accounts_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_billing_accounts_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_accounts")),
        sa.UniqueConstraint("customer_id", name=op.f("uq_billing_accounts_customer_id")),
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("billing_period", sa.String(length=7), nullable=False),
        sa.Column("billing_run_id", sa.String(length=64), nullable=True),
        sa.Column("subtotal", Money(), nullable=False),
        sa.Column("tax", Money(), nullable=False),
        sa.Column("total", Money(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_invoices_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_invoices_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoices")),
        sa.UniqueConstraint(
            "tenant_id",
            "customer_id",
            "billing_period",
            name=op.f("uq_invoices_tenant_id_customer_id_billing_period"),
        ),
    )
    op.create_index(
        "ix_invoices_run_status", "invoices", ["billing_run_id", "status"], unique=False
    )
    op.create_table(
        "resources",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pool_id", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["pool_id"],
            ["resource_pools.id"],
            name=op.f("fk_resources_pool_id_resource_pools"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resources")),
        sa.UniqueConstraint("pool_id", "value", name=op.f("uq_resources_pool_id_value")),
    )
    op.create_table(
        "services",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("plan_id", sa.String(length=64), nullable=False),
        sa.Column("service_type", sa.String(length=32), nullable=False),
        sa.Column("billing_cycle", sa.String(length=16), nullable=False),
        sa.Column("monthly_price", Money(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("configuration", JSONDocument, nullable=False),
        sa.Column("saga_id", sa.String(length=64), nullable=True),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_services_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"], ["service_plans.id"], name=op.f("fk_services_plan_id_service_plans")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_services_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_services")),
        sa.UniqueConstraint("saga_id", name=op.f("uq_services_saga_id")),
    )
    op.create_index(
        "ix_services_tenant_customer", "services", ["tenant_id", "customer_id"], unique=False
    )
    op.create_table(
        "invoice_lines",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("invoice_id", sa.String(length=64), nullable=False),
        sa.Column("service_id", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("amount", Money(), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_invoice_lines_invoice_id_invoices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_lines")),
    )
    op.create_index(
        op.f("ix_invoice_lines_invoice_id"), "invoice_lines", ["invoice_id"], unique=False
    )
    op.create_table(
        "payments",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("invoice_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("amount", Money(), nullable=False),
        sa.Column("gateway_reference", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_payments_invoice_id_invoices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("invoice_id", name=op.f("uq_payments_invoice_id")),
    )
    op.create_table(
        "resource_allocations",
        sa.Column("resource_id", sa.Integer(), nullable=False),
        sa.Column("service_id", sa.String(length=64), nullable=False),
        sa.Column("saga_id", sa.String(length=64), nullable=True),
        sa.Column("allocated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["resource_id"],
            ["resources.id"],
            name=op.f("fk_resource_allocations_resource_id_resources"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("resource_id", name=op.f("pk_resource_allocations")),
    )


def downgrade() -> None:

    op.drop_table("resource_allocations")
    op.drop_table("payments")
    op.drop_index(op.f("ix_invoice_lines_invoice_id"), table_name="invoice_lines")
    op.drop_table("invoice_lines")
    op.drop_index("ix_services_tenant_customer", table_name="services")
    op.drop_table("services")
    op.drop_table("resources")
    op.drop_index("ix_invoices_run_status", table_name="invoices")
    op.drop_table("invoices")
    op.drop_table("billing_accounts")
    op.drop_table("tenant_settings")
    op.drop_table("service_plans")
    op.drop_table("resource_pools")
    op.drop_index("ix_customers_tenant_id_id", table_name="customers")
    op.drop_table("customers")
    op.drop_table("billing_runs")
    op.drop_table("tenants")
    op.drop_index("ix_notification_outbox_unsent", table_name="notification_outbox")
    op.drop_table("notification_outbox")
    op.drop_table("network_configurations")
    op.drop_table("gateway_ledger")
