"""SQLAlchemy models of every table the framework owns."""

from dotmac_shared.business_logic.persistence.models.base import Base
from dotmac_shared.business_logic.persistence.models.billing import (
    BillingRun,
    GatewayLedgerEntry,
    Invoice,
    InvoiceLine,
    Payment,
)
from dotmac_shared.business_logic.persistence.models.commissions import CommissionConfiguration
from dotmac_shared.business_logic.persistence.models.customers import (
    BillingAccount,
    Customer,
    Service,
    ServicePlan,
)
from dotmac_shared.business_logic.persistence.models.idempotency import IdempotencyRecord
from dotmac_shared.business_logic.persistence.models.outbox import OutboxMessage
from dotmac_shared.business_logic.persistence.models.policy_decisions import PolicyDecisionEntry
from dotmac_shared.business_logic.persistence.models.resources import (
    NetworkConfiguration,
    Resource,
    ResourceAllocation,
    ResourcePool,
)
from dotmac_shared.business_logic.persistence.models.sagas import SagaExecution, SagaStepExecution
from dotmac_shared.business_logic.persistence.models.tenants import Tenant, TenantSetting

__all__ = [
    "Base",
    "BillingAccount",
    "BillingRun",
    "CommissionConfiguration",
    "Customer",
    "GatewayLedgerEntry",
    "IdempotencyRecord",
    "Invoice",
    "InvoiceLine",
    "NetworkConfiguration",
    "OutboxMessage",
    "Payment",
    "PolicyDecisionEntry",
    "Resource",
    "ResourceAllocation",
    "ResourcePool",
    "SagaExecution",
    "SagaStepExecution",
    "Service",
    "ServicePlan",
    "Tenant",
    "TenantSetting",
]
