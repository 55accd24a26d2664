"""Operator actions (resume, cancel) never half-act, and never make the stored error grow."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest
from sqlalchemy import text

from dotmac_shared.business_logic import SagaDefinitionError
from dotmac_shared.business_logic.persistence.models import SagaExecution, SagaStepExecution
from dotmac_shared.business_logic.sagas import (
    ALL_TENANTS,
    SagaContext,
    SagaCoordinator,
    SagaDefinition,
    SagaFailure,
    SagaStep,
    SqlSagaStore,
)
from dotmac_shared.business_logic.sagas._results import MAX_ERROR_CHARS
from tests.sagas.steps import done, refund_down, stuck_definition

TENANT = "tenant-a"

SAGA_TABLE = SagaExecution.__tablename__
STEP_TABLE = SagaStepExecution.__tablename__


async def stuck_saga(session_factory) -> tuple[SagaCoordinator, str]:
    owner = SagaCoordinator(session_factory, lease_seconds=30)
    owner.register_saga(stuck_definition())
    context = SagaContext(saga_id=str(uuid4()), tenant_id=TENANT)
    outcome = await owner.execute_saga(saga_name="mystery", context=context)
    assert outcome["status"] == "compensation_failed"
    return owner, context.saga_id


async def snapshot(session_factory, saga_id: str) -> dict:
    """The saga row and its steps, as stored (cancel flag included)."""
    async with session_factory() as session:
        row = (
            await session.execute(
                text(f"SELECT * FROM {SAGA_TABLE} WHERE saga_id = :s"), {"s": saga_id}
            )
        ).mappings()
        steps = (
            await session.execute(
                text(f"SELECT * FROM {STEP_TABLE} WHERE saga_id = :s ORDER BY step_index"),
                {"s": saga_id},
            )
        ).mappings()
        return {"saga": dict(row.one()), "steps": [dict(s) for s in steps]}


async def test_resume_refuses_before_changing_anything_when_saga_type_unknown(session_factory):
    _, saga_id = await stuck_saga(session_factory)
    before = await snapshot(session_factory, saga_id)
    stranger = SagaCoordinator(session_factory, lease_seconds=30)  # knows no "mystery" saga
    with pytest.raises(SagaDefinitionError, match="unknown saga 'mystery'"):
        await stranger.resume_saga(saga_id, tenant_id=TENANT)
    after = await snapshot(session_factory, saga_id)
    assert after == before
    assert after["saga"]["status"] == "compensation_failed"
    assert after["saga"]["lease_owner"] is None


async def abandoned_saga(session_factory) -> str:
    """A running saga whose worker died inside step b; its lease has run out."""
    started = asyncio.Event()

    async def hang(ctx):
        started.set()
        await asyncio.Event().wait()

    definition = SagaDefinition(
        name="mystery",
        steps=[
            SagaStep(name="a", execute=done, compensate=refund_down),
            SagaStep(name="b", execute=hang),
        ],
    )
    dead = SagaCoordinator(session_factory, lease_seconds=30)
    dead.register_saga(definition)
    context = SagaContext(saga_id=str(uuid4()), tenant_id=TENANT)
    task = asyncio.create_task(dead.execute_saga(saga_name="mystery", context=context))
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()  # the worker dies: no more renewals, nothing released
    await asyncio.gather(task, return_exceptions=True)
    assert await SqlSagaStore(session_factory).renew(context.saga_id, dead.owner_id, -1)
    return context.saga_id


@pytest.mark.parametrize("action", ["resume_saga", "cancel_saga"])
async def test_resume_and_cancel_refuse_an_abandoned_saga_of_unknown_type_untouched(
    session_factory, action
):
    saga_id = await abandoned_saga(session_factory)
    before = await snapshot(session_factory, saga_id)
    stranger = SagaCoordinator(session_factory, lease_seconds=30)
    with pytest.raises(SagaDefinitionError, match="unknown saga 'mystery'"):
        await getattr(stranger, action)(saga_id, tenant_id=ALL_TENANTS)
    after = await snapshot(session_factory, saga_id)
    assert after == before  # status, lease, cancel flag, steps: all as they were
    assert after["saga"]["status"] == "running" and not after["saga"]["cancel_requested"]


async def test_error_keeps_its_shape_when_resumes_keep_failing(session_factory):
    owner, saga_id = await stuck_saga(session_factory)
    store = SqlSagaStore(session_factory)
    first = await owner.get_saga(saga_id, tenant_id=TENANT)
    boom = {
        "code": "unexpected_error",
        "message": "boom",
        "step": "b",
        "context": {"exception_type": "RuntimeError"},
    }
    refund = {
        "code": "unexpected_error",
        "message": "refund service down",
        "step": "a",
        "context": {"exception_type": "ConnectionError"},
    }
    assert (first["error"], first["compensation_error"]) == (boom, refund)
    for _ in range(3):
        resumed = await owner.resume_saga(saga_id, tenant_id=TENANT)
        assert resumed["status"] == "compensation_failed"
        assert (resumed["error"], resumed["compensation_error"]) == (boom, refund)
        stored = await store.load(saga_id, tenant_id=TENANT)
        # The original failure and the latest compensation error, each in its own place.
        assert stored.error == SagaFailure.from_dict(boom)
        assert stored.steps["a"].error == SagaFailure.from_dict(refund)
    listed = await owner.list_sagas(tenant_id=TENANT)
    assert [s["error"] for s in listed] == [boom]


async def test_stored_errors_are_bounded_when_a_step_fails_with_a_huge_message(session_factory):
    async def loud(ctx):
        raise RuntimeError("x" * 100_000)

    async def loud_undo(ctx):
        raise ConnectionError("y" * 100_000)

    coordinator = SagaCoordinator(session_factory, lease_seconds=30)
    coordinator.register_saga(stuck_definition("loud", compensate=loud_undo, fail=loud))
    context = SagaContext(saga_id=str(uuid4()), tenant_id=TENANT)
    await coordinator.execute_saga(saga_name="loud", context=context)
    stored = await SqlSagaStore(session_factory).load(context.saga_id, tenant_id=TENANT)
    message = stored.error.message
    assert len(message) == MAX_ERROR_CHARS and message.endswith("…")
    assert message.startswith("xxx")
    assert len(stored.steps["a"].error.message) == MAX_ERROR_CHARS
    assert len(stored.steps["b"].error.message) == MAX_ERROR_CHARS
