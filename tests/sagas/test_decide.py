"""The decision function against the state diagram: random event sequences, no database.

A state machine drives :func:`decide` the way the coordinator does (commit the decision's
state, do its action, feed back what came of it), with crashes (another worker begins again
from the last committed record), cancels, deadlines, failing compensations and operator
resumes and repairs (``_repair.plan``) thrown in at random, on untyped sagas and on typed
ones (a pivot, retriable steps after it), and checks the diagram's rules after every
decision, including that its ordered moves (the saga's history) follow the diagram's edges.
"""

from __future__ import annotations

import copy
import datetime as dt

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from dotmac_shared.business_logic.exceptions import IllegalSagaTransitionError
from dotmac_shared.business_logic.sagas import (
    NOTHING_TO_UNDO,
    SagaDefinition,
    SagaFailure,
    SagaRecord,
    SagaStatus,
    SagaStep,
    StepKind,
    StepStatus,
)
from dotmac_shared.business_logic.sagas._decide import (
    Begin,
    CancelRequested,
    Compensate,
    CompensationFailed,
    CompensationSucceeded,
    DeadlinePassed,
    Decision,
    Finish,
    LeaseLost,
    RunStep,
    StepFailed,
    StepSucceeded,
    Stop,
    decide,
)
from dotmac_shared.business_logic.sagas._repair import plan
from dotmac_shared.business_logic.sagas._states import SAGA_TRANSITIONS, STEP_TRANSITIONS

NOW = dt.datetime.now(dt.UTC)
BOOM = SagaFailure("unexpected_error", "boom")


async def _noop(ctx):
    return {}


def definition(compensable: list[bool], pivot: int | None = None) -> SagaDefinition:
    """Steps s0..sn; with ``pivot``, a typed saga: compensatable steps (a step without a
    compensation declares NOTHING_TO_UNDO), the pivot, then retriable steps."""

    def kind(i: int) -> StepKind:
        if pivot is None or i < pivot:
            return StepKind.COMPENSATABLE
        return StepKind.PIVOT if i == pivot else StepKind.RETRIABLE

    def undo(i: int, wanted: bool) -> object:
        if kind(i) is StepKind.RETRIABLE:
            return None
        if kind(i) is StepKind.COMPENSATABLE and pivot is not None and not wanted:
            return NOTHING_TO_UNDO
        return _noop if wanted else None

    return SagaDefinition(
        name="decided",
        steps=[
            SagaStep(name=f"s{i}", execute=_noop, compensate=undo(i, wanted), kind=kind(i))
            for i, wanted in enumerate(compensable)
        ],
    )


def new_record() -> SagaRecord:
    return SagaRecord(
        saga_id="saga-1",
        saga_name="decided",
        saga_version="1",
        status=SagaStatus.RUNNING,
        initial_data={},
        context={},
    )


def statuses(record: SagaRecord) -> dict[str, StepStatus]:
    return {name: step.status for name, step in record.steps.items()}


