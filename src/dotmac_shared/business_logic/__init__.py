"""DotMac business logic: policy-as-code, idempotency and sagas for an ISP SaaS platform.

Example:
    >>> from dotmac_shared.business_logic import create_session_factory
    >>> db_session_factory = create_session_factory("sqlite:///:memory:", migrate=False)
"""

from importlib import metadata as _metadata

from dotmac_shared.business_logic.exceptions import (
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
    OperationInProgressError,
    PersistenceError,
    PolicyDefinitionError,
    PolicyError,
    PolicyNotFoundError,
    PolicyViolationError,
    ProvisioningError,
    ResultSerializationError,
    SagaConflictError,
    SagaDefinitionError,
    SagaError,
    SagaLeaseLostError,
    SagaNotFoundError,
    SagaTimeoutError,
)
from dotmac_shared.business_logic.idempotency import (
    IdempotencyKey,
    IdempotencyManager,
    IdempotencyResult,
    IdempotentOperation,
    idempotent,
)
from dotmac_shared.business_logic.observability.context import correlation_scope, get_correlation_id
from dotmac_shared.business_logic.persistence.session import (
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
    SagaStatus,
    SagaStep,
    SagaWorker,
    StepContext,
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
    "OperationInProgressError",
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
    "ResultSerializationError",
    "RetryPolicy",
    "SagaConflictError",
    "SagaContext",
    "SagaCoordinator",
    "SagaDefinition",
    "SagaDefinitionError",
    "SagaError",
    "SagaLeaseLostError",
    "SagaNotFoundError",
    "SagaStatus",
    "SagaStep",
    "SagaTimeoutError",
    "SagaWorker",
    "StepContext",
    "StepStatus",
    "close_session_factory",
    "correlation_scope",
    "create_session_factory",
    "get_correlation_id",
    "idempotent",
]
