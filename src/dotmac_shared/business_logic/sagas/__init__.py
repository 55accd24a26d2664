"""Sagas: multi-step operations that complete or are compensated in reverse, durably.

``execute_saga``, ``resume_saga``, ``cancel_saga``, ``get_saga`` and the repair actions
(``retry_compensation``, ``mark_step_compensated``, ``retry_step``, ``resolve_incident``)
return a :class:`SagaResult` (``get_saga`` and the repair actions with its history of
:class:`SagaEvent` entries); ``list_sagas`` returns :class:`SagaSummary` rows, ``page_sagas`` a
:class:`SagaPage` of them (keyset paging with an opaque cursor). A failure is a
:class:`SagaFailure` (stable code, message, step, structured context). A custom store
implements :class:`SagaStore` over :class:`SagaRecord` and :class:`StepRecord`.

Example:
    >>> from dotmac_shared.business_logic.sagas import SagaCoordinator, SagaContext
"""

from dotmac_shared.business_logic.sagas._context import SagaContext, StepContext
from dotmac_shared.business_logic.sagas._coordinator import SagaCoordinator
from dotmac_shared.business_logic.sagas._definition import (
    NOTHING_TO_UNDO,
    RETRIABLE_RETRY,
    RetryPolicy,
    SagaDefinition,
    SagaStep,
    StepAction,
    StepHandler,
    StepKind,
)
from dotmac_shared.business_logic.sagas._results import (
    SagaEvent,
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
    "NOTHING_TO_UNDO",
    "RETRIABLE_RETRY",
    "RetryPolicy",
    "SagaContext",
    "SagaCoordinator",
    "SagaDefinition",
    "SagaEvent",
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
    "StepKind",
    "StepRecord",
    "StepStatus",
    "TenantScope",
]
