"""SQLAlchemy models of the ISP domain's tables (migration branch ``dotmac_isp``).

Tenants, customers, plans and services, billing runs, invoices and payments, the sandbox
gateway's ledger, the notification outbox, resource pools and commission configurations.
Every table is named ``dotmac_<name>``.
"""

from dotmac_shared.business_logic.operations.models._base import DomainBase
from dotmac_shared.business_logic.operations.models._billing import (
    BillingPartition,
    BillingRun,
    GatewayLedgerEntry,
    Invoice,
    InvoiceLine,
    Payment,
)
from dotmac_shared.business_logic.operations.models._commissions import CommissionConfiguration
from dotmac_shared.business_logic.operations.models._customers import (
    BillingAccount,
    Customer,
    Service,
    ServicePlan,
)
from dotmac_shared.business_logic.operations.models._outbox import OutboxMessage
from dotmac_shared.business_logic.operations.models._resources import (
    NetworkConfiguration,
    Resource,
    ResourceAllocation,
    ResourcePool,
)
from dotmac_shared.business_logic.operations.models._tenants import Tenant, TenantSetting

__all__ = [
    "BillingAccount",
    "BillingPartition",
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
