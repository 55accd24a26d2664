"""Idempotency: run an operation at most once per key; replay its result to every retry.

Example:
    >>> from dotmac_shared.business_logic.idempotency import IdempotencyKey
    >>> key = IdempotencyKey.generate("tenant_provisioning", "tenant123", {"domain": "x"})
    >>> key.operation_type, key.tenant_id
    ('tenant_provisioning', 'tenant123')
"""

from dotmac_shared.business_logic.idempotency._codec import canonical_json
from dotmac_shared.business_logic.idempotency._decorator import idempotent
from dotmac_shared.business_logic.idempotency._keys import IdempotencyKey, payload_fingerprint
from dotmac_shared.business_logic.idempotency._manager import IdempotencyManager, IdempotencyResult
from dotmac_shared.business_logic.idempotency._operation import (
    FunctionOperation,
    IdempotentOperation,
    registered_operation,
    registered_types,
)
from dotmac_shared.business_logic.idempotency._records import RecordStatus, StoredRecord
from dotmac_shared.business_logic.idempotency._redis_store import RedisIdempotencyStore
from dotmac_shared.business_logic.idempotency._sql_store import SqlIdempotencyStore
from dotmac_shared.business_logic.idempotency._store import IdempotencyStore

__all__ = [
    "FunctionOperation",
    "IdempotencyKey",
    "IdempotencyManager",
    "IdempotencyResult",
    "IdempotencyStore",
    "IdempotentOperation",
    "RecordStatus",
    "RedisIdempotencyStore",
    "SqlIdempotencyStore",
    "StoredRecord",
    "canonical_json",
    "idempotent",
    "payload_fingerprint",
    "registered_operation",
    "registered_types",
]
