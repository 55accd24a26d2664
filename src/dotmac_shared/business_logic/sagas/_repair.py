"""Operators' repair actions: the state change each makes, or why it does not apply. Pure.

A saga that stopped for a person (``compensation_failed`` or ``incident``) is moved on by
one of these, each a state change like a decision of ``_decide.py`` (it follows the diagram
in ``_states.py``) that the coordinator commits atomically with its history, then drives on:

- ``retry_compensation``: ``compensation_failed`` -> ``compensating``; the stuck step's
  compensation runs again (after the cause was fixed).
- ``mark_step_compensated``: ``compensation_failed`` -> ``compensating`` with the stuck step
  marked ``compensated`` by hand (a person undid it outside); the rest is compensated.
- ``retry_step``: ``incident`` -> ``running``; the exhausted step starts again (its try
  counted) and the saga goes forward.
- ``resolve_incident``: ``incident`` -> ``running`` with the exhausted step marked
  ``completed`` by hand (a person finished it outside), with the output they give (what
  later steps see as its result); the saga goes forward from the next step.

``cancel`` is not here: it asks the worker driving the saga to compensate (see
``SagaCoordinator.cancel_saga``); past the pivot it is refused (:func:`refuse_cancel`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any, Literal

from dotmac_shared.business_logic.exceptions import SagaRepairRefusedError
from dotmac_shared.business_logic.sagas._data import step_result
from dotmac_shared.business_logic.sagas._decide import Move
from dotmac_shared.business_logic.sagas._definition import SagaDefinition
from dotmac_shared.business_logic.sagas._states import (
    SagaStatus,
    StepStatus,
    ensure_saga_transition,
    ensure_step_transition,
)
from dotmac_shared.business_logic.sagas._store import SagaRecord, StepRecord

__all__ = ["RepairAction", "check_status", "past_pivot", "plan", "refuse_cancel"]

RepairAction = Literal[
    "retry_compensation", "mark_step_compensated", "retry_step", "resolve_incident", "resume"
]

#: The saga status each action applies to.
_APPLIES_TO: dict[str, SagaStatus] = {
    "retry_compensation": SagaStatus.COMPENSATION_FAILED,
    "resume": SagaStatus.COMPENSATION_FAILED,
    "mark_step_compensated": SagaStatus.COMPENSATION_FAILED,
    "retry_step": SagaStatus.INCIDENT,
    "resolve_incident": SagaStatus.INCIDENT,
}
#: The step status each action applies to (the step that stopped the saga).
_STUCK: dict[SagaStatus, StepStatus] = {
    SagaStatus.COMPENSATION_FAILED: StepStatus.COMPENSATION_FAILED,
    SagaStatus.INCIDENT: StepStatus.RETRIES_EXHAUSTED,
}


def past_pivot(record: SagaRecord, definition: SagaDefinition) -> bool:
    """Whether the saga's pivot step completed (from there it only goes forward)."""
    pivot = definition.pivot_index
    if pivot is None:
        return False
    state = record.steps.get(definition.steps[pivot].name)
    return state is not None and state.status is StepStatus.COMPLETED


def refuse_cancel(record: SagaRecord, definition: SagaDefinition) -> None:
    """Refuse to cancel a saga past its pivot (or in ``incident``): it may not go back.

    Raises:
        SagaRepairRefusedError: ``reason`` ``past_pivot``.
    """
    if record.status is SagaStatus.INCIDENT or past_pivot(record, definition):
        pivot = definition.pivot_index
        name = definition.steps[pivot].name if pivot is not None else None
        raise SagaRepairRefusedError(
            f"saga {record.saga_id} is past its pivot step {name}: it can only go forward, "
            "so it cannot be cancelled (retry or resolve its steps instead)",
            saga_id=record.saga_id,
            saga_name=record.saga_name,
            tenant_id=record.tenant_id,
            action="cancel",
            status=record.status.value,
            step=name,
            reason="past_pivot",
        )


