"""What a saga does next: a pure function of its record, its definition and an event.

No I/O, no asyncio, no clock: the time is an argument. :func:`decide` returns the next
:data:`Action` (run step i, compensate step j, finish, stop), the saga's new record (a copy;
the one given is not changed) and the step records the state change touched. The coordinator
commits the record with those steps, then does the action and turns its outcome into the next
event. Every change follows the state diagram in ``_states.py`` (an illegal one raises
:class:`IllegalSagaTransitionError`).

The rules:

- Forward, the steps run in order, each started (durably) before its action runs; "step i
  completed" and "step i+1 started" are one state change.
- A failed step, a passed deadline or a cancel turns the saga to ``compensating``: every step
  that started (completed, failed, or running when its worker died) is compensated, in reverse
  order, each once; a step without a compensation is marked compensated without running
  anything. A cancel seen when a step was just started for the first time withdraws that start
  (its action never began, so there is nothing to undo).
- A compensation that fails after its retries stops the saga in ``compensation_failed``; an
  operator's resume moves it back to ``compensating`` and the stuck step is compensated again.
- Past the pivot (a typed saga whose pivot step completed) the saga only goes forward: a
  step that fails after its retries (or runs past the deadline) stops the saga in
  ``incident`` with the step ``retries_exhausted``, and nothing is compensated; a cancel
  seen at a step's start is ignored (the step runs). An operator's repair (``_repair.py``)
  moves it on.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, TypeAlias, TypeVar

from dotmac_shared.business_logic.exceptions import IllegalSagaTransitionError
from dotmac_shared.business_logic.sagas._definition import SagaDefinition
from dotmac_shared.business_logic.sagas._results import CANCELLED, SagaFailure
from dotmac_shared.business_logic.sagas._states import (
    SagaStatus,
    StepStatus,
    ensure_saga_transition,
    ensure_step_transition,
)
from dotmac_shared.business_logic.sagas._store import SagaRecord, StepRecord

__all__ = [
    "Action",
    "Begin",
    "CancelRequested",
    "Compensate",
    "CompensationFailed",
    "CompensationSucceeded",
    "DeadlinePassed",
    "Decision",
    "Event",
    "Finish",
    "LeaseLost",
    "Move",
    "RunStep",
    "StepFailed",
    "StepSucceeded",
    "Stop",
    "decide",
]


# --- events ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Begin:
    """A worker starts driving the saga (a new saga, a take-over, a resume).

    ``first_started``: the first step not completed was committed as running with the saga
    itself (a new saga), so it is not started again.
    """

    first_started: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class StepSucceeded:
    """Step ``index`` returned ``result`` (in its stored form)."""

    index: int
    result: dict[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class StepFailed:
    """Step ``index`` failed after its retries."""

    index: int
    failure: SagaFailure


@dataclasses.dataclass(frozen=True, slots=True)
class DeadlinePassed:
    """The saga's deadline passed before step ``index`` could run (or finish)."""

    index: int
    failure: SagaFailure


@dataclasses.dataclass(frozen=True, slots=True)
class CancelRequested:
    """The commit that started step ``index`` reported a cancel request."""

    index: int


@dataclasses.dataclass(frozen=True, slots=True)
class CompensationSucceeded:
    """Step ``index``'s compensation succeeded."""

    index: int


@dataclasses.dataclass(frozen=True, slots=True)
class CompensationFailed:
    """Step ``index``'s compensation failed after its retries."""

    index: int
    failure: SagaFailure


@dataclasses.dataclass(frozen=True, slots=True)
class LeaseLost:
    """This worker no longer owns the saga: it must not act for it any more."""


Event: TypeAlias = (
    Begin
    | StepSucceeded
    | StepFailed
    | DeadlinePassed
    | CancelRequested
    | CompensationSucceeded
    | CompensationFailed
    | LeaseLost
)


# --- actions -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class RunStep:
    """Run step ``index``'s action (it is committed as running)."""

    index: int


@dataclasses.dataclass(frozen=True, slots=True)
class Compensate:
    """Run step ``index``'s compensation (it is committed as compensating, try counted)."""

    index: int


@dataclasses.dataclass(frozen=True, slots=True)
class Finish:
    """The saga reached ``status`` (completed, compensated or compensation_failed)."""

    status: SagaStatus


@dataclasses.dataclass(frozen=True, slots=True)
class Stop:
    """Do nothing more for this saga (its lease is lost; nothing is written)."""


Action: TypeAlias = RunStep | Compensate | Finish | Stop


