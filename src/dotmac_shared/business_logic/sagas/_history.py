"""A saga's history: the events a state change stands for. Pure, no I/O.

Every state change the coordinator commits (a decision of ``_decide.py``, an operator's
repair of ``_repair.py``) lists its status changes in the order they were made (its
``moves``); each becomes one :class:`SagaEvent`, committed in the same write as the change
itself, so the history never misses a transition nor records one that did not land.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from dotmac_shared.business_logic.sagas._decide import Move
from dotmac_shared.business_logic.sagas._results import SagaEvent
from dotmac_shared.business_logic.sagas._states import SagaStatus, StepStatus
from dotmac_shared.business_logic.sagas._store import SagaRecord

__all__ = ["transitions"]

#: Step statuses whose event carries the step's error.
_FAILED_STEP = frozenset(
    {StepStatus.FAILED, StepStatus.COMPENSATION_FAILED, StepStatus.RETRIES_EXHAUSTED}
)
#: Saga statuses whose event carries the saga's error (and the step that caused it).
_FAILED_SAGA = frozenset(
    {SagaStatus.COMPENSATING, SagaStatus.COMPENSATION_FAILED, SagaStatus.INCIDENT}
)
#: Step statuses whose try counter is the compensation's.
_COMPENSATION = frozenset(
    {StepStatus.COMPENSATING, StepStatus.COMPENSATED, StepStatus.COMPENSATION_FAILED}
)


def transitions(
    record: SagaRecord,
    moves: Iterable[Move],
    now: dt.datetime,
    *,
    worker: str | None,
    operator: str | None = None,
    reason: str | None = None,
) -> list[SagaEvent]:
    """The events of ``moves``, status changes made to reach ``record``, in their order.

    A step's event carries its try number (of its compensation, in a compensating state)
    and, for a failure, its error; the saga's carries its error when it stops or compensates.
    """
    events: list[SagaEvent] = []
    for name, status in moves:
        if name is None:
            failed = status in _FAILED_SAGA
            events.append(
                SagaEvent(
                    kind=f"saga.{status.value}",
                    occurred_at=now,
                    step=record.failed_step if failed else None,
                    status=status.value,
                    worker=worker,
                    operator=operator,
                    reason=reason,
                    error=record.error if failed else None,
                )
            )
            continue
        state = record.steps[name]
        events.append(
            SagaEvent(
                kind=f"step.{status.value}",
                occurred_at=now,
                step=name,
                status=status.value,
                attempt=state.compensation_attempts if status in _COMPENSATION else state.attempts,
                worker=worker,
                operator=operator,
                reason=reason,
                error=state.error if status in _FAILED_STEP else None,
            )
        )
    return events
