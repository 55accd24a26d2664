"""DotMac business logic: policy-as-code, idempotency and sagas for an ISP SaaS platform.

Importing this package loads only the exceptions; every other name is loaded from its
subpackage on first use (PEP 562), so that code using only the policy engine never loads a
database or Redis library.

Example:
    >>> from dotmac_shared.business_logic import create_session_factory
    >>> session_factory = create_session_factory("sqlite:///:memory:", migrate=False)
"""

from importlib import metadata as _metadata
from typing import TYPE_CHECKING

from dotmac_shared.business_logic._lazy import lazy_exports
from dotmac_shared.business_logic.exceptions import (
    AuthenticationError,
    BillingRunError,
    BusinessLogicError,
    ErrorSeverity,
    IdempotencyError,
    IdempotencyLeaseLostError,
    IdempotencyPayloadMismatchError,
    IdempotencyResultNotSavedError,
    IdempotencyRetriesExhaustedError,
    IllegalSagaTransitionError,
    InvalidInputError,
    NotificationDeliveryError,
    OperationInProgressError,
    PermissionDeniedError,
    PersistenceError,
    PolicyDefinitionError,
    PolicyError,
    PolicyNotFoundError,
    PolicyViolationError,
    ProvisioningError,
    ProvisioningRefusedError,
    ResourceNotFoundError,
    ResultSerializationError,
    SagaCompensatedError,
    SagaConflictError,
    SagaDefinitionError,
    SagaError,
    SagaLeaseLostError,
    SagaNotFoundError,
    SagaRepairRefusedError,
    SagaTimeoutError,
    SchemaVersionError,
)

if TYPE_CHECKING:
    from dotmac_shared.business_logic.idempotency import (
        IdempotencyKey,
        IdempotencyManager,
        IdempotencyResult,
        IdempotentOperation,
        idempotent,
    )
    from dotmac_shared.business_logic.observability._context import (
        correlation_scope,
        get_correlation_id,
    )
    from dotmac_shared.business_logic.persistence._session import (
        close_session_factory,
        create_session_factory,
    )
    from dotmac_shared.business_logic.policies import (
        PolicyContext,
        PolicyDecision,
        PolicyEngine,
        PolicyResult,
    )
    from dotmac_shared.business_logic.sagas import (
        ALL_TENANTS,
        AllTenants,
        RetryPolicy,
        SagaContext,
        SagaCoordinator,
        SagaDefinition,
        SagaEvent,
        SagaFailure,
        SagaResult,
        SagaStatus,
        SagaStep,
        SagaStepResult,
        SagaSummary,
        SagaWorker,
        StepContext,
        StepKind,
        StepStatus,
    )

try:
    # One source of truth: the installed distribution's metadata (pyproject's version).
    __version__ = _metadata.version("dotmac-business-logic")
except _metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "ALL_TENANTS",
    "AllTenants",
    "AuthenticationError",
    "BillingRunError",
    "BusinessLogicError",
    "ErrorSeverity",
    "IdempotencyError",
    "IdempotencyKey",
    "IdempotencyLeaseLostError",
    "IdempotencyManager",
    "IdempotencyPayloadMismatchError",
    "IdempotencyResult",
    "IdempotencyResultNotSavedError",
    "IdempotencyRetriesExhaustedError",
    "IdempotentOperation",
    "IllegalSagaTransitionError",
    "InvalidInputError",
    "NotificationDeliveryError",
    "OperationInProgressError",
    "PermissionDeniedError",
    "PersistenceError",
    "PolicyContext",
    "PolicyDecision",
    "PolicyDefinitionError",
    "PolicyEngine",
    "PolicyError",
    "PolicyNotFoundError",
    "PolicyResult",
    "PolicyViolationError",
    "ProvisioningError",
    "ProvisioningRefusedError",
    "ResourceNotFoundError",
    "ResultSerializationError",
    "RetryPolicy",
    "SagaCompensatedError",
    "SagaConflictError",
    "SagaContext",
    "SagaCoordinator",
    "SagaDefinition",
    "SagaDefinitionError",
    "SagaError",
    "SagaEvent",
    "SagaFailure",
    "SagaLeaseLostError",
    "SagaNotFoundError",
    "SagaRepairRefusedError",
    "SagaResult",
    "SagaStatus",
    "SagaStep",
    "SagaStepResult",
    "SagaSummary",
    "SagaTimeoutError",
    "SagaWorker",
    "SchemaVersionError",
    "StepContext",
    "StepKind",
    "StepStatus",
    "close_session_factory",
    "correlation_scope",
    "create_session_factory",
    "get_correlation_id",
    "idempotent",
]

# Name -> module defining it, imported on first access (PEP 562).
_LAZY: dict[str, str] = {
    "ALL_TENANTS": "dotmac_shared.business_logic.sagas",
    "AllTenants": "dotmac_shared.business_logic.sagas",
    "IdempotencyKey": "dotmac_shared.business_logic.idempotency",
    "IdempotencyManager": "dotmac_shared.business_logic.idempotency",
    "IdempotencyResult": "dotmac_shared.business_logic.idempotency",
    "IdempotentOperation": "dotmac_shared.business_logic.idempotency",
    "PolicyContext": "dotmac_shared.business_logic.policies",
    "PolicyDecision": "dotmac_shared.business_logic.policies",
    "PolicyEngine": "dotmac_shared.business_logic.policies",
    "PolicyResult": "dotmac_shared.business_logic.policies",
    "RetryPolicy": "dotmac_shared.business_logic.sagas",
    "SagaContext": "dotmac_shared.business_logic.sagas",
    "SagaCoordinator": "dotmac_shared.business_logic.sagas",
    "SagaDefinition": "dotmac_shared.business_logic.sagas",
    "SagaEvent": "dotmac_shared.business_logic.sagas",
    "SagaFailure": "dotmac_shared.business_logic.sagas",
    "SagaResult": "dotmac_shared.business_logic.sagas",
    "SagaStatus": "dotmac_shared.business_logic.sagas",
    "SagaStep": "dotmac_shared.business_logic.sagas",
    "SagaStepResult": "dotmac_shared.business_logic.sagas",
    "SagaSummary": "dotmac_shared.business_logic.sagas",
    "SagaWorker": "dotmac_shared.business_logic.sagas",
    "StepContext": "dotmac_shared.business_logic.sagas",
    "StepKind": "dotmac_shared.business_logic.sagas",
    "StepStatus": "dotmac_shared.business_logic.sagas",
    "close_session_factory": "dotmac_shared.business_logic.persistence._session",
    "correlation_scope": "dotmac_shared.business_logic.observability._context",
    "create_session_factory": "dotmac_shared.business_logic.persistence._session",
    "get_correlation_id": "dotmac_shared.business_logic.observability._context",
    "idempotent": "dotmac_shared.business_logic.idempotency",
}

__getattr__, __dir__ = lazy_exports(_LAZY, globals())