#: One status change: ``(step name, new status)``, or ``(None, new status)`` for the saga.
Move: TypeAlias = tuple[str | None, SagaStatus | StepStatus]


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """The next action, the saga's new record, and the steps its state change touched.

    ``write`` says whether there is a state change to commit before the action (``Stop``
    and a ``Begin`` of a new saga have none).
    """

    action: Action
    record: SagaRecord
    steps: tuple[StepRecord, ...] = ()
    write: bool = True
    #: Every status change, in the order it was made: ``(step name, status)``, or
    #: ``(None, status)`` for the saga's own (what its history records).
    moves: tuple[Move, ...] = ()


# --- the function ------------------------------------------------------------------------


def decide(
    record: SagaRecord, definition: SagaDefinition, event: Event, now: dt.datetime
) -> Decision:
    """The next action of the saga ``record`` of ``definition`` after ``event``, at ``now``.

    Pure: ``record`` is not changed (the decision holds a changed copy).

    Raises:
        IllegalSagaTransitionError: ``event`` does not fit the saga's state.
    """
    if isinstance(event, LeaseLost):
        return Decision(Stop(), record, write=False)
    saga = _copy(record)
    change = _Change(saga, definition, now)
    match event:
        case Begin(first_started=first_started):
            return change.begin(first_started)
        case StepSucceeded(index=index, result=result):
            return change.step_succeeded(index, result)
        case (
            StepFailed(index=index, failure=failure) | DeadlinePassed(index=index, failure=failure)
        ):
            return change.step_failed(index, failure)
        case CancelRequested(index=index):
            return change.cancel(index)
        case CompensationSucceeded(index=index):
            return change.compensated(index)
        case CompensationFailed(index=index, failure=failure):
            return change.compensation_failed(index, failure)
    raise TypeError(f"not a saga event: {event!r}")  # pragma: no cover


def _copy(record: SagaRecord) -> SagaRecord:
    """A copy of ``record`` whose steps mapping is its own (the steps are copied on change)."""
    saga = _shallow(record)
    saga.steps = dict(record.steps)
    return saga


_Copied = TypeVar("_Copied", SagaRecord, StepRecord)


def _shallow(value: _Copied) -> _Copied:
    """A shallow copy of a record (``copy.copy`` without its generic machinery)."""
    clone = object.__new__(type(value))
    clone.__dict__.update(value.__dict__)
    return clone


