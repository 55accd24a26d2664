"""Business operations: tenant provisioning, service provisioning and billing runs.

Also the ports they use (payment gateway, network provisioner, notifier) with their real
defaults, :func:`seed_demo_data` for the spec's example records, and what callers that
must not block read: :func:`start_billing_run`, :func:`billing_run_progress`,
:func:`customer_record`.
"""

from dotmac_shared.business_logic.operations._adapters import (
    OutboxNotifier,
    RecordingNetworkProvisioner,
    SandboxPaymentGateway,
)
from dotmac_shared.business_logic.operations._billing_background import (
    BillingRunProgress,
    BillingRunStart,
    billing_run_progress,
    start_billing_run,
)
from dotmac_shared.business_logic.operations._billing_partitions import BillingPartitionWorker
from dotmac_shared.business_logic.operations._billing_run import BillingRunSaga, run_billing
from dotmac_shared.business_logic.operations._coordinator import shipped_coordinator
from dotmac_shared.business_logic.operations._customers import (
    CustomerRecord,
    CustomerService,
    customer_record,
)
from dotmac_shared.business_logic.operations._ports import (
    ChargeResult,
    ChargeStatus,
    NetworkProvisioner,
    Notifier,
    PaymentGateway,
    TransientGatewayError,
)
from dotmac_shared.business_logic.operations._seed import SeedSummary, seed_demo_data
from dotmac_shared.business_logic.operations._service_provisioning import ServiceProvisioningSaga
from dotmac_shared.business_logic.operations._tenant_provisioning import (
    TenantProvisioningOperation,
    TenantProvisioningSaga,
)

__all__ = [
    "BillingPartitionWorker",
    "BillingRunProgress",
    "BillingRunSaga",
    "BillingRunStart",
    "ChargeResult",
    "ChargeStatus",
    "CustomerRecord",
    "CustomerService",
    "NetworkProvisioner",
    "Notifier",
    "OutboxNotifier",
    "PaymentGateway",
    "RecordingNetworkProvisioner",
    "SandboxPaymentGateway",
    "SeedSummary",
    "ServiceProvisioningSaga",
    "TenantProvisioningOperation",
    "TenantProvisioningSaga",
    "TransientGatewayError",
    "billing_run_progress",
    "customer_record",
    "run_billing",
    "seed_demo_data",
    "shipped_coordinator",
    "start_billing_run",
]
