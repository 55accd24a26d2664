"""start_saga: the id comes back once the saga is committed; the saga runs on in the background."""

from __future__ import annotations

import asyncio
import datetime as dt
import multiprocessing
import os
import signal
import uuid

import pytest

from dotmac_shared.business_logic import SagaConflictError, create_session_factory
from dotmac_shared.business_logic.clock import SYSTEM_CLOCK, as_clock
from dotmac_shared.business_logic.sagas import (
    ALL_TENANTS,
    SagaContext,
    SagaCoordinator,
    SagaDefinition,
    SagaStatus,
    SagaStep,
    SqlSagaStore,
    StepContext,
)

TENANT = "tenant-start"
LEASE = 30.0
#: Set in a child process: its ``hold`` step never returns (the process is killed in it).
HOLD_ENV = "DOTMAC_TEST_HOLD_STEP"


async def first(ctx: StepContext) -> dict:
    return {"first": True}


async def hold(ctx: StepContext) -> dict:
    if os.environ.get(HOLD_ENV):
        await asyncio.Event().wait()  # killed here
    return {"held": ctx.attempt}


def definition() -> SagaDefinition:
    return SagaDefinition(
        name="background",
        steps=[SagaStep(name="first", execute=first), SagaStep(name="hold", execute=hold)],
    )


def coordinator(factory, **kwargs) -> SagaCoordinator:
    c = SagaCoordinator(factory, lease_seconds=LEASE, **kwargs)
    c.register_saga(definition())
    return c


def context(tenant: str | None = TENANT) -> SagaContext:
    return SagaContext(saga_id=str(uuid.uuid4()), tenant_id=tenant)


async def test_start_returns_the_id_of_a_committed_saga_when_its_steps_have_not_run(
    session_factory,
):
    gate = asyncio.Event()

    async def gated(ctx: StepContext) -> dict:
        await gate.wait()
        return {"gated": True}

    c = SagaCoordinator(session_factory, lease_seconds=LEASE)
    c.register_saga(SagaDefinition(name="gated", steps=[SagaStep(name="g", execute=gated)]))
    ctx = context()
    saga_id = await c.start_saga("gated", ctx, {"order": 1})
    assert saga_id == ctx.saga_id
    stored = await SqlSagaStore(session_factory).load(saga_id, tenant_id=TENANT)
    assert stored is not None and stored.status is SagaStatus.RUNNING
    assert stored.steps["g"].status == "running"  # committed with the saga
    gate.set()
    result = await c.wait(saga_id, tenant_id=TENANT)
    assert result.status is SagaStatus.COMPLETED and result.step_results == {"g": {"gated": True}}
    await c.aclose()


async def test_start_refuses_an_id_of_another_tenant_when_it_is_taken(session_factory):
    c = coordinator(session_factory)
    ctx = context()
    await c.start_saga("background", ctx)
    await c.wait(ctx.saga_id, tenant_id=TENANT)
    with pytest.raises(SagaConflictError):
        await c.start_saga("background", SagaContext(ctx.saga_id, "tenant-other"))
    with pytest.raises(SagaConflictError):
        await c.start_saga("background", ctx, {"other": "data"})
    # An exact repeat of a finished saga starts nothing: its stored outcome is waited for.
    assert await c.start_saga("background", ctx) == ctx.saga_id
    again = await c.wait(ctx.saga_id, tenant_id=TENANT)
    assert again.status is SagaStatus.COMPLETED and again.step_results["hold"] == {"held": 1}
    await c.aclose()


async def test_wait_reads_the_stored_outcome_when_the_saga_is_not_running_here(session_factory):
    c = coordinator(session_factory)
    ctx = context()
    await c.start_saga("background", ctx)
    await c.wait(ctx.saga_id, tenant_id=TENANT)
    other = coordinator(session_factory)
    assert (await other.wait(ctx.saga_id, tenant_id=TENANT)).status is SagaStatus.COMPLETED
    await c.aclose()


async def test_aclose_cancels_a_running_saga_and_another_worker_finishes_it(session_factory):
    os.environ[HOLD_ENV] = "1"
    try:
        c = coordinator(session_factory)
        ctx = context()
        await c.start_saga("background", ctx)
        store = SqlSagaStore(session_factory)
        while (await store.load(ctx.saga_id, tenant_id=TENANT)).steps.get("hold") is None:
            await asyncio.sleep(0.01)
        await c.aclose()
    finally:
        del os.environ[HOLD_ENV]
    ahead = as_clock(lambda: SYSTEM_CLOCK.now() + dt.timedelta(seconds=LEASE + 1))
    rescuer = coordinator(session_factory, clock=ahead)
    assert await rescuer.recover() == 1
    result = await rescuer.get_saga(ctx.saga_id, tenant_id=TENANT)
    assert result.status is SagaStatus.COMPLETED and result.step_results["hold"] == {"held": 2}


def _start_and_hold(url: str, saga_id: str, started) -> None:
    os.environ[HOLD_ENV] = "1"

    async def go() -> None:
        factory = create_session_factory(url, migrate=False)
        c = coordinator(factory)
        await c.start_saga("background", SagaContext(saga_id, TENANT))
        started.set()
        await c.wait(saga_id, tenant_id=TENANT)  # never returns: the step holds

    asyncio.run(go())


@pytest.mark.reliability
async def test_another_worker_finishes_a_saga_when_the_process_that_started_it_is_killed(
    session_factory, database_url
):
    saga_id = str(uuid.uuid4())
    ctx = multiprocessing.get_context("spawn")
    started = ctx.Event()
    child = ctx.Process(target=_start_and_hold, args=(database_url, saga_id, started))
    child.start()
    try:
        assert await asyncio.to_thread(started.wait, 60)
        store = SqlSagaStore(session_factory)
        for _ in range(6000):  # until the child is inside the step that holds
            stored = await store.load(saga_id, tenant_id=TENANT)
            if stored is not None and "hold" in stored.steps:
                break
            await asyncio.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        await asyncio.to_thread(child.join, 60)
    assert child.exitcode == -signal.SIGKILL
    stored = await SqlSagaStore(session_factory).load(saga_id, tenant_id=ALL_TENANTS)
    assert stored.status is SagaStatus.RUNNING and stored.lease_owner is not None

    ahead = as_clock(lambda: SYSTEM_CLOCK.now() + dt.timedelta(seconds=LEASE + 1))
    rescuer = coordinator(session_factory, clock=ahead)
    assert await rescuer.recover() == 1
    result = await rescuer.get_saga(saga_id, tenant_id=TENANT)
    assert result.status is SagaStatus.COMPLETED
    assert result.step_results == {"first": {"first": True}, "hold": {"held": 2}}