class _Change:
    """One state change of a saga being decided: the copy it edits and the steps touched."""

    def __init__(self, saga: SagaRecord, definition: SagaDefinition, now: dt.datetime) -> None:
        self.saga = saga
        self.definition = definition
        self.now = now
        self.touched: dict[str, StepRecord] = {}
        self.moves: list[Move] = []

    def decision(self, action: Action, *, write: bool = True) -> Decision:
        return Decision(action, self.saga, tuple(self.touched.values()), write, tuple(self.moves))

    def step(self, index: int) -> StepRecord:
        """Step ``index``'s record in the new state, ready to change (copied on first use)."""
        name = self.definition.steps[index].name
        return self.changeable(name, self.saga.steps.get(name), index)

    def changeable(self, name: str, state: StepRecord | None, index: int) -> StepRecord:
        copied = self.touched.get(name)
        if copied is None:
            copied = StepRecord(name=name, index=index) if state is None else _shallow(state)
            self.saga.steps[name] = self.touched[name] = copied
        return copied

    def set_step(self, state: StepRecord, status: StepStatus) -> None:
        ensure_step_transition(self.saga.saga_id, state.name, state.status, status)
        state.status = status
        self.moves.append((state.name, status))

    def set_saga(self, status: SagaStatus) -> None:
        ensure_saga_transition(self.saga.saga_id, self.saga.status, status)
        self.saga.status = status
        self.moves.append((None, status))
        if status.is_final:
            self.saga.completed_at = self.now

    # --- forward ---

    def begin(self, first_started: bool) -> Decision:
        if self.saga.status is SagaStatus.COMPENSATING:
            return self.next_compensation()
        if self.saga.status is not SagaStatus.RUNNING:  # finished: nothing to do
            return self.decision(Finish(self.saga.status), write=False)
        pending = self.first_pending()
        if pending is None:
            self.set_saga(SagaStatus.COMPLETED)
            return self.decision(Finish(SagaStatus.COMPLETED))
        if first_started:
            return self.decision(RunStep(pending), write=False)
        return self.start(pending)

    def first_pending(self, after: int = -1) -> int | None:
        for index in range(after + 1, len(self.definition.steps)):
            state = self.saga.steps.get(self.definition.steps[index].name)
            if state is None or state.status is not StepStatus.COMPLETED:
                return index
        return None

    def start(self, index: int) -> Decision:
        state = self.step(index)
        self.set_step(state, StepStatus.RUNNING)
        state.attempts += 1
        state.started_at = self.now
        state.error = None
        self.saga.current_step = index
        return self.decision(RunStep(index))

    def step_succeeded(self, index: int, result: dict[str, Any]) -> Decision:
        state = self.step(index)
        self.set_step(state, StepStatus.COMPLETED)
        state.result, state.completed_at = result, self.now
        following = self.first_pending(index)
        if following is not None:
            return self.start(following)
        self.set_saga(SagaStatus.COMPLETED)
        self.saga.current_step = len(self.definition.steps)
        return self.decision(Finish(SagaStatus.COMPLETED))

    def past_pivot(self) -> bool:
        """Whether the saga's pivot step completed: from here it only goes forward."""
        pivot = self.definition.pivot_index
        if pivot is None:
            return False
        state = self.saga.steps.get(self.definition.steps[pivot].name)
        return state is not None and state.status is StepStatus.COMPLETED

    def step_failed(self, index: int, failure: SagaFailure) -> Decision:
        state = self.step(index)
        if self.past_pivot():
            # Its retries (with backoff) ran out: stop for a person, never compensate.
            self.set_step(state, StepStatus.RETRIES_EXHAUSTED)
            state.error = failure
            self.set_saga(SagaStatus.INCIDENT)
            self.saga.error, self.saga.failed_step = failure, state.name
            return self.decision(Finish(SagaStatus.INCIDENT))
        self.set_step(state, StepStatus.FAILED)
        state.error = failure
        return self.fail(state, failure)

    def cancel(self, index: int) -> Decision:
        state = self.step(index)
        if self.past_pivot() and state.status is StepStatus.RUNNING:
            # Past the pivot a saga may not go back: the cancel is ignored, the step runs.
            return self.decision(RunStep(index), write=False)
        if state.status is not StepStatus.RUNNING:
            raise IllegalSagaTransitionError(
                f"a cancel is acted on when a step starts; {state.name} is {state.status}",
                saga_id=self.saga.saga_id,
                failed_step=state.name,
            )
        if state.attempts == 1:
            # Started for the first time by the commit that reported the cancel: its action
            # never began anywhere, so its start is withdrawn and it is not compensated (no
            # refund of a charge never made). Started before (its worker died in it), it may
            # have taken effect: it stays running and is compensated (at-least-once steps).
            self.set_step(state, StepStatus.PENDING)
            state.attempts, state.started_at = 0, None
        return self.fail(state, SagaFailure(CANCELLED, "cancelled on request", state.name))

    def fail(self, state: StepRecord, failure: SagaFailure) -> Decision:
        self.set_saga(SagaStatus.COMPENSATING)
        self.saga.error, self.saga.failed_step = failure, state.name
        return self.next_compensation()

    # --- backward ---

    def next_compensation(self) -> Decision:
        """Compensate the last step that started and is not compensated yet; or finish.

        A step without a compensation is marked compensated in the same state change.
        """
        for index in reversed(range(len(self.definition.steps))):
            step = self.definition.steps[index]
            state = self.saga.steps.get(step.name)
            if state is None or state.status in (StepStatus.PENDING, StepStatus.COMPENSATED):
                continue
            state = self.changeable(step.name, state, index)
            self.set_step(state, StepStatus.COMPENSATING)
            if not step.compensable:  # none, or NOTHING_TO_UNDO: nothing runs
                self.set_step(state, StepStatus.COMPENSATED)
                state.compensated_at = self.now
                continue
            state.compensation_attempts += 1  # counted durably before the try runs
            return self.decision(Compensate(index))
        self.set_saga(SagaStatus.COMPENSATED)
        return self.decision(Finish(SagaStatus.COMPENSATED))

    def compensated(self, index: int) -> Decision:
        state = self.step(index)
        self.set_step(state, StepStatus.COMPENSATED)
        state.compensated_at = self.now
        return self.next_compensation()

    def compensation_failed(self, index: int, failure: SagaFailure) -> Decision:
        state = self.step(index)
        self.set_step(state, StepStatus.COMPENSATION_FAILED)
        # The latest compensation error replaces the step's previous one; the saga's own
        # error stays the original failure, so neither grows however often it is resumed.
        state.error = failure
        self.set_saga(SagaStatus.COMPENSATION_FAILED)
        return self.decision(Finish(SagaStatus.COMPENSATION_FAILED))
