"""Saga data at the boundary: what initial data and step results may be, and their stored form.

Pure functions, no I/O: refuse what either database cannot store (before anything is
written), encode step results as the idempotency codec does (and decode them back), compare
initial data canonically, and turn a record into the :class:`SagaResult` callers get.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from dotmac_shared.business_logic.exceptions import InvalidInputError, ResultSerializationError
from dotmac_shared.business_logic.idempotency._codec import (
    canonical_json,
    decode_result,
    encode_result,
)
from dotmac_shared.business_logic.sagas._results import SagaResult, SagaStepResult
from dotmac_shared.business_logic.sagas._states import SagaStatus, StepStatus
from dotmac_shared.business_logic.sagas._store import SagaRecord

__all__ = [
    "MAX_INITIAL_DATA_BYTES",
    "MAX_NESTING",
    "MAX_STEP_RESULT_BYTES",
    "check_storable",
    "decoded",
    "json_object",
    "same_data",
    "saga_result",
    "step_result",
]

#: Largest initial data accepted, as JSON text (a saga row is not a blob store).
MAX_INITIAL_DATA_BYTES = 1_000_000
#: Largest step result stored, as JSON text; a larger one fails its step.
MAX_STEP_RESULT_BYTES = 1_000_000
#: Deepest nesting of mappings and lists accepted in initial data and step results.
MAX_NESTING = 64
#: Sorts after every real time (a compensated step that has no time yet comes last).
_NEVER = dt.datetime.max.replace(tzinfo=dt.UTC)


def check_storable(value: object, what: str, field: str) -> None:
    """Refuse what both databases cannot store: nesting past a limit, NUL characters.

    PostgreSQL's ``jsonb`` refuses the NUL character (U+0000) in any string; a
    self-referential value is nesting without end. Both are refused here, before anything
    is written, on either database (a saga must not depend on which one it runs on).
    """
    pending: list[tuple[object, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise InvalidInputError(f"{what} holds a NUL character (\\x00)", field=field)
        elif isinstance(item, Mapping | list | tuple):
            if depth >= MAX_NESTING:
                raise InvalidInputError(
                    f"{what} is nested deeper than {MAX_NESTING} levels", field=field
                )
            if isinstance(item, Mapping):
                pending.extend((key, depth + 1) for key in item)
                pending.extend((entry, depth + 1) for entry in item.values())
            else:
                pending.extend((entry, depth + 1) for entry in item)


def json_object(value: object, what: str, field: str) -> dict[str, Any]:
    """Return ``value`` as a plain dict if it is a JSON object, else a clear error."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInputError(
            f"{what} must be a mapping, got {type(value).__name__}", field=field
        )
    check_storable(value, what, field)
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what} is not JSON-serializable: {exc}", field=field) from exc
    if len(text) > MAX_INITIAL_DATA_BYTES:
        raise InvalidInputError(
            f"{what} is {len(text)} bytes as JSON; the limit is {MAX_INITIAL_DATA_BYTES}",
            field=field,
        )
    result: dict[str, Any] = json.loads(text)
    return result


def step_result(value: object, step: str) -> dict[str, Any]:
    """A step's result in its stored form, or a clear error before anything is recorded.

    ``Decimal``, timezone-aware ``datetime``, ``date`` and ``UUID`` values are kept, tagged
    as the idempotency codec tags them (``{"$decimal": "12.50"}``, see
    :mod:`dotmac_shared.business_logic.idempotency._codec`); :func:`decoded` gives them back.

    Raises:
        InvalidInputError: Not a mapping, or not storable (an unsupported type, NaN, a naive
            datetime, a reserved ``$`` tag key, a NUL character, too deep or too large).
    """
    what = f"step {step} result"
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{what} must be a mapping, got {type(value).__name__}", field=step)
    check_storable(value, what, step)
    try:
        encoded = encode_result(value)
    except ResultSerializationError as exc:
        raise InvalidInputError(
            f"{what} cannot be stored: {exc.message}", field=step, metadata=exc.metadata
        ) from exc
    size = len(json.dumps(encoded))
    if size > MAX_STEP_RESULT_BYTES:
        raise InvalidInputError(
            f"{what} is {size} bytes as JSON; the limit is {MAX_STEP_RESULT_BYTES}", field=step
        )
    return encoded


def decoded(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored step result as the step returned it (tagged values decoded)."""
    return decode_result(stored)


def same_data(stored: Mapping[str, Any], given: Mapping[str, Any]) -> bool:
    """Whether two initial data are the same JSON, compared canonically.

    Numbers are compared as decimals read from the JSON text: PostgreSQL's ``jsonb`` gives
    ``1e300`` back as ``1000...0``, which is the same number, not another payload.
    """

    def canonical(value: Mapping[str, Any]) -> str:
        exact = json.loads(json.dumps(value), parse_float=Decimal, parse_int=Decimal)
        return canonical_json(exact)

    return canonical(stored) == canonical(given)


def saga_result(record: SagaRecord) -> SagaResult:
    """``record`` as the coordinator returns it (step results decoded)."""
    ordered = sorted(record.steps.values(), key=lambda s: s.index)
    steps = tuple(
        SagaStepResult(
            name=s.name,
            index=s.index,
            status=s.status,
            attempts=s.attempts,
            compensation_attempts=s.compensation_attempts,
            result=decoded(s.result) if s.result is not None else None,
            error=s.error,
            started_at=s.started_at,
            completed_at=s.completed_at,
            compensated_at=s.compensated_at,
        )
        for s in ordered
    )
    compensated = tuple(
        s.name
        for s in sorted(ordered, key=lambda s: s.compensated_at or _NEVER)
        if s.status is StepStatus.COMPENSATED and s.compensation_attempts > 0
    )
    stuck = None
    if record.status is SagaStatus.COMPENSATION_FAILED:
        stuck = next((s.error for s in ordered if s.status is StepStatus.COMPENSATION_FAILED), None)
    return SagaResult(
        saga_id=record.saga_id,
        saga_name=record.saga_name,
        status=record.status,
        step_results={s.name: s.result for s in steps if s.result is not None},
        error=record.error,
        failed_step=record.failed_step,
        compensated_steps=compensated,
        compensation_error=stuck,
        saga_version=record.saga_version,
        tenant_id=record.tenant_id,
        user_id=record.user_id,
        correlation_id=record.correlation_id,
        initial_data=record.initial_data,
        current_step=record.current_step,
        lease_owner=record.lease_owner,
        lease_expires_at=record.lease_expires_at,
        created_at=record.created_at,
        updated_at=record.updated_at,
        completed_at=record.completed_at,
        steps=steps,
    )
