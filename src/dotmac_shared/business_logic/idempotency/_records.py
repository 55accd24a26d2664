"""What a store holds for a key, and the one place that decides what a record means. Pure."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["RecordStatus", "StoredRecord", "Verdict", "judge"]


class RecordStatus(enum.StrEnum):
    """Life of a claim: ``in_progress`` until its holder stores a result or a cached failure."""

    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One claimed key as every store keeps it.

    ``(attempts, lease_owner)`` is the fencing token: each claim or take-over increments
    ``attempts`` and names a new owner, and a store only applies a conditional write when the
    token still matches, so a holder that lost its lease cannot overwrite its successor.
    """

    tenant_id: str
    key: str
    operation_type: str
    payload_hash: str
    status: RecordStatus
    attempts: int
    lease_owner: str | None
    lease_expires_at: dt.datetime | None
    expires_at: dt.datetime
    created_at: dt.datetime
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    completed_at: dt.datetime | None = None

    def evolve(self, **changes: Any) -> StoredRecord:
        """Return a copy with ``changes`` applied.

        Copies the slots directly: ``dataclasses.replace`` costs twice as much, which shows
        on an idempotent call that evolves a record on every first execution.
        """
        copy = object.__new__(StoredRecord)
        for name in _FIELDS:
            value = changes.pop(name) if name in changes else getattr(self, name)
            object.__setattr__(copy, name, value)
        if changes:
            raise TypeError(f"StoredRecord has no field(s) {', '.join(sorted(changes))}")
        return copy


_FIELDS = tuple(field.name for field in fields(StoredRecord))


class Verdict(enum.Enum):
    """What the caller holding a payload should do about the record found under its key."""

    CLAIM = "claim"  # nothing there: insert a claim
    TAKE_OVER = "take_over"  # expired record, or a holder whose lease ran out: replace it
    REPLAY = "replay"  # a stored result (or cached failure) for the same payload
    IN_PROGRESS = "in_progress"  # a live holder is running it
    MISMATCH = "mismatch"  # the key was used for a different payload
    OTHER_OPERATION = "other_operation"  # the key was used for a different operation type


def judge(
    record: StoredRecord | None,
    payload_hash: str,
    now: dt.datetime,
    operation_type: str | None = None,
) -> Verdict:
    """Decide what ``record`` means for a caller with ``payload_hash`` at ``now``.

    An expired record counts as absent (it is taken over, whatever its payload was); a
    different operation type, then a different payload, is refused before anything else, so
    a mismatch is never mistaken for a hit or a wait. A client's key belongs to the operation
    that first used it: the same key and payload sent to another operation must not replay
    the first one's result under the second one's name.

    Args:
        record: What the store holds under the key, or ``None``.
        payload_hash: The caller's payload fingerprint.
        now: The caller's current time.
        operation_type: The caller's operation type; ``None`` skips the comparison.
    """
    if record is None:
        return Verdict.CLAIM
    if record.expires_at <= now:
        return Verdict.TAKE_OVER
    if operation_type is not None and record.operation_type != operation_type:
        return Verdict.OTHER_OPERATION
    if record.payload_hash != payload_hash:
        return Verdict.MISMATCH
    if record.status is not RecordStatus.IN_PROGRESS:
        return Verdict.REPLAY
    if record.lease_expires_at is None or record.lease_expires_at <= now:
        return Verdict.TAKE_OVER
    return Verdict.IN_PROGRESS
