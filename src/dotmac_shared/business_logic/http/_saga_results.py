"""The one place the HTTP layer turns saga results (``SagaResult``) into response models.

Every route that returns a saga goes through :func:`outcome_view`, :func:`detail_view` or
:func:`summary_view`. A failure is the coordinator's structured ``SagaFailure`` (stable code,
message, step, context), never a string to pattern-match.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "SagaDetail",
    "SagaEventView",
    "SagaFailureView",
    "SagaOutcome",
    "SagaStepView",
    "SagaSummary",
    "detail_view",
    "event_view",
    "outcome_view",
    "summary_view",
]


def _json(value: Any) -> Any:
    """Step results are stored JSON; keep what is not (non-finite floats, objects) safe."""
    if isinstance(value, Mapping):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return json.loads(json.dumps(value, default=str))


def _seconds(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


class SagaFailureView(BaseModel):
    """Why a saga or step failed: the error's stable code, its message, step and context."""

    code: str = Field(description="Stable error code, e.g. invalid_input or step_timeout.")
    message: str
    step: str | None = Field(None, description="The step it happened in, if any.")
    context: dict[str, Any] = Field(
        default_factory=dict, description="Structured context: field, reasons, failed rules."
    )


def _failure(value: Any) -> SagaFailureView | None:
    """A stored failure (``SagaFailure`` or its JSON form) as a response model."""
    if value is None:
        return None
    data = value.to_dict() if hasattr(value, "to_dict") else dict(value)
    return SagaFailureView.model_validate(_json(data))


class SagaOutcome(BaseModel):
    """Where a saga ended (or is): what execute, resume and cancel return."""

    saga_id: str
    saga_name: str
    status: str = Field(description="running, compensating, completed, compensated, ...")
    step_results: dict[str, Any] = Field(description="Each completed step's result.")
    error: SagaFailureView | None = Field(None, description="Why the saga failed, if it did.")
    failed_step: str | None = None
    compensated_steps: list[str] = Field(default_factory=list)
    compensation_error: SagaFailureView | None = Field(
        None, description="In compensation_failed: why the stuck compensation failed."
    )


class SagaStepView(BaseModel):
    """One step of a saga: status, attempts, error and how long it ran."""

    name: str
    index: int
    status: str
    attempts: int
    compensation_attempts: int
    result: dict[str, Any] | None
    error: SagaFailureView | None
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    compensated_at: dt.datetime | None
    duration_seconds: float | None = Field(
        description="From start to completion (or compensation), if both happened."
    )


class SagaEventView(BaseModel):
    """One entry of a saga's history: a transition, or an operator's action."""

    sequence: int | None = Field(description="Its position in the history (for ?after=).")
    kind: str = Field(
        description="saga.<status>, step.<status>, or action.<name> (an operator's repair)."
    )
    occurred_at: dt.datetime | None
    step: str | None = None
    status: str | None = None
    attempt: int | None = Field(None, description="The try (of the compensation, if undoing).")
    worker: str | None = Field(None, description="The worker that wrote it.")
    operator: str | None = Field(None, description="Who acted, for a manual action.")
    reason: str | None = Field(None, description="Why, for a manual action.")
    error: SagaFailureView | None = None
    data: dict[str, Any] | None = None


def event_view(event: Any) -> SagaEventView:
    """The response model of one ``SagaEvent``."""
    return SagaEventView(
        sequence=event.sequence,
        kind=event.kind,
        occurred_at=event.occurred_at,
        step=event.step,
        status=event.status,
        attempt=event.attempt,
        worker=event.worker,
        operator=event.operator,
        reason=event.reason,
        error=_failure(event.error),
        data=_json(dict(event.data)) if event.data is not None else None,
    )


class SagaDetail(SagaOutcome):
    """A saga's full record, with its history."""

    saga_version: str
    tenant_id: str | None
    user_id: str | None
    correlation_id: str | None
    initial_data: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime | None
    completed_at: dt.datetime | None
    duration_seconds: float | None = Field(description="From creation to completion, if done.")
    steps: list[SagaStepView]
    history: list[SagaEventView] = Field(
        default_factory=list, description="Every transition and operator action, oldest first."
    )


class SagaSummary(BaseModel):
    """A saga in a list."""

    saga_id: str
    saga_name: str
    status: str
    error: SagaFailureView | None
    failed_step: str | None
    created_at: dt.datetime
    updated_at: dt.datetime | None
    completed_at: dt.datetime | None


def outcome_view(outcome: Mapping[str, Any]) -> SagaOutcome:
    """The response model of an outcome from ``execute_saga``/``resume``/``cancel``."""
    return SagaOutcome(
        saga_id=str(outcome["saga_id"]),
        saga_name=str(outcome["saga_name"]),
        status=str(outcome["status"]),
        step_results=_json(dict(outcome["step_results"])),
        error=_failure(outcome["error"]),
        failed_step=outcome["failed_step"],
        compensated_steps=list(outcome["compensated_steps"]),
        compensation_error=_failure(outcome.get("compensation_error")),
    )


def detail_view(saga: Mapping[str, Any]) -> SagaDetail:
    """The response model of a record from ``get_saga``."""
    base = outcome_view(saga)
    steps = [
        SagaStepView(
            name=step["name"],
            index=step["index"],
            status=str(step["status"]),
            attempts=step["attempts"],
            compensation_attempts=step["compensation_attempts"],
            result=_json(step["result"]) if step["result"] is not None else None,
            error=_failure(step["error"]),
            started_at=step["started_at"],
            completed_at=step["completed_at"],
            compensated_at=step["compensated_at"],
            duration_seconds=_seconds(
                step["started_at"], step["compensated_at"] or step["completed_at"]
            ),
        )
        for step in saga["steps"]
    ]
    return SagaDetail(
        **base.model_dump(),
        saga_version=str(saga["saga_version"]),
        tenant_id=saga["tenant_id"],
        user_id=saga["user_id"],
        correlation_id=saga["correlation_id"],
        initial_data=_json(dict(saga["initial_data"])),
        created_at=saga["created_at"],
        updated_at=saga["updated_at"],
        completed_at=saga["completed_at"],
        duration_seconds=_seconds(saga["created_at"], saga["completed_at"]),
        steps=steps,
        history=[event_view(event) for event in saga.get("history", ())],
    )


def summary_view(row: Any) -> SagaSummary:
    """The list item of a stored saga row (``SagaExecution``)."""
    return SagaSummary(
        saga_id=row.saga_id,
        saga_name=row.saga_name,
        status=row.status,
        error=_failure(row.error),
        failed_step=row.failed_step,
        created_at=row.created_at,
        updated_at=row.updated_at,
        completed_at=row.completed_at,
    )