class SagaDiagram(RuleBasedStateMachine):
    """The coordinator's loop, with the world's outcomes chosen by Hypothesis."""

    @initialize(
        compensable=st.lists(st.booleans(), min_size=1, max_size=5),
        pivot=st.one_of(st.none(), st.integers(0, 4)),
    )
    def start(self, compensable: list[bool], pivot: int | None) -> None:
        self.pivot = pivot if pivot is not None and pivot < len(compensable) else None
        self.definition = definition(compensable, self.pivot)
        # Whether each step has a compensation that runs (NOTHING_TO_UNDO runs too).
        self.compensable = [step.compensable for step in self.definition.steps]
        self.history: list[Decision] = []
        #: Indices of the compensations run, in order (a retry after a crash repeats one).
        self.compensations: list[int] = []
        self.succeeded_compensations: list[int] = []
        #: Steps an operator marked compensated by hand (their compensation never succeeded).
        self.marked: list[int] = []
        self.past_pivot = False
        self.apply(new_record(), Begin())

    # --- driving ---

    def apply(self, record: SagaRecord, event: object) -> None:
        before = copy.deepcopy(record)
        decision = decide(record, self.definition, event, NOW)  # type: ignore[arg-type]
        assert record == before, "decide changed the record it was given"
        self.check_transitions(record, decision)
        self.decision = decision
        self.history.append(decision)
        if isinstance(decision.action, Compensate):
            self.compensations.append(decision.action.index)

    def check_transitions(self, old: SagaRecord, decision: Decision) -> None:
        new = decision.record
        # The moves (what the history records) walk the diagram's edges, in order, and end
        # where the record is.
        at = {name: step.status for name, step in old.steps.items()}
        saga_at = old.status
        for name, status in decision.moves:
            if name is None:
                assert status in SAGA_TRANSITIONS[saga_at], f"saga {saga_at} -> {status}"
                saga_at = status
            else:
                was = at.get(name, StepStatus.PENDING)
                assert status in STEP_TRANSITIONS[was], f"{name}: {was} -> {status}"
                at[name] = status
        assert saga_at is new.status
        assert at == {name: step.status for name, step in new.steps.items()}
        if new.status is not old.status:
            # One decision may take the saga over two edges (a failure with nothing left to
            # compensate: compensating, then compensated), never more.
            reachable = {
                new for mid in SAGA_TRANSITIONS[old.status] for new in SAGA_TRANSITIONS[mid]
            }
            assert new.status in SAGA_TRANSITIONS[old.status] | reachable
        for name, step in new.steps.items():
            previous = old.steps.get(name)
            was = previous.status if previous is not None else StepStatus.PENDING
            if step.status is not was:
                # One decision may take a step over two edges (failed, then compensating;
                # compensating, then compensated when it has no compensation).
                middle = STEP_TRANSITIONS[was] | {was}
                assert any(step.status in STEP_TRANSITIONS[m] | {m} for m in middle), (
                    f"{name}: {was} -> {step.status}"
                )
            if previous is None or previous != step:
                assert step in decision.steps or not decision.write, (
                    f"{name} changed but is not written"
                )

    @property
    def record(self) -> SagaRecord:
        return self.decision.record

    @property
    def action(self) -> object:
        return self.decision.action

    # --- forward ---

    @precondition(lambda self: isinstance(self.action, RunStep))
    @rule()
    def step_succeeds(self) -> None:
        index = self.action.index  # type: ignore[attr-defined]
        self.apply(self.record, StepSucceeded(index, {f"r{index}": index}))

    @precondition(lambda self: isinstance(self.action, RunStep))
    @rule(deadline=st.booleans())
    def step_fails(self, deadline: bool) -> None:
        index = self.action.index  # type: ignore[attr-defined]
        event = DeadlinePassed(index, BOOM) if deadline else StepFailed(index, BOOM)
        self.apply(self.record, event)

    @precondition(lambda self: isinstance(self.action, RunStep) and self.decision.write)
    @rule()
    def cancel_seen_when_the_step_was_started(self) -> None:
        self.apply(self.record, CancelRequested(self.action.index))  # type: ignore[attr-defined]

    # --- backward ---

    @precondition(lambda self: isinstance(self.action, Compensate))
    @rule()
    def compensation_succeeds(self) -> None:
        index = self.action.index  # type: ignore[attr-defined]
        self.succeeded_compensations.append(index)
        self.apply(self.record, CompensationSucceeded(index))

    @precondition(lambda self: isinstance(self.action, Compensate))
    @rule()
    def compensation_fails(self) -> None:
        self.apply(self.record, CompensationFailed(self.action.index, BOOM))  # type: ignore[attr-defined]

    # --- the world ---

    @rule()
    def worker_crashes_and_another_begins(self) -> None:
        # The decision's state was committed before its action; the new worker starts there.
        self.apply(self.record, Begin())

    @precondition(lambda self: self.record.status is SagaStatus.INCIDENT)
    @rule(resolve=st.booleans())
    def operator_retries_or_resolves_the_exhausted_step(self, resolve: bool) -> None:
        action = "resolve_incident" if resolve else "retry_step"
        repaired, steps, moves = plan(
            self.record, self.definition, action, NOW, output={"by": "hand"}
        )
        self.check_transitions(self.record, Decision(Stop(), repaired, steps, moves=moves))
        self.apply(repaired, Begin(first_started=not resolve))

    @precondition(lambda self: self.record.status is SagaStatus.COMPENSATION_FAILED)
    @rule()
    def operator_marks_the_stuck_step_compensated(self) -> None:
        (stuck,) = [
            s for s in self.record.steps.values() if s.status is StepStatus.COMPENSATION_FAILED
        ]
        repaired, steps, moves = plan(
            self.record, self.definition, "mark_step_compensated", NOW, step_name=stuck.name
        )
        self.check_transitions(self.record, Decision(Stop(), repaired, steps, moves=moves))
        self.marked.append(stuck.index)
        self.apply(repaired, Begin())

    @precondition(lambda self: self.record.status is SagaStatus.COMPENSATION_FAILED)
    @rule()
    def operator_resumes(self) -> None:
        reopened = copy.deepcopy(self.record)
        reopened.status = SagaStatus.COMPENSATING  # what the store's reopen writes
        self.apply(reopened, Begin())

    @rule()
    def lease_lost_stops_without_a_change(self) -> None:
        lost = decide(self.record, self.definition, LeaseLost(), NOW)
        assert isinstance(lost.action, Stop) and not lost.write and lost.record is self.record

    # --- the rules of the diagram ---

    @invariant()
    def past_the_pivot_the_saga_only_goes_forward(self) -> None:
        if self.pivot is None:
            return
        pivot = self.record.steps.get(self.definition.steps[self.pivot].name)
        if pivot is not None and pivot.status is StepStatus.COMPLETED:
            self.past_pivot = True
        if self.past_pivot:
            assert self.record.status in (
                SagaStatus.RUNNING,
                SagaStatus.COMPLETED,
                SagaStatus.INCIDENT,
            )
            assert not isinstance(self.action, Compensate)

    @invariant()
    def an_incident_names_its_exhausted_step_after_the_pivot(self) -> None:
        if self.record.status is SagaStatus.INCIDENT:
            exhausted = [
                s for s in self.record.steps.values() if s.status is StepStatus.RETRIES_EXHAUSTED
            ]
            assert len(exhausted) == 1 and self.pivot is not None
            assert exhausted[0].index > self.pivot and exhausted[0].error == BOOM
            assert self.record.failed_step == exhausted[0].name

    @invariant()
    def steps_run_in_order(self) -> None:
        if isinstance(self.action, RunStep):
            for step in self.definition.steps[: self.action.index]:
                assert self.record.steps[step.name].status is StepStatus.COMPLETED

    @invariant()
    def finished_sagas_stay_finished(self) -> None:
        status = self.record.status
        if status in (SagaStatus.COMPLETED, SagaStatus.COMPENSATED):
            again = decide(self.record, self.definition, Begin(), NOW)
            assert again.action == Finish(status) and not again.write
            assert again.record.status is status

    @invariant()
    def completed_means_every_step_completed(self) -> None:
        if self.record.status is SagaStatus.COMPLETED:
            assert isinstance(self.action, Finish)
            assert all(
                self.record.steps[s.name].status is StepStatus.COMPLETED
                for s in self.definition.steps
            )

    @invariant()
    def compensation_goes_in_reverse_order(self) -> None:
        # Within one run of compensations (a resume may go back to a stuck step), each
        # compensation is of an earlier step than the last, or the same one again (a retry
        # after a crash or a resume).
        distinct = [
            i for n, i in enumerate(self.compensations) if n == 0 or i != self.compensations[n - 1]
        ]
        assert distinct == sorted(distinct, reverse=True)

    @invariant()
    def each_step_is_compensated_once(self) -> None:
        assert len(self.succeeded_compensations) == len(set(self.succeeded_compensations))
        if self.record.status is SagaStatus.COMPENSATED:
            for step in self.record.steps.values():
                assert step.status in (StepStatus.PENDING, StepStatus.COMPENSATED)
            # Every step that had a compensation and was started ran it, exactly once.
            started = {
                i
                for i, s in enumerate(self.definition.steps)
                if self.record.steps.get(s.name) is not None
                and self.record.steps[s.name].status is StepStatus.COMPENSATED
                and self.compensable[i]
            }
            assert set(self.succeeded_compensations) | set(self.marked) == started

    @invariant()
    def a_stuck_saga_names_its_stuck_step(self) -> None:
        if self.record.status is SagaStatus.COMPENSATION_FAILED:
            stuck = [
                s for s in self.record.steps.values() if s.status is StepStatus.COMPENSATION_FAILED
            ]
            assert len(stuck) == 1 and stuck[0].error == BOOM
            assert self.record.error is not None

    @invariant()
    def a_failed_saga_keeps_its_first_failure(self) -> None:
        if (
            self.record.status is not SagaStatus.RUNNING
            and self.record.status is not SagaStatus.COMPLETED
        ):
            assert self.record.error is not None and self.record.failed_step is not None


