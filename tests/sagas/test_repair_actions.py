"""Operators' repair actions: each moves a stopped saga on, is recorded with who and why, is
refused with a clear error when it does not apply, and changes nothing if it fails midway."""

from __future__ import annotations

import asyncio
import dataclasses
from uuid import uuid4

import pytest
from sqlalchemy import text

from dotmac_shared.business_logic import (
    InvalidInputError,
    PersistenceError,
    SagaRepairRefusedError,
)
from dotmac_shared.business_logic.clock import ManualClock
from dotmac_shared.business_logic.persistence.models import SagaEventEntry
from dotmac_shared.business_logic.sagas import (
    RetryPolicy,
    SagaContext,
    SagaCoordinator,
    SagaDefinition,
    SagaStep,
    StepContext,
    StepKind,
)
from tests.sagas.steps import done, stuck_definition
from tests.sagas.test_operator_actions import snapshot

TENANT = "tenant-a"
WHO = {"operator": "alice", "reason": "ticket OPS-7"}
ONCE = RetryPolicy(max_attempts=1)
EVENTS = SagaEventEntry.__tablename__

#: The database refuses a history entry whose reason is 'boom': a repair that fails midway
#: (after its saga and step rows were written in the same transaction).
REFUSE_BOOM_EVENT = {
    "sqlite": [
        f"CREATE TRIGGER refuse_boom_event BEFORE INSERT ON {EVENTS} "
        "WHEN NEW.reason = 'boom' BEGIN SELECT RAISE(ABORT, 'no boom'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_boom_event() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.reason = 'boom' THEN RAISE EXCEPTION 'no boom'; END IF; RETURN NEW; END $$",
        f"CREATE TRIGGER refuse_boom_event BEFORE INSERT ON {EVENTS} "
        "FOR EACH ROW EXECUTE FUNCTION refuse_boom_event()",
    ],
}


class Switch:
    """A dependency that is down until a person fixes it."""

    def __init__(self) -> None:
        self.down = True
        self.calls: list[str] = []

    async def act(self, ctx: StepContext) -> dict:
        self.calls.append(ctx.step_name)
        if self.down:
            raise ConnectionError(f"{ctx.step_name}: service down")
        return {f"{ctx.step_name}_done": True}

    async def undo(self, ctx: StepContext) -> None:
        self.calls.append(f"undo {ctx.step_name}")
        if self.down:
            raise ConnectionError("refund service down")


def forward_saga(switch: Switch) -> SagaDefinition:
    """charge (pivot) -> mail (retriable, down until fixed) -> report (retriable, sees mail)."""

    async def report(ctx: StepContext) -> dict:
        return {"mailed": ctx.data.get("mail_done", False), "id": ctx.data.get("message_id")}

    return SagaDefinition(
        name="forward",
        steps=[
            SagaStep(name="charge", execute=done, kind=StepKind.PIVOT),
            SagaStep(name="mail", execute=switch.act, kind=StepKind.RETRIABLE, retry=ONCE),
            SagaStep(name="report", execute=report, kind=StepKind.RETRIABLE, retry=ONCE),
        ],
    )


async def stopped(session_factory, definition: SagaDefinition, status: str):
    coordinator = SagaCoordinator(session_factory)
    coordinator.register_saga(definition)
    context = SagaContext(saga_id=str(uuid4()), tenant_id=TENANT)
    outcome = await coordinator.execute_saga(saga_name=definition.name, context=context)
    assert outcome.status == status
    return coordinator, context.saga_id


def actions(result) -> list[tuple[str, str | None, str | None]]:
    return [(e.kind, e.operator, e.reason) for e in result.history if e.kind.startswith("action.")]


async def test_retry_compensation_compensates_and_records_who_when_the_cause_was_fixed(
    session_factory,
):
    switch = Switch()
    definition = stuck_definition(compensate=switch.undo)
    coordinator, saga_id = await stopped(session_factory, definition, "compensation_failed")
    switch.down = False

    result = await coordinator.retry_compensation(saga_id, tenant_id=TENANT, **WHO)

    assert result.status == "compensated" and result.compensated_steps == ("a",)
    assert actions(result) == [("action.retry_compensation", "alice", "ticket OPS-7")]
    kinds = [e.kind for e in result.history]
    assert kinds[kinds.index("action.retry_compensation") :] == [
        "action.retry_compensation",
        "saga.compensating",
        "step.compensating",
        "step.compensated",
        "saga.compensated",
    ]


