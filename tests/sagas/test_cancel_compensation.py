"""Cancelling compensates only steps that ran; compensation attempts are counted across crashes."""

from __future__ import annotations

import asyncio
from uuid import uuid4

from dotmac_shared.business_logic.sagas import (
    RetryPolicy,
    SagaContext,
    SagaCoordinator,
    SagaDefinition,
    SagaStep,
    SqlSagaStore,
)

TENANT = "tenant-a"


def context() -> SagaContext:
    return SagaContext(saga_id=str(uuid4()), tenant_id=TENANT)


async def expire_lease(session_factory, saga_id: str, owner: str) -> None:
    """The dead worker's lease runs out (no clock to wait on: it is set in the past)."""
    assert await SqlSagaStore(session_factory).renew(saga_id, owner, -1)


async def test_cancel_seen_before_a_step_began_does_not_compensate_that_step(session_factory):
    in_charge, go_on = asyncio.Event(), asyncio.Event()
    refunds: list[tuple[str, object]] = []
    shipped: list[str] = []

    async def charge(ctx):
        in_charge.set()
        await go_on.wait()
        return {"charge_id": "ch_1"}

    async def refund(ctx):
        refunds.append((ctx.step_name, ctx.result))

    async def ship(ctx):
        shipped.append(ctx.saga_id)
        return {"parcel": "p_1"}

    definition = SagaDefinition(
        name="order",
        steps=[
            SagaStep(name="charge", execute=charge, compensate=refund),
            SagaStep(name="ship", execute=ship, compensate=refund),
        ],
    )
    driver = SagaCoordinator(session_factory, lease_seconds=30)
    operator = SagaCoordinator(session_factory, lease_seconds=30)
    for c in (driver, operator):
        c.register_saga(definition)
    ctx = context()
    task = asyncio.create_task(driver.execute_saga(saga_name="order", context=ctx))
    await in_charge.wait()
    assert (await operator.cancel_saga(ctx.saga_id, tenant_id=TENANT))["status"] == "running"
    go_on.set()
    result = await task
    # "charge done + ship started" was one commit, which reported the cancel: ship never ran.
    assert result["status"] == "compensated" and result["error"]["code"] == "saga_cancelled"
    assert shipped == []
    assert refunds == [("charge", {"charge_id": "ch_1"})]  # no refund of a never-made charge
    assert result["compensated_steps"] == ["charge"]
    saga = await operator.get_saga(ctx.saga_id, tenant_id=TENANT)
    ship_step = saga["steps"][1]
    assert (ship_step["status"], ship_step["attempts"], ship_step["started_at"]) == (
        "pending",
        0,
        None,
    )
    assert ship_step["compensation_attempts"] == 0


async def test_cancel_compensates_a_step_whose_worker_died_in_it(session_factory):
    in_ship = asyncio.Event()
    refunds: list[tuple[str, object]] = []

    async def charge(ctx):
        return {"charge_id": "ch_1"}

    async def ship(ctx):  # may have shipped before its worker died
        in_ship.set()
        await asyncio.Event().wait()

    async def undo(ctx):
        refunds.append((ctx.step_name, ctx.result))

    definition = SagaDefinition(
        name="order",
        steps=[
            SagaStep(name="charge", execute=charge, compensate=undo),
            SagaStep(name="ship", execute=ship, compensate=undo),
        ],
    )
    dead = SagaCoordinator(session_factory, lease_seconds=30)
    operator = SagaCoordinator(session_factory, lease_seconds=30)
    for c in (dead, operator):
        c.register_saga(definition)
    ctx = context()
    task = asyncio.create_task(dead.execute_saga(saga_name="order", context=ctx))
    await asyncio.wait_for(in_ship.wait(), 10)
    task.cancel()  # the worker dies inside ship
    await asyncio.gather(task, return_exceptions=True)
    await expire_lease(session_factory, ctx.saga_id, dead.owner_id)
    result = await operator.cancel_saga(ctx.saga_id, tenant_id=TENANT)
    assert result["status"] == "compensated"
    # ship began before the crash, so it may have taken effect: it is compensated
    # (at-least-once), with no result since it never finished.
    assert refunds == [("ship", None), ("charge", {"charge_id": "ch_1"})]
    assert result["compensated_steps"] == ["ship", "charge"]


async def test_compensation_retried_after_a_crash_is_told_its_real_attempt_number(
    session_factory,
):
    second_try = asyncio.Event()
    attempts: list[int] = []

    async def refund(ctx):
        attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            raise ConnectionError("refund service busy")
        if ctx.attempt == 2:
            second_try.set()
            await asyncio.Event().wait()  # the worker dies during the second try

    async def charge(ctx):
        return {"charge_id": "ch_1"}

    async def boom(ctx):
        raise RuntimeError("boom")

    definition = SagaDefinition(
        name="order",
        steps=[
            SagaStep(
                name="charge",
                execute=charge,
                compensate=refund,
                compensation_retry=RetryPolicy(max_attempts=5, initial_delay=0.001, jitter=0),
            ),
            SagaStep(name="ship", execute=boom),
        ],
    )
    dead = SagaCoordinator(session_factory, lease_seconds=30)
    rescuer = SagaCoordinator(session_factory, lease_seconds=30)
    for c in (dead, rescuer):
        c.register_saga(definition)
    ctx = context()
    task = asyncio.create_task(dead.execute_saga(saga_name="order", context=ctx))
    await asyncio.wait_for(second_try.wait(), 10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    stored = await SqlSagaStore(session_factory).load(ctx.saga_id, tenant_id=TENANT)
    assert stored.steps["charge"].compensation_attempts == 2  # counted before the try ran
    await expire_lease(session_factory, ctx.saga_id, dead.owner_id)
    assert await rescuer.recover() == 1
    assert attempts == [1, 2, 3]
    saga = await rescuer.get_saga(ctx.saga_id, tenant_id=TENANT)
    assert saga["status"] == "compensated"
    assert saga["steps"][0]["compensation_attempts"] == 3
