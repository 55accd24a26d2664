"""A saga's history: the events a state change stands for. Pure, no I/O.

Every state change the coordinator commits (a decision of ``_decide.py``, an operator's
repair of ``_repair.py``) is compared with the state before it; each status that changed,
and each step started or compensated again, becomes one :class:`SagaEvent`, committed in
the same write as the change itself (so the history never misses a transition nor records
one that did not land).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from dotmac_shared.business_logic.sagas._results import SagaEvent
from dotmac_shared.business_logic.sagas._states import SagaStatus, StepStatus
from dotmac_shared.business_logic.sagas._store import SagaRecord, StepRecord

__all__ = ["transitions"]

#: Step statuses whose event carries the step's error.
_FAILED_STEP = frozenset(
    {StepStatus.FAILED, StepStatus.COMPENSATION_FAILED, StepStatus.RETRIES_EXHAUSTED}
)
#: Saga statuses whose event carries the saga's error.
_FAILED_SAGA = frozenset(
    {SagaStatus.COMPENSATING, SagaStatus.COMPENSATION_FAILED, SagaStatus.INCIDENT}
)
#: Step statuses whose try counter is the compensation's.
_COMPENSATION = frozenset(
    {StepStatus.COMPENSATING, StepStatus.COMPENSATED, StepStatus.COMPENSATION_FAILED}
)


def transitions(
    before: SagaRecord | None,
    after: SagaRecord,
    steps: Iterable[StepRecord],
    now: dt.datetime,
    *,
    worker: str | None,
    operator: str | None = None,
    reason: str | None = None,
) -> list[SagaEvent]:
    """The events of the change from ``before`` (None: a new saga) to ``after``.

    ``steps`` are the step records the change touched, in the order it touched them. The
    saga's own event comes first for a new saga, last when it ends, and otherwise right
    after the first step event (a step failed, then the saga compensates, then the next
    step is compensated).
    """
    step_events: list[SagaEvent] = []
    for state in steps:
        old = before.steps.get(state.name) if before is not None else None
        attempt = state.compensation_attempts if state.status in _COMPENSATION else state.attempts
        if old is not None and old.status is state.status:
            old_attempt = old.compensation_attempts if old.status in _COMPENSATION else old.attempts
            if old_attempt == attempt:
                continue  # nothing a reader of the history would see changed
        step_events.append(
            SagaEvent(
                kind=f"step.{state.status.value}",
                occurred_at=now,
                step=state.name,
                status=state.status.value,
                attempt=attempt,
                worker=worker,
                operator=operator,
                reason=reason,
                error=state.error if state.status in _FAILED_STEP else None,
            )
        )
    if before is not None and before.status is after.status:
        return step_events
    saga_event = SagaEvent(
        kind=f"saga.{after.status.value}",
        occurred_at=now,
        status=after.status.value,
        step=after.failed_step if after.status in _FAILED_SAGA else None,
        worker=worker,
        operator=operator,
        reason=reason,
        error=after.error if after.status in _FAILED_SAGA else None,
    )
    if before is None or not step_events:
        return [saga_event, *step_events]
    if after.status.is_final:
        return [*step_events, saga_event]
    return [step_events[0], saga_event, *step_events[1:]]
