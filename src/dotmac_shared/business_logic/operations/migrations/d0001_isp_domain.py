"""The ISP domain's tables: tenants, customers, plans, services, billing, outbox, resources.

The first revision of the ``dotmac_isp`` branch. No table here refers to a framework table
(saga ids are stored as plain values), so the branch does not depend on ``dotmac_framework``.
A billing run is one attempt of a period (unique per tenant, period and attempt); an invoice
is unique per tenant, customer and period only while it is live (not void).

Revision ID: d0001_isp_domain
Revises:
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from dotmac_shared.business_logic.persistence import JSONDocument, Money, UTCDateTime

revision: str = "d0001_isp_domain"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("dotmac_isp",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dotmac_commission_configurations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=255), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("partner_id", sa.String(length=255), nullable=False),
        sa.Column("rate", Money(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dotmac_commission_configurations")),
        sa.UniqueConstraint(
            "tenant_id",
            "tier",
            "partner_id",
            name=op.f("uq_dotmac_commission_configurations_tenant_id_tier_partner_id"),
        ),
    )
    op.create_table(
        "dotmac_gateway_ledger",
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("payment_method_token", sa.String(length=64), nullable=False),
        sa.Column("amount", Money(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("idempotency_key", name=op.f("pk_dotmac_gateway_ledger")),
    )
    op.create_table(
        "dotmac_network_configurations",
        sa.Column("service_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("configuration", JSONDocument, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("service_id", name=op.f("pk_dotmac_network_configurations")),
    )
    op.create_table(
        "dotmac_notification_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("dedupe_key", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("payload", JSONDocument, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dotmac_notification_outbox")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_dotmac_notification_outbox_dedupe_key")),
    )
    op.create_index(
        "ix_dotmac_notification_outbox_unsent", "dotmac_notification_outbox", ["sent_at", "id"]
    )
    op.create_table(
        "dotmac_tenants",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("domain", sa.String(length=63), nullable=False),
        sa.Column("plan", sa.String(length=32), nullable=False),
        sa.Column("admin_email", sa.String(length=320), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("schema_name", sa.String(length=63), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("activated_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dotmac_tenants")),
        sa.UniqueConstraint("domain", name=op.f("uq_dotmac_tenants_domain")),
    )
    op.create_table(
        "dotmac_billing_runs",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("billing_period", sa.String(length=7), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("attempt", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("saga_id", sa.String(length=64), nullable=True),
        sa.Column("report", JSONDocument, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finalized_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["dotmac_tenants.id"],
            name=op.f("fk_dotmac_billing_runs_tenant_id_dotmac_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dotmac_billing_runs")),
        sa.UniqueConstraint(
            "tenant_id",
            "billing_period",
            "attempt",
            name=op.f("uq_dotmac_billing_runs_tenant_id_billing_period_attempt"),
        ),
    )
    op.create_table(
        "dotmac_customers",
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
            ["dotmac_tenants.id"],
            name=op.f("fk_dotmac_customers_tenant_id_dotmac_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dotmac_customers")),
    )
    op.create_index("ix_dotmac_customers_tenant_id_id", "dotmac_customers", ["tenant_id", "id"])
    op.create_table(
        "dotmac_resource_pools",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("resource_type", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["dotmac_tenants.id"],
            name=op.f("fk_dotmac_resource_pools_tenant_id_dotmac_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dotmac_resource_pools")),
        sa.UniqueConstraint(
            "tenant_id",
            "resource_type",
            "name",
            name=op.f("uq_dotmac_resource_pools_tenant_id_resource_type_name"),
        ),
    )
    op.create_table(
        "dotmac_service_plans",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("service_type", sa.String(length=32), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("monthly_price", Money(), nullable=False),
        sa.Column("bandwidth_mbps", sa.Integer(), nullable=False),
        sa.Column("eligibility_plan", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["dotmac_tenants.id"],
            name=op.f("fk_dotmac_service_plans_tenant_id_dotmac_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dotmac_service_plans")),
        sa.UniqueConstraint(
            "tenant_id",
            "service_type",
            "code",
            name=op.f("uq_dotmac_service_plans_tenant_id_service_type_code"),
        ),
    )
    op.create_table(
        "dotmac_tenant_settings",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", JSONDocument, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["dotmac_tenants.id"],
            name=op.f("fk_dotmac_tenant_settings_tenant_id_dotmac_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "key", name=op.f("pk_dotmac_tenant_settings")),
    )
    op.create_table(
        "dotmac_billing_accounts",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("payment_method_token", sa.String(length=64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["dotmac_customers.id"],
            name=op.f("fk_dotmac_billing_accounts_customer_id_dotmac_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["dotmac_tenants.id"],
            name=op.f("fk_dotmac_billing_accounts_tenant_id_dotmac_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dotmac_billing_accounts")),
        sa.UniqueConstraint("customer_id", name=op.f("uq_dotmac_billing_accounts_customer_id")),
    )
    op.create_table(
        "dotmac_invoices",
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
            ["dotmac_customers.id"],
            name=op.f("fk_dotmac_invoices_customer_id_dotmac_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["dotmac_tenants.id"],
            name=op.f("fk_dotmac_invoices_tenant_id_dotmac_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dotmac_invoices")),
    )
    op.create_index("ix_dotmac_invoices_run_id", "dotmac_invoices", ["billing_run_id", "id"])
    op.create_index(
        "ix_dotmac_invoices_run_status_id", "dotmac_invoices", ["billing_run_id", "status", "id"]
    )
    op.create_index(
        "uq_dotmac_invoices_live_per_customer_period",
        "dotmac_invoices",
        ["tenant_id", "customer_id", "billing_period"],
        unique=True,
        sqlite_where=sa.text("status <> 'void'"),
        postgresql_where=sa.text("status <> 'void'"),
    )
    op.create_table(
        "dotmac_resources",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pool_id", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["pool_id"],
            ["dotmac_resource_pools.id"],
            name=op.f("fk_dotmac_resources_pool_id_dotmac_resource_pools"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dotmac_resources")),
        sa.UniqueConstraint("pool_id", "value", name=op.f("uq_dotmac_resources_pool_id_value")),
    )
    op.create_table(
        "dotmac_services",
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
            ["dotmac_customers.id"],
            name=op.f("fk_dotmac_services_customer_id_dotmac_customers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["dotmac_service_plans.id"],
            name=op.f("fk_dotmac_services_plan_id_dotmac_service_plans"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["dotmac_tenants.id"],
            name=op.f("fk_dotmac_services_tenant_id_dotmac_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dotmac_services")),
        sa.UniqueConstraint("saga_id", name=op.f("uq_dotmac_services_saga_id")),
    )
    op.create_index(
        "ix_dotmac_services_tenant_customer", "dotmac_services", ["tenant_id", "customer_id"]
    )
    op.create_table(
        "dotmac_invoice_lines",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("invoice_id", sa.String(length=64), nullable=False),
        sa.Column("service_id", sa.String(length=64), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("amount", Money(), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["dotmac_invoices.id"],
            name=op.f("fk_dotmac_invoice_lines_invoice_id_dotmac_invoices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dotmac_invoice_lines")),
    )
    op.create_index(
        op.f("ix_dotmac_invoice_lines_invoice_id"), "dotmac_invoice_lines", ["invoice_id"]
    )
    op.create_table(
        "dotmac_payments",
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
            ["dotmac_invoices.id"],
            name=op.f("fk_dotmac_payments_invoice_id_dotmac_invoices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dotmac_payments")),
        sa.UniqueConstraint("invoice_id", name=op.f("uq_dotmac_payments_invoice_id")),
    )
    op.create_table(
        "dotmac_resource_allocations",
        sa.Column("resource_id", sa.Integer(), nullable=False),
        sa.Column("service_id", sa.String(length=64), nullable=False),
        sa.Column("saga_id", sa.String(length=64), nullable=True),
        sa.Column("allocated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["resource_id"],
            ["dotmac_resources.id"],
            name=op.f("fk_dotmac_resource_allocations_resource_id_dotmac_resources"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("resource_id", name=op.f("pk_dotmac_resource_allocations")),
    )


def downgrade() -> None:
    op.drop_table("dotmac_resource_allocations")
    op.drop_table("dotmac_payments")
    op.drop_table("dotmac_invoice_lines")
    op.drop_table("dotmac_services")
    op.drop_table("dotmac_resources")
    op.drop_table("dotmac_invoices")
    op.drop_table("dotmac_billing_accounts")
    op.drop_table("dotmac_tenant_settings")
    op.drop_table("dotmac_service_plans")
    op.drop_table("dotmac_resource_pools")
    op.drop_table("dotmac_customers")
    op.drop_table("dotmac_billing_runs")
    op.drop_table("dotmac_tenants")
    op.drop_table("dotmac_notification_outbox")
    op.drop_table("dotmac_network_configurations")
    op.drop_table("dotmac_gateway_ledger")
    op.drop_table("dotmac_commission_configurations")
