"""Business operations: tenant provisioning, service provisioning and billing runs.

Also the ports they use (payment gateway, network provisioner, notifier) with their real
defaults, and :func:`seed_demo_data` for the spec's example records.
"""

from dotmac_shared.business_logic.operations.adapters import (
    OutboxNotifier,
    RecordingNetworkProvisioner,
    SandboxPaymentGateway,
)
from dotmac_shared.business_logic.operations.ports import (
    ChargeResult,
    ChargeStatus,
    NetworkProvisioner,
    Notifier,
    PaymentGateway,
    TransientGatewayError,
)
from dotmac_shared.business_logic.operations.seed import SeedSummary, seed_demo_data

__all__ = [
    "ChargeResult",
    "ChargeStatus",
    "NetworkProvisioner",
    "Notifier",
    "OutboxNotifier",
    "PaymentGateway",
    "RecordingNetworkProvisioner",
    "SandboxPaymentGateway",
    "SeedSummary",
    "TransientGatewayError",
    "seed_demo_data",
]