async def test_mark_step_compensated_goes_on_without_running_it_when_a_person_undid_it(
    session_factory,
):
    switch = Switch()
    coordinator, saga_id = await stopped(
        session_factory, stuck_definition(compensate=switch.undo), "compensation_failed"
    )
    calls = len(switch.calls)

    result = await coordinator.mark_step_compensated(saga_id, "a", tenant_id=TENANT, **WHO)

    assert result.status == "compensated"
    assert len(switch.calls) == calls  # the compensation did not run again
    assert [(s.name, s.status) for s in result.steps] == [
        ("a", "compensated"),
        ("b", "compensated"),
    ]
    marked = [e for e in result.history if e.kind == "step.compensated" and e.step == "a"]
    assert [(e.operator, e.reason) for e in marked] == [("alice", "ticket OPS-7")]


async def test_mark_step_compensated_is_refused_when_the_step_is_not_the_stuck_one(
    session_factory,
):
    coordinator, saga_id = await stopped(session_factory, stuck_definition(), "compensation_failed")
    before = await snapshot(session_factory, saga_id)

    with pytest.raises(SagaRepairRefusedError) as refused:
        await coordinator.mark_step_compensated(saga_id, "b", tenant_id=TENANT, **WHO)
    assert refused.value.code == "saga_repair_refused"
    assert refused.value.metadata == {
        "action": "mark_step_compensated",
        "status": "compensation_failed",
        "step": "b",
        "reason": "wrong_step_status",
    }
    with pytest.raises(SagaRepairRefusedError) as unknown:
        await coordinator.mark_step_compensated(saga_id, "zzz", tenant_id=TENANT, **WHO)
    assert unknown.value.metadata["reason"] == "unknown_step"
    assert await snapshot(session_factory, saga_id) == before


async def test_retry_step_goes_forward_when_the_cause_of_the_incident_was_fixed(
    session_factory,
):
    switch = Switch()
    coordinator, saga_id = await stopped(session_factory, forward_saga(switch), "incident")
    switch.down = False

    result = await coordinator.retry_step(saga_id, tenant_id=TENANT, **WHO)

    assert result.status == "completed" and result.error is None
    assert result.step_results["report"] == {"mailed": True, "id": None}
    assert switch.calls == ["mail", "mail"]
    mail = [(e.kind, e.attempt) for e in result.history if e.step == "mail"]
    assert mail[-2:] == [("step.running", 2), ("step.completed", 2)]
    assert actions(result) == [("action.retry_step", "alice", "ticket OPS-7")]


async def test_resolve_incident_completes_the_step_by_hand_when_a_person_did_it_outside(
    session_factory,
):
    switch = Switch()
    coordinator, saga_id = await stopped(session_factory, forward_saga(switch), "incident")

    result = await coordinator.resolve_incident(
        saga_id, tenant_id=TENANT, output={"message_id": "m-42"}, **WHO
    )

    assert result.status == "completed"
    assert switch.calls == ["mail"]  # not run again: the person did it
    assert result.step_results["mail"] == {"message_id": "m-42"}
    assert result.step_results["report"] == {"mailed": False, "id": "m-42"}
    (resolved,) = [e for e in result.history if e.kind == "action.resolve_incident"]
    assert resolved.data == {"output": {"message_id": "m-42"}} and resolved.operator == "alice"


async def test_each_forward_action_is_refused_when_the_saga_is_not_in_an_incident(
    session_factory,
):
    coordinator, saga_id = await stopped(session_factory, stuck_definition(), "compensation_failed")
    before = await snapshot(session_factory, saga_id)
    for action in (coordinator.retry_step, coordinator.resolve_incident):
        with pytest.raises(SagaRepairRefusedError) as refused:
            await action(saga_id, tenant_id=TENANT, **WHO)
        assert refused.value.metadata["status"] == "compensation_failed"
        assert refused.value.metadata["reason"] == "wrong_status"
    switch = Switch()
    forward, incident_id = await stopped(session_factory, forward_saga(switch), "incident")
    with pytest.raises(SagaRepairRefusedError) as refused:
        await forward.retry_compensation(incident_id, tenant_id=TENANT, **WHO)
    assert refused.value.metadata["action"] == "retry_compensation"
    assert await snapshot(session_factory, saga_id) == before


