"""Sagas: multi-step operations that complete or are compensated in reverse, durably.

Example:
    >>> from dotmac_shared.business_logic.sagas import SagaCoordinator, SagaContext
"""

from dotmac_shared.business_logic.sagas._context import SagaContext, StepContext
from dotmac_shared.business_logic.sagas._coordinator import SagaCoordinator
from dotmac_shared.business_logic.sagas._definition import (
    RetryPolicy,
    SagaDefinition,
    SagaStep,
    StepAction,
    StepHandler,
)
from dotmac_shared.business_logic.sagas._scope import ALL_TENANTS, AllTenants, TenantScope
from dotmac_shared.business_logic.sagas._states import SagaStatus, StepStatus
from dotmac_shared.business_logic.sagas._store import (
    SagaRecord,
    SagaStore,
    SqlSagaStore,
    StepRecord,
)
from dotmac_shared.business_logic.sagas._worker import SagaWorker

__all__ = [
    "ALL_TENANTS",
    "AllTenants",
    "RetryPolicy",
    "SagaContext",
    "SagaCoordinator",
    "SagaDefinition",
    "SagaRecord",
    "SagaStatus",
    "SagaStep",
    "SagaStore",
    "SagaWorker",
    "SqlSagaStore",
    "StepAction",
    "StepContext",
    "StepHandler",
    "StepRecord",
    "StepStatus",
    "TenantScope",
]
