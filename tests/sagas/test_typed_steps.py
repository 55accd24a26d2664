"""Typed steps: the definition checks Richardson's order, and past the pivot a saga only goes
forward (retried with backoff, then an incident; never compensated)."""

from __future__ import annotations

import re
from uuid import uuid4

import hypothesis.strategies as st
import pytest
from hypothesis import given

from dotmac_shared.business_logic import SagaDefinitionError
from dotmac_shared.business_logic.sagas import (
    NOTHING_TO_UNDO,
    RETRIABLE_RETRY,
    RetryPolicy,
    SagaContext,
    SagaCoordinator,
    SagaDefinition,
    SagaStep,
    StepContext,
    StepKind,
)
from tests.sagas.steps import create_effects_table, effects, record, unrecord

TENANT = "tenant-a"
NOW_RETRY = RetryPolicy(max_attempts=3, initial_delay=0, max_delay=0, jitter=0)


async def noop(ctx: StepContext) -> dict:
    return {}


def step(name: str, kind: StepKind, *, compensate: bool | None = None) -> SagaStep:
    undo = kind is not StepKind.RETRIABLE if compensate is None else compensate
    return SagaStep(name=name, execute=noop, compensate=noop if undo else None, kind=kind)


C, P, R = StepKind.COMPENSATABLE, StepKind.PIVOT, StepKind.RETRIABLE


@pytest.mark.parametrize(
    ("kinds", "rule", "culprit"),
    [
        ([C, P, C], "compensatable_before_pivot", "s2"),
        ([C, R, P], "retriable_after_pivot", "s1"),
        ([R, C], "retriable_after_pivot", "s0"),
        ([C, P, P, R], "one_pivot", None),
    ],
)
def test_definition_refuses_kinds_out_of_order_when_declared(kinds, rule, culprit):
    steps = [step(f"s{i}", kind) for i, kind in enumerate(kinds)]
    with pytest.raises(SagaDefinitionError) as refused:
        SagaDefinition(name="typed", steps=steps)
    assert refused.value.metadata["rule"] == rule
    assert refused.value.failed_step == culprit
    assert refused.value.saga_name == "typed"


def test_definition_refuses_a_compensatable_step_without_compensation_when_typed():
    steps = [step("check", C, compensate=False), step("charge", P), step("mail", R)]
    with pytest.raises(SagaDefinitionError) as refused:
        SagaDefinition(name="typed", steps=steps)
    assert refused.value.metadata == {"rule": "compensation_required", "step": "check", "kind": C}
    # Saying explicitly that it changes nothing is accepted.
    explicit = SagaStep(name="check", execute=noop, compensate=NOTHING_TO_UNDO)
    SagaDefinition(name="typed", steps=[explicit, step("charge", P), step("mail", R)])


def test_definition_refuses_a_retriable_step_with_a_compensation_and_an_unknown_kind():
    with pytest.raises(SagaDefinitionError) as refused:
        SagaDefinition(name="typed", steps=[step("charge", P), step("mail", R, compensate=True)])
    assert refused.value.metadata["rule"] == "retriable_not_compensated"
    with pytest.raises(SagaDefinitionError, match="unknown kind 'sometimes'"):
        SagaStep(name="x", execute=noop, kind="sometimes")  # type: ignore[arg-type]


def test_untyped_saga_keeps_steps_without_compensation_when_no_pivot_is_declared():
    definition = SagaDefinition(name="old", steps=[SagaStep(name="a", execute=noop)])
    assert definition.pivot_index is None
    assert SagaStep(name="r", execute=noop, kind=R).retry == RETRIABLE_RETRY


@given(st.lists(st.sampled_from([C, P, R]), min_size=1, max_size=6))
def test_definition_accepts_exactly_compensatable_then_pivot_then_retriable(kinds):
    steps = [step(f"s{i}", kind) for i, kind in enumerate(kinds)]
    text = "".join({C: "c", P: "p", R: "r"}[k] for k in kinds)
    # Richardson's order: compensatable steps, then at most one pivot, then retriable ones.
    if re.fullmatch(r"c*(pr*)?", text):
        SagaDefinition(name="typed", steps=steps)
    else:
        with pytest.raises(SagaDefinitionError):
            SagaDefinition(name="typed", steps=steps)


def charged_saga(tries: list[int], *, pivot_fails: bool = False) -> SagaDefinition:
    """reserve (compensatable, recorded) -> charge (pivot) -> mail (retriable, always fails)."""

    async def charge(ctx: StepContext) -> dict:
        if pivot_fails:
            raise RuntimeError("card declined")
        return await record(ctx)

    async def mail(ctx: StepContext) -> dict:
        tries.append(ctx.attempt)
        raise ConnectionError("smtp down")

    return SagaDefinition(
        name="charged",
        steps=[
            SagaStep(name="reserve", execute=record, compensate=unrecord, kind=C),
            SagaStep(name="charge", execute=charge, compensate=unrecord, kind=P),
            SagaStep(name="mail", execute=mail, kind=R, retry=NOW_RETRY),
        ],
    )


async def test_saga_stops_in_incident_without_compensating_when_a_step_after_pivot_keeps_failing(
    session_factory,
):
    await create_effects_table(session_factory)
    tries: list[int] = []
    coordinator = SagaCoordinator(session_factory)
    coordinator.register_saga(charged_saga(tries))
    context = SagaContext(saga_id=str(uuid4()), tenant_id=TENANT)

    outcome = await coordinator.execute_saga(saga_name="charged", context=context)

    assert outcome.status == "incident"
    assert tries == [1, 2, 3]  # retried per its budget
    assert outcome.error is not None and outcome.error.code == "unexpected_error"
    assert outcome.failed_step == "mail" and outcome.compensated_steps == ()
    saga = await coordinator.get_saga(context.saga_id, tenant_id=TENANT)
    assert [(s.name, s.status) for s in saga.steps] == [
        ("reserve", "completed"),
        ("charge", "completed"),
        ("mail", "retries_exhausted"),
    ]
    # Nothing was undone: both effects are still there.
    assert len(await effects(session_factory, context.saga_id)) == 2
    assert [e.kind for e in saga.history][-2:] == ["step.retries_exhausted", "saga.incident"]
    assert saga.history[-1].error is not None
    assert saga.history[-1].error.context["exception_type"] == "ConnectionError"


async def test_steps_before_pivot_are_compensated_when_the_pivot_fails(session_factory):
    await create_effects_table(session_factory)
    coordinator = SagaCoordinator(session_factory)
    coordinator.register_saga(charged_saga([], pivot_fails=True))
    context = SagaContext(saga_id=str(uuid4()), tenant_id=TENANT)

    outcome = await coordinator.execute_saga(saga_name="charged", context=context)

    assert outcome.status == "compensated" and outcome.failed_step == "charge"
    assert await effects(session_factory, context.saga_id) == []