TestSagaDiagram = SagaDiagram.TestCase
TestSagaDiagram.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)


def test_cancel_withdraws_a_step_when_its_action_never_began():
    saga = definition([True, True])
    started = decide(new_record(), saga, Begin(), NOW)
    done = decide(started.record, saga, StepSucceeded(0, {}), NOW)
    assert done.action == RunStep(1) and done.record.steps["s1"].attempts == 1
    cancelled = decide(done.record, saga, CancelRequested(1), NOW)
    assert cancelled.record.steps["s1"].status is StepStatus.PENDING
    assert cancelled.action == Compensate(0)  # s1 never ran: only s0 is undone
    assert cancelled.record.error.code == "saga_cancelled"


def test_cancel_compensates_a_step_when_it_may_have_run_before_a_crash():
    saga = definition([True])
    first = decide(new_record(), saga, Begin(), NOW)
    retried = decide(first.record, saga, Begin(), NOW)  # the first worker died in s0
    assert retried.record.steps["s0"].attempts == 2
    cancelled = decide(retried.record, saga, CancelRequested(0), NOW)
    assert cancelled.action == Compensate(0)


def test_decide_refuses_an_event_that_does_not_fit_the_state():
    saga = definition([True])
    finished = decide(
        decide(new_record(), saga, Begin(), NOW).record, saga, StepSucceeded(0, {}), NOW
    )
    assert finished.action == Finish(SagaStatus.COMPLETED)
    with pytest.raises(IllegalSagaTransitionError):
        decide(finished.record, saga, StepFailed(0, BOOM), NOW)
