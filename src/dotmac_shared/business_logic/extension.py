"""What you need to write your own store, schema branch or clock, in one public module.

The idempotency and saga packages keep their stores behind a ``Protocol``; a store of your
own (another database, an in-memory one for tests) implements that protocol over the
records below, with the atomic guarantees each method's docstring states. Pass it as
``IdempotencyManager(store=...)`` or ``SagaCoordinator(session_factory, store=...)``.

Example:
    >>> from dotmac_shared.business_logic.extension import IdempotencyStore, StoredRecord
    >>> class MyStore:  # implements every method of IdempotencyStore
    ...     ...
"""

from dotmac_shared.business_logic.clock import Clock, ManualClock, SystemClock
from dotmac_shared.business_logic.idempotency import IdempotencyStore, RecordStatus, StoredRecord
from dotmac_shared.business_logic.persistence import (
    JSONDocument,
    Money,
    SchemaBranch,
    UTCDateTime,
    register_schema_branch,
)
from dotmac_shared.business_logic.persistence.models._base import NAMING_CONVENTION, TABLE_PREFIX
from dotmac_shared.business_logic.sagas import (
    ALL_TENANTS,
    AllTenants,
    SagaFailure,
    SagaRecord,
    SagaStatus,
    SagaStore,
    StepRecord,
    StepStatus,
    TenantScope,
)

__all__ = [
    "ALL_TENANTS",
    "AllTenants",
    "Clock",
    "IdempotencyStore",
    "JSONDocument",
    "ManualClock",
    "Money",
    "NAMING_CONVENTION",
    "RecordStatus",
    "SagaFailure",
    "SagaRecord",
    "SagaStatus",
    "SagaStore",
    "SchemaBranch",
    "StepRecord",
    "StepStatus",
    "StoredRecord",
    "SystemClock",
    "TABLE_PREFIX",
    "TenantScope",
    "UTCDateTime",
    "register_schema_branch",
]
