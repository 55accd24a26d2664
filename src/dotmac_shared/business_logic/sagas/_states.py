"""The saga state machine: statuses and the transitions between them. Pure, no I/O.

Saga::

                 (an operator retries the step, or resolves it by hand)
                 ┌─────────────────────────────┐
                 ▼                             │
    running ──► completed            incident ─┘
       │  └──────────────────────────► ▲  (past the pivot, a step's retries ran out)
       │
       └──► compensating ──► compensated
                  │  ▲
                  ▼  │ (an operator retries the compensation, or marks the step
           compensation_failed        compensated by hand)

Past a saga's pivot step (see ``StepKind``) it only goes forward: a failing step is
retried, and past its budget the saga stops in ``incident`` (never compensating); a cancel
is refused.

Step::

    pending ──► running ──► completed ──► compensating ──► compensated
       ▲          │  ▲  ▲                     │  ▲               ▲
       │          │  │  │                     │  │ (retried)     │ (marked by hand)
       │          │  │  │                     └──► compensation_failed
       │          │  └ (retried after a crash)
       │          ├──► failed ──► compensating
       │          └──► retries_exhausted ──► running   (an operator retries it)
       │                      └────────────► completed (an operator resolves it by hand)
       └──────────┘ (a cancel seen before its action ever began: the start is withdrawn)
"""

from __future__ import annotations

import enum

from dotmac_shared.business_logic.exceptions import IllegalSagaTransitionError

__all__ = [
    "SAGA_TRANSITIONS",
    "STEP_TRANSITIONS",
    "SagaStatus",
    "StepStatus",
    "ensure_saga_transition",
    "ensure_step_transition",
]


class SagaStatus(enum.StrEnum):
    """Where a saga is in its life."""

    RUNNING = "running"  # executing steps forward
    COMPENSATING = "compensating"  # a step failed (or timeout, or cancel): undoing in reverse
    COMPLETED = "completed"  # every step succeeded (final)
    COMPENSATED = "compensated"  # failed, and every compensation succeeded (final)
    COMPENSATION_FAILED = "compensation_failed"  # a compensation kept failing: a person must look
    INCIDENT = "incident"  # past the pivot, a step's retries ran out: a person must look

    @property
    def is_final(self) -> bool:
        """No worker acts on the saga any more (compensation_failed, incident wait for a person)."""
        return self in _FINAL

    @property
    def is_active(self) -> bool:
        """A worker should be driving the saga (and holds, or may take over, its lease)."""
        return self in (SagaStatus.RUNNING, SagaStatus.COMPENSATING)


_FINAL = frozenset(
    {
        SagaStatus.COMPLETED,
        SagaStatus.COMPENSATED,
        SagaStatus.COMPENSATION_FAILED,
        SagaStatus.INCIDENT,
    }
)


class StepStatus(enum.StrEnum):
    """Where one step of a saga is."""

    PENDING = "pending"  # not started
    RUNNING = "running"  # started; may have taken effect if its worker died
    COMPLETED = "completed"  # succeeded; its result is stored
    FAILED = "failed"  # failed after its retries; may have partly taken effect
    COMPENSATING = "compensating"  # its compensation is running
    COMPENSATED = "compensated"  # its compensation succeeded (or it had none)
    COMPENSATION_FAILED = "compensation_failed"  # its compensation kept failing
    RETRIES_EXHAUSTED = "retries_exhausted"  # past the pivot, it kept failing: a person must look


SAGA_TRANSITIONS: dict[SagaStatus, frozenset[SagaStatus]] = {
    SagaStatus.RUNNING: frozenset(
        {SagaStatus.COMPLETED, SagaStatus.COMPENSATING, SagaStatus.INCIDENT}
    ),
    SagaStatus.COMPENSATING: frozenset({SagaStatus.COMPENSATED, SagaStatus.COMPENSATION_FAILED}),
    SagaStatus.INCIDENT: frozenset({SagaStatus.RUNNING}),
    SagaStatus.COMPENSATION_FAILED: frozenset({SagaStatus.COMPENSATING}),
    SagaStatus.COMPLETED: frozenset(),
    SagaStatus.COMPENSATED: frozenset(),
}

STEP_TRANSITIONS: dict[StepStatus, frozenset[StepStatus]] = {
    StepStatus.PENDING: frozenset({StepStatus.RUNNING, StepStatus.COMPENSATED}),
    StepStatus.RUNNING: frozenset(
        {
            StepStatus.PENDING,  # withdrawn: cancelled before its action ever began
            StepStatus.RUNNING,
            StepStatus.COMPLETED,
            StepStatus.FAILED,
            StepStatus.COMPENSATING,
            StepStatus.RETRIES_EXHAUSTED,
        }
    ),
    StepStatus.RETRIES_EXHAUSTED: frozenset({StepStatus.RUNNING, StepStatus.COMPLETED}),
    StepStatus.COMPLETED: frozenset({StepStatus.COMPENSATING}),
    StepStatus.FAILED: frozenset({StepStatus.COMPENSATING}),
    StepStatus.COMPENSATING: frozenset(
        {StepStatus.COMPENSATING, StepStatus.COMPENSATED, StepStatus.COMPENSATION_FAILED}
    ),
    StepStatus.COMPENSATION_FAILED: frozenset({StepStatus.COMPENSATING, StepStatus.COMPENSATED}),
    StepStatus.COMPENSATED: frozenset(),
}


def ensure_saga_transition(saga_id: str, current: SagaStatus, new: SagaStatus) -> None:
    """Refuse a saga status change the state machine does not allow.

    Raises:
        IllegalSagaTransitionError: ``current -> new`` is not an edge of the diagram above.
    """
    if new not in SAGA_TRANSITIONS[current]:
        raise IllegalSagaTransitionError(
            f"saga {saga_id} cannot go from {current} to {new}",
            saga_id=saga_id,
            metadata={"from": current.value, "to": new.value},
        )


def ensure_step_transition(
    saga_id: str, step_name: str, current: StepStatus, new: StepStatus
) -> None:
    """Refuse a step status change the state machine does not allow.

    Raises:
        IllegalSagaTransitionError: ``current -> new`` is not an edge of the diagram above.
    """
    if new not in STEP_TRANSITIONS[current]:
        raise IllegalSagaTransitionError(
            f"step {step_name} of saga {saga_id} cannot go from {current} to {new}",
            saga_id=saga_id,
            failed_step=step_name,
            metadata={"from": current.value, "to": new.value},
        )
