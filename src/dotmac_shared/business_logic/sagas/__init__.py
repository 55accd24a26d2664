"""Sagas: multi-step operations that complete or are compensated in reverse, durably.

``execute_saga``, ``resume_saga``, ``cancel_saga`` and ``get_saga`` return a
:class:`SagaResult`; ``list_sagas`` returns :class:`SagaSummary` rows, ``page_sagas`` a
:class:`SagaPage` of them (keyset paging with an opaque cursor). A failure is a
:class:`SagaFailure` (stable code, message, step, structured context). A custom store
implements :class:`SagaStore` over :class:`SagaRecord` and :class:`StepRecord`.

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
from dotmac_shared.business_logic.sagas._results import (
    SagaFailure,
    SagaPage,
    SagaResult,
    SagaStepResult,
    SagaSummary,
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
    "SagaFailure",
    "SagaPage",
    "SagaRecord",
    "SagaResult",
    "SagaStatus",
    "SagaStep",
    "SagaStepResult",
    "SagaStore",
    "SagaSummary",
    "SagaWorker",
    "SqlSagaStore",
    "StepAction",
    "StepContext",
    "StepHandler",
    "StepRecord",
    "StepStatus",
    "TenantScope",
]
