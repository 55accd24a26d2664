"""SQLAlchemy models of the ISP domain's tables (migration branch ``dotmac_isp``).

Tenants, customers, plans and services, billing runs, invoices and payments, the sandbox
gateway's ledger, the notification outbox, resource pools and commission configurations.
Every table is named ``dotmac_<name>``.
"""

from dotmac_shared.business_logic.operations.models.base import DomainBase
from dotmac_shared.business_logic.operations.models.billing import (
    BillingRun,
    GatewayLedgerEntry,
    Invoice,
    InvoiceLine,
    Payment,
)
from dotmac_shared.business_logic.operations.models.commissions import CommissionConfiguration
from dotmac_shared.business_logic.operations.models.customers import (
    BillingAccount,
    Customer,
    Service,
    ServicePlan,
)
from dotmac_shared.business_logic.operations.models.outbox import OutboxMessage
from dotmac_shared.business_logic.operations.models.resources import (
    NetworkConfiguration,
    Resource,
    ResourceAllocation,
    ResourcePool,
)
from dotmac_shared.business_logic.operations.models.tenants import Tenant, TenantSetting

__all__ = [
    "BillingAccount",
    "BillingRun",
    "CommissionConfiguration",
    "Customer",
    "DomainBase",
    "GatewayLedgerEntry",
    "Invoice",
    "InvoiceLine",
    "NetworkConfiguration",
    "OutboxMessage",
    "Payment",
    "Resource",
    "ResourceAllocation",
    "ResourcePool",
    "Service",
    "ServicePlan",
    "Tenant",
    "TenantSetting",
]
