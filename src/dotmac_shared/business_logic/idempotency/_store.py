"""The storage port every idempotency store implements with the same atomic guarantees."""

from __future__ import annotations

import datetime as dt
from typing import Protocol, runtime_checkable

from dotmac_shared.business_logic.idempotency._records import StoredRecord

__all__ = ["IdempotencyStore"]


@runtime_checkable
class IdempotencyStore(Protocol):
    """Atomic primitives; the meaning of records lives in :func:`~.records.judge`.

    Every method is a single atomic step on the backing store. Conditional writes compare the
    fencing token ``(attempts, lease_owner)`` of the record the caller last saw.
    """

    async def insert_or_get(self, record: StoredRecord) -> StoredRecord | None:
        """Insert ``record`` if its key is free (returns ``None``); else return what is there."""
        ...

    async def replace(self, expected: StoredRecord, record: StoredRecord) -> bool:
        """Swap in ``record`` only if the stored token still equals ``expected``'s."""
        ...

    async def finish(self, record: StoredRecord) -> bool:
        """Store a result or failure, only if ``record``'s holder still holds the claim."""
        ...

    async def renew(self, record: StoredRecord, lease_expires_at: dt.datetime) -> bool:
        """Extend the holder's lease; ``False`` when the claim was taken over."""
        ...

    async def release(self, record: StoredRecord) -> bool:
        """Delete the claim of ``record``'s holder, so that the next caller runs it afresh."""
        ...

    async def get(self, tenant_id: str, key: str) -> StoredRecord | None:
        """Return the record under ``(tenant_id, key)``, expired or not."""
        ...

    async def purge_expired(self, now: dt.datetime, *, batch_size: int = 1000) -> int:
        """Delete records that expired before ``now``, in batches; returns how many."""
        ...
