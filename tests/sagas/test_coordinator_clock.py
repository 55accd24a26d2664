"""Every wall time the coordinator and its store write or compare comes from one Clock."""

from __future__ import annotations

import datetime as dt
from uuid import uuid4

from dotmac_shared.business_logic.clock import ManualClock
from dotmac_shared.business_logic.sagas import (
    ALL_TENANTS,
    SagaContext,
    SagaCoordinator,
    SagaDefinition,
    SagaRecord,
    SagaStatus,
    SagaStep,
    SqlSagaStore,
    StepContext,
)

LEASE = 30.0


def seconds(value: float) -> dt.timedelta:
    return dt.timedelta(seconds=value)


async def test_saga_times_come_from_the_injected_clock_when_one_is_given(session_factory):
    clock = ManualClock()
    start = clock.now()

    async def ten_seconds(ctx: StepContext) -> dict:
        clock.advance(10)
        return {"step": ctx.step_name}

    coordinator = SagaCoordinator(session_factory, lease_seconds=LEASE, clock=clock)
    coordinator.register_saga(
        SagaDefinition(
            name="timed",
            steps=[SagaStep(name=name, execute=ten_seconds) for name in ("a", "b")],
        )
    )
    result = await coordinator.execute_saga(saga_name="timed", context=SagaContext(str(uuid4())))
    saga = await coordinator.get_saga(result["saga_id"], tenant_id=ALL_TENANTS)
    assert saga["status"] == "completed"
    assert saga["created_at"] == start
    assert [(s["started_at"], s["completed_at"]) for s in saga["steps"]] == [
        (start, start + seconds(10)),
        (start + seconds(10), start + seconds(20)),
    ]
    assert saga["completed_at"] == saga["updated_at"] == start + seconds(20)


async def test_saga_deadline_is_measured_on_the_injected_clock_when_it_moves(session_factory):
    clock = ManualClock()
    ran = []

    async def slow(ctx: StepContext) -> dict:
        ran.append(ctx.step_name)
        clock.advance(61)  # the saga's minute is over, in the clock's time
        return {}

    coordinator = SagaCoordinator(session_factory, lease_seconds=LEASE, clock=clock)
    coordinator.register_saga(
        SagaDefinition(
            name="deadline",
            timeout=60,
            steps=[SagaStep(name=name, execute=slow) for name in ("a", "b")],
        )
    )
    result = await coordinator.execute_saga(saga_name="deadline", context=SagaContext(str(uuid4())))
    assert result["status"] == "compensated" and result["error"]["code"] == "saga_timeout"
    assert ran == ["a"]


async def test_lease_expiry_is_written_and_compared_on_the_store_clock(session_factory):
    clock = ManualClock()
    store = SqlSagaStore(session_factory, clock=clock)
    saga = SagaRecord(
        saga_id=str(uuid4()),
        saga_name="plain",
        saga_version="1",
        status=SagaStatus.RUNNING,
        initial_data={},
        context={},
    )
    assert await store.create(saga, "w1", LEASE)
    stored = await store.load(saga.saga_id, tenant_id=ALL_TENANTS)
    assert stored.lease_expires_at == clock.now() + seconds(LEASE)
    assert not await store.acquire(saga.saga_id, "w2", LEASE)
    assert await store.claim_expired("w2", LEASE, 10) == []
    clock.advance(LEASE + 1)
    assert await store.claim_expired("w2", LEASE, 10) == [saga.saga_id]
    assert not await store.renew(saga.saga_id, "w1", LEASE)  # w1 lost it
    assert (
        await store.load(saga.saga_id, tenant_id=ALL_TENANTS)
    ).lease_expires_at == clock.now() + seconds(LEASE)


async def test_recovery_leaves_a_saga_alone_when_its_type_is_not_registered(session_factory):
    clock = ManualClock()
    store = SqlSagaStore(session_factory, clock=clock)
    saga_id = str(uuid4())
    saga = SagaRecord(
        saga_id=saga_id,
        saga_name="known_elsewhere",
        saga_version="1",
        status=SagaStatus.RUNNING,
        initial_data={},
        context=SagaContext(saga_id).to_dict(),
    )
    assert await store.create(saga, "dead-worker", LEASE)
    clock.advance(LEASE + 1)  # the worker that started it is gone

    stranger = SagaCoordinator(session_factory, lease_seconds=LEASE, clock=clock)
    stranger.register_saga(
        SagaDefinition(name="other", steps=[SagaStep(name="a", execute=nothing)])
    )
    assert await stranger.recover() == 0
    untouched = await store.load(saga.saga_id, tenant_id=ALL_TENANTS)
    assert untouched.lease_owner == "dead-worker"  # no lease taken: nobody waits for it

    able = SagaCoordinator(session_factory, lease_seconds=LEASE, clock=clock)
    able.register_saga(
        SagaDefinition(name="known_elsewhere", steps=[SagaStep(name="a", execute=nothing)])
    )
    assert await able.recover() == 1
    done = await able.get_saga(saga.saga_id, tenant_id=ALL_TENANTS)
    assert done["status"] == "completed"


async def nothing(ctx: StepContext) -> dict:
    return {}