async def test_cancel_is_refused_past_the_pivot_and_recorded_with_who_before_it(
    session_factory,
):
    switch = Switch()
    coordinator, saga_id = await stopped(session_factory, forward_saga(switch), "incident")
    with pytest.raises(SagaRepairRefusedError) as refused:
        await coordinator.cancel_saga(saga_id, tenant_id=TENANT, **WHO)
    assert refused.value.metadata["reason"] == "past_pivot"
    assert refused.value.metadata["step"] == "charge"

    release = asyncio.Event()

    async def wait(ctx: StepContext) -> dict:
        await release.wait()
        return {}

    slow = SagaDefinition(
        name="slow",
        steps=[SagaStep(name="hold", execute=wait), SagaStep(name="then", execute=done)],
    )
    owner = SagaCoordinator(session_factory)
    owner.register_saga(slow)
    context = SagaContext(saga_id=str(uuid4()), tenant_id=TENANT)
    await owner.start_saga(saga_name="slow", context=context)
    operator = SagaCoordinator(session_factory)
    operator.register_saga(slow)
    await operator.cancel_saga(context.saga_id, tenant_id=TENANT, **WHO)
    release.set()
    outcome = await owner.wait(context.saga_id, tenant_id=TENANT)
    assert outcome.status == "compensated"
    saga = await owner.get_saga(context.saga_id, tenant_id=TENANT)
    assert actions(saga) == [("action.cancel", "alice", "ticket OPS-7")]
    await owner.aclose()


async def test_repair_changes_nothing_when_it_fails_midway(session_factory):
    backend = session_factory.kw["bind"].dialect.name
    coordinator, saga_id = await stopped(session_factory, stuck_definition(), "compensation_failed")
    async with session_factory() as session, session.begin():
        for statement in REFUSE_BOOM_EVENT[backend]:
            await session.execute(text(statement))
    before = await snapshot(session_factory, saga_id)
    history = (await coordinator.get_saga(saga_id, tenant_id=TENANT)).history

    with pytest.raises(PersistenceError):
        await coordinator.mark_step_compensated(
            saga_id, "a", tenant_id=TENANT, operator="alice", reason="boom"
        )

    assert await snapshot(session_factory, saga_id) == before
    assert (await coordinator.get_saga(saga_id, tenant_id=TENANT)).history == history


async def test_one_of_two_operators_wins_when_they_retry_the_same_step_at_once(session_factory):
    switch = Switch()
    first, saga_id = await stopped(session_factory, forward_saga(switch), "incident")
    second = SagaCoordinator(session_factory)
    second.register_saga(forward_saga(switch))
    switch.down = False

    outcomes = await asyncio.gather(
        first.retry_step(saga_id, tenant_id=TENANT, **WHO),
        second.retry_step(saga_id, tenant_id=TENANT, operator="bob", reason="same ticket"),
        return_exceptions=True,
    )

    refused = [o for o in outcomes if isinstance(o, SagaRepairRefusedError)]
    won = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(refused) == 1 and len(won) == 1, outcomes
    assert won[0].status == "completed" and switch.calls.count("mail") == 2


async def test_repair_actions_need_an_operator_and_a_reason(session_factory):
    coordinator, saga_id = await stopped(session_factory, stuck_definition(), "compensation_failed")
    with pytest.raises(InvalidInputError) as blank:
        await coordinator.retry_compensation(saga_id, tenant_id=TENANT, operator="a", reason=" ")
    assert blank.value.to_dict()["field"] == "reason"


async def test_retry_step_can_succeed_when_the_sagas_deadline_passed_meanwhile(session_factory):
    switch = Switch()
    clock = ManualClock()
    timed = dataclasses.replace(forward_saga(switch), timeout=60.0)
    coordinator = SagaCoordinator(session_factory, clock=clock)
    coordinator.register_saga(timed)
    context = SagaContext(saga_id=str(uuid4()), tenant_id=TENANT)
    assert (await coordinator.execute_saga("forward", context)).status == "incident"
    clock.advance(seconds=3600)  # the person comes back an hour later
    switch.down = False

    result = await coordinator.retry_step(context.saga_id, tenant_id=TENANT, **WHO)

    assert result.status == "completed"


async def test_repair_actions_refuse_an_operator_or_reason_the_history_cannot_record(
    session_factory,
):
    coordinator, saga_id = await stopped(session_factory, stuck_definition(), "compensation_failed")
    before = await snapshot(session_factory, saga_id)
    with pytest.raises(InvalidInputError) as long_name:
        await coordinator.retry_compensation(
            saga_id, tenant_id=TENANT, operator="x" * 256, reason="why"
        )
    with pytest.raises(InvalidInputError) as nul:
        await coordinator.retry_compensation(
            saga_id, tenant_id=TENANT, operator="alice", reason="a\x00b"
        )
    assert long_name.value.to_dict()["field"] == "operator"
    assert nul.value.to_dict()["field"] == "reason"
    assert await snapshot(session_factory, saga_id) == before