def check_status(record: SagaRecord, action: RepairAction, step_name: str | None = None) -> None:
    """Refuse ``action`` if the saga is not in the status it applies to.

    Raises:
        SagaRepairRefusedError: ``reason`` ``wrong_status``.
    """
    wanted = _APPLIES_TO[action]
    if record.status is not wanted:
        raise _refused(
            record,
            action,
            f"saga {record.saga_id} is {record.status}; {action} applies to a saga in {wanted}",
            step=step_name,
        )


def plan(
    record: SagaRecord,
    definition: SagaDefinition,
    action: RepairAction,
    now: dt.datetime,
    *,
    step_name: str | None = None,
    output: Mapping[str, Any] | None = None,
) -> tuple[SagaRecord, tuple[StepRecord, ...], tuple[Move, ...]]:
    """What ``action`` changes: the saga's new record, its steps, its status changes.

    The record and steps are copies (``record`` is kept); the status changes are in order
    (for the history).

    Raises:
        SagaRepairRefusedError: The action does not apply to the saga as it is (its status,
            the step's status, an unknown step); ``metadata`` says which.
        InvalidInputError: ``output`` cannot be stored as a step result.
    """
    check_status(record, action, step_name)
    wanted = _APPLIES_TO[action]
    stuck = [
        step.name
        for step in definition.steps
        if (state := record.steps.get(step.name)) is not None and state.status is _STUCK[wanted]
    ]
    if step_name is None:
        if not stuck:  # pragma: no cover - a stopped saga always has its stuck step
            raise _refused(record, action, f"saga {record.saga_id} has no stuck step")
        step_name = stuck[0]
    elif step_name not in record.steps or step_name not in {s.name for s in definition.steps}:
        raise _refused(
            record,
            action,
            f"saga {record.saga_id} has no step {step_name!r}",
            step=step_name,
            reason="unknown_step",
        )
    elif step_name not in stuck:
        state = record.steps[step_name]
        raise _refused(
            record,
            action,
            f"step {step_name} of saga {record.saga_id} is {state.status}; {action} applies "
            f"to a step in {_STUCK[wanted]}",
            step=step_name,
            reason="wrong_step_status",
        )
    saga = dataclasses.replace(record, steps=dict(record.steps))
    state = dataclasses.replace(saga.steps[step_name])
    saga.steps[step_name] = state
    new_status = (
        SagaStatus.COMPENSATING if wanted is SagaStatus.COMPENSATION_FAILED else SagaStatus.RUNNING
    )
    ensure_saga_transition(saga.saga_id, saga.status, new_status)
    saga.status, saga.completed_at, saga.updated_at = new_status, None, now
    moves: list[Move] = []
    if action == "mark_step_compensated":
        ensure_step_transition(saga.saga_id, step_name, state.status, StepStatus.COMPENSATED)
        state.status, state.compensated_at = StepStatus.COMPENSATED, now
        moves.append((step_name, StepStatus.COMPENSATED))
    elif action == "retry_step":
        ensure_step_transition(saga.saga_id, step_name, state.status, StepStatus.RUNNING)
        state.status, state.started_at, state.error = StepStatus.RUNNING, now, None
        state.attempts += 1
        saga.current_step = state.index
        moves.append((step_name, StepStatus.RUNNING))
    elif action == "resolve_incident":
        ensure_step_transition(saga.saga_id, step_name, state.status, StepStatus.COMPLETED)
        result = step_result(output, step_name)  # refused before anything changes
        state.status, state.completed_at, state.error = StepStatus.COMPLETED, now, None
        state.result = result
        moves.append((step_name, StepStatus.COMPLETED))
    moves.append((None, new_status))
    if new_status is SagaStatus.RUNNING:
        # Going forward again: the incident's failure stays in the history, not the saga.
        saga.error, saga.failed_step = None, None
    touched = (state,) if action not in ("retry_compensation", "resume") else ()
    return saga, touched, tuple(moves)


def _refused(
    record: SagaRecord,
    action: str,
    message: str,
    *,
    step: str | None = None,
    reason: str = "wrong_status",
) -> SagaRepairRefusedError:
    return SagaRepairRefusedError(
        message,
        saga_id=record.saga_id,
        saga_name=record.saga_name,
        tenant_id=record.tenant_id,
        action=action,
        status=record.status.value,
        step=step,
        reason=reason,
    )
