"""Tenants never see each other's sagas: ids, reads, lists and operator actions are scoped."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest
from sqlalchemy import text

from dotmac_shared.business_logic import (
    ALL_TENANTS,
    InvalidInputError,
    SagaConflictError,
    SagaNotFoundError,
)
from dotmac_shared.business_logic.persistence.models import SagaExecution
from dotmac_shared.business_logic.sagas import (
    SagaContext,
    SagaCoordinator,
    SagaDefinition,
    SagaRecord,
    SagaStatus,
    SagaStep,
    SqlSagaStore,
)
from tests.sagas.steps import stuck_definition

CARD = {"card_number": "4111111111111111", "charged": "12.50"}

SAGA_TABLE = SagaExecution.__tablename__


def charging_saga(calls: list[str], name: str = "charge") -> SagaDefinition:
    async def charge(ctx):
        calls.append(ctx.tenant_id)
        return dict(CARD)

    return SagaDefinition(name=name, steps=[SagaStep(name="charge", execute=charge)])


@pytest.fixture
def calls() -> list[str]:
    return []


@pytest.fixture
def coordinator(session_factory, calls) -> SagaCoordinator:
    coordinator = SagaCoordinator(session_factory, lease_seconds=5)
    coordinator.register_saga(charging_saga(calls))
    coordinator.register_saga(charging_saga(calls, name="refund"))
    return coordinator


async def start(coordinator, saga_id, tenant, name="charge", data=None):
    return await coordinator.execute_saga(
        saga_name=name,
        context=SagaContext(saga_id=saga_id, tenant_id=tenant),
        initial_data={"order": "42"} if data is None else data,
    )


# --- execute_saga: an id already in use ---------------------------------------------------


async def test_saga_id_of_another_tenant_is_a_conflict_without_its_data_when_reused(
    coordinator, calls
):
    saga_id = str(uuid4())
    first = await start(coordinator, saga_id, "tenant-a")
    assert first["step_results"]["charge"] == CARD
    with pytest.raises(SagaConflictError) as info:
        await start(coordinator, saga_id, "tenant-b")
    error = info.value
    assert error.metadata == {"reason": "tenant"}
    assert error.code == "saga_conflict" and error.tenant_id == "tenant-b"
    # Nothing of A's saga: no step results, no card digits, not even its tenant.
    described = repr(error.to_dict()) + str(error)
    assert CARD["card_number"] not in described and "tenant-a" not in described
    assert not hasattr(error, "step_results")
    assert calls == ["tenant-a"]  # B ran nothing
    kept = await coordinator.get_saga(saga_id, tenant_id="tenant-a")
    assert kept["status"] == "completed" and kept["tenant_id"] == "tenant-a"


async def test_saga_id_of_a_tenant_is_a_conflict_when_reused_without_a_tenant(coordinator):
    saga_id = str(uuid4())
    await start(coordinator, saga_id, "tenant-a")
    with pytest.raises(SagaConflictError) as info:
        await start(coordinator, saga_id, None)
    assert info.value.metadata == {"reason": "tenant"}
    other = str(uuid4())
    await start(coordinator, other, None)
    with pytest.raises(SagaConflictError) as info:
        await start(coordinator, other, "tenant-a")
    assert info.value.metadata == {"reason": "tenant"}


async def test_saga_id_of_another_saga_is_a_conflict_when_reused(coordinator, calls):
    saga_id = str(uuid4())
    await start(coordinator, saga_id, "tenant-a")
    with pytest.raises(SagaConflictError, match="belongs to a charge saga") as info:
        await start(coordinator, saga_id, "tenant-a", name="refund")
    assert info.value.metadata == {"reason": "saga_name"}
    assert calls == ["tenant-a"]


async def test_saga_id_with_other_initial_data_is_a_conflict_not_a_replay(coordinator, calls):
    saga_id = str(uuid4())
    await start(coordinator, saga_id, "tenant-a", data={"order": "42", "amount": 10})
    with pytest.raises(SagaConflictError, match="other initial data") as info:
        await start(coordinator, saga_id, "tenant-a", data={"order": "42", "amount": 11})
    assert info.value.metadata == {"reason": "initial_data"}
    assert calls == ["tenant-a"]


@pytest.mark.parametrize(
    "again",
    [
        {"amount": 10, "order": "42", "big": 1e300, "tiny": 0.1},  # keys in another order
        {"order": "42", "amount": 10.0, "big": 1e300, "tiny": 0.1},  # 10 and 10.0 are equal
    ],
)
async def test_exact_repeat_of_a_saga_replays_its_outcome_when_data_equal(
    coordinator, calls, again
):
    saga_id = str(uuid4())
    data = {"order": "42", "amount": 10, "big": 1e300, "tiny": 0.1}
    first = await start(coordinator, saga_id, "tenant-a", data=data)
    assert await start(coordinator, saga_id, "tenant-a", data=again) == first
    assert calls == ["tenant-a"]


async def test_unfinished_saga_is_resumed_when_repeated_exactly(session_factory):
    started, hold = asyncio.Event(), asyncio.Event()
    runs = []

    async def slow(ctx):
        runs.append(ctx.attempt)
        started.set()
        await hold.wait()
        return {"ok": True}

    definition = SagaDefinition(name="slow", steps=[SagaStep(name="s", execute=slow)])
    dead = SagaCoordinator(session_factory, lease_seconds=30)
    dead.register_saga(definition)
    context = SagaContext(saga_id=str(uuid4()), tenant_id="tenant-a")
    task = asyncio.create_task(dead.execute_saga(saga_name="slow", context=context))
    await started.wait()
    task.cancel()  # the worker dies mid-step
    await asyncio.gather(task, return_exceptions=True)
    store = SqlSagaStore(session_factory)
    assert await store.renew(context.saga_id, dead.owner_id, -1)  # its lease ran out
    hold.set()
    again = SagaCoordinator(session_factory, lease_seconds=30)
    again.register_saga(definition)
    with pytest.raises(SagaConflictError):
        await again.execute_saga(
            saga_name="slow",
            context=SagaContext(saga_id=context.saga_id, tenant_id="tenant-b"),
        )
    result = await again.execute_saga(saga_name="slow", context=context)
    assert result["status"] == "completed" and runs == [1, 2]


# --- reads and operator actions across tenants ----------------------------------------------


async def test_saga_of_another_tenant_is_reported_exactly_like_a_missing_one(coordinator):
    saga_id = str(uuid4())
    await start(coordinator, saga_id, "tenant-a")
    for action in (coordinator.get_saga, coordinator.cancel_saga, coordinator.resume_saga):
        for other in ("tenant-b", None):
            with pytest.raises(SagaNotFoundError) as foreign:
                await action(saga_id, tenant_id=other)
            with pytest.raises(SagaNotFoundError) as missing:
                await action("no-such-saga", tenant_id=other)
            assert str(foreign.value) == f"no saga with id {saga_id!r}"
            assert foreign.value.to_dict().keys() == missing.value.to_dict().keys()
            assert foreign.value.metadata == missing.value.metadata == {}


async def test_cancel_and_resume_leave_another_tenants_running_saga_alone(session_factory):
    in_step, go_on = asyncio.Event(), asyncio.Event()
    undone = []

    async def waiting(ctx):
        in_step.set()
        await go_on.wait()
        return {"done": True}

    async def undo(ctx):
        undone.append(ctx.step_name)

    definition = SagaDefinition(
        name="long",
        steps=[
            SagaStep(name="a", execute=waiting, compensate=undo),
            SagaStep(name="b", execute=waiting, compensate=undo),
        ],
    )
    owner = SagaCoordinator(session_factory, lease_seconds=30)
    intruder = SagaCoordinator(session_factory, lease_seconds=30)
    for c in (owner, intruder):
        c.register_saga(definition)
    context = SagaContext(saga_id=str(uuid4()), tenant_id="tenant-a")
    task = asyncio.create_task(owner.execute_saga(saga_name="long", context=context))
    await in_step.wait()
    for action in (intruder.cancel_saga, intruder.resume_saga):
        with pytest.raises(SagaNotFoundError):
            await action(context.saga_id, tenant_id="tenant-b")
    go_on.set()
    result = await task
    assert result["status"] == "completed" and undone == []  # no cancel flag was set


async def test_list_shows_one_tenants_sagas_and_all_only_when_asked(coordinator):
    ids = {}
    for tenant in ("tenant-a", "tenant-a", "tenant-b", None):
        saga_id = str(uuid4())
        await start(coordinator, saga_id, tenant)
        ids.setdefault(tenant, set()).add(saga_id)

    async def listed(scope, **filters):
        return {s["saga_id"] for s in await coordinator.list_sagas(tenant_id=scope, **filters)}

    assert await listed("tenant-a") == ids["tenant-a"]
    assert await listed("tenant-b") == ids["tenant-b"]
    assert await listed(None) == ids[None]  # the sagas started without a tenant
    assert await listed("tenant-c") == set()
    assert await listed(ALL_TENANTS) == set().union(*ids.values())
    assert await listed(ALL_TENANTS, status="compensated") == set()
    assert {s["tenant_id"] for s in await coordinator.list_sagas(tenant_id=ALL_TENANTS)} == {
        "tenant-a",
        "tenant-b",
        None,
    }


async def test_saga_without_a_tenant_is_read_with_none_or_all_tenants(coordinator):
    saga_id = str(uuid4())
    await start(coordinator, saga_id, None)
    assert (await coordinator.get_saga(saga_id, tenant_id=None))["tenant_id"] is None
    assert (await coordinator.get_saga(saga_id, tenant_id=ALL_TENANTS))["saga_id"] == saga_id
    with pytest.raises(SagaNotFoundError):
        await coordinator.get_saga(saga_id, tenant_id="tenant-a")


async def test_operator_resumes_any_tenants_saga_when_all_tenants(session_factory):
    broken = {"on": True}

    async def undo(ctx):
        if broken["on"]:
            raise ConnectionError("refunds are down")

    coordinator = SagaCoordinator(session_factory, lease_seconds=5)
    coordinator.register_saga(stuck_definition("stuck", compensate=undo))
    context = SagaContext(saga_id=str(uuid4()), tenant_id="tenant-a")
    stuck = await coordinator.execute_saga(saga_name="stuck", context=context)
    assert stuck["status"] == "compensation_failed"
    broken["on"] = False
    with pytest.raises(SagaNotFoundError):
        await coordinator.resume_saga(context.saga_id, tenant_id="tenant-b")
    resumed = await coordinator.resume_saga(context.saga_id, tenant_id=ALL_TENANTS)
    assert resumed["status"] == "compensated"


@pytest.mark.parametrize("scope", [42, object(), ["tenant-a"]])
async def test_scope_of_the_wrong_type_is_refused_clearly(coordinator, scope):
    with pytest.raises(InvalidInputError, match="tenant_id must be a tenant id") as info:
        await coordinator.list_sagas(tenant_id=scope)
    assert info.value.field == "tenant_id"
    with pytest.raises(InvalidInputError, match="tenant_id must be a tenant id"):
        await coordinator.get_saga("x", tenant_id=scope)


async def test_tenant_scope_is_a_required_keyword_of_every_read_and_action(coordinator):
    for action in (coordinator.get_saga, coordinator.cancel_saga, coordinator.resume_saga):
        with pytest.raises(TypeError, match="tenant_id"):
            await action("x")
    with pytest.raises(TypeError, match="tenant_id"):
        await coordinator.list_sagas()


# --- the store filters in SQL ---------------------------------------------------------------


def saga(tenant: str | None) -> SagaRecord:
    saga_id = str(uuid4())
    return SagaRecord(
        saga_id=saga_id,
        saga_name="plain",
        saga_version="1",
        status=SagaStatus.RUNNING,
        initial_data={},
        context={"saga_id": saga_id},
        tenant_id=tenant,
    )


async def cancel_flag(session_factory, saga_id: str) -> bool:
    async with session_factory() as session:
        flag = await session.scalar(
            text(f"SELECT cancel_requested FROM {SAGA_TABLE} WHERE saga_id = :s"),
            {"s": saga_id},
        )
    return bool(flag)


async def test_store_limit_counts_only_the_tenants_sagas_when_listing(session_factory):
    store = SqlSagaStore(session_factory)
    older = saga("tenant-b")
    assert await store.create(older, "w", 30)
    for _ in range(3):  # newer sagas of another tenant, and of none
        assert await store.create(saga("tenant-a"), "w", 30)
    assert await store.create(saga(None), "w", 30)
    # Filtered after a LIMIT 1, B's older saga would never be found.
    listed = await store.list(tenant_id="tenant-b", status=None, limit=1)
    assert [r.saga_id for r in listed] == [older.saga_id]
    assert len(await store.list(tenant_id=None, status=None, limit=10)) == 1
    assert len(await store.list(tenant_id=ALL_TENANTS, status=None, limit=10)) == 5


async def test_store_load_cancel_and_reopen_touch_nothing_outside_the_tenant(session_factory):
    store = SqlSagaStore(session_factory)
    mine = saga("tenant-a")
    assert await store.create(mine, "w", 30)
    for other in ("tenant-b", None):
        assert await store.load(mine.saga_id, tenant_id=other) is None
        assert await store.request_cancel(mine.saga_id, tenant_id=other) is False
    assert await cancel_flag(session_factory, mine.saga_id) is False
    assert (await store.load(mine.saga_id, tenant_id=ALL_TENANTS)).tenant_id == "tenant-a"

    mine.status = SagaStatus.COMPENSATING
    await store.save(mine, [], "w")
    mine.status = SagaStatus.COMPENSATION_FAILED
    await store.save(mine, [], "w")
    for other in ("tenant-b", None):
        assert await store.reopen(mine.saga_id, "intruder", 30, tenant_id=other) is False
    stored = await store.load(mine.saga_id, tenant_id="tenant-a")
    assert stored.status is SagaStatus.COMPENSATION_FAILED and stored.lease_owner is None
    assert await store.reopen(mine.saga_id, "operator", 30, tenant_id="tenant-a")
    assert await store.request_cancel(mine.saga_id, tenant_id="tenant-a")
    assert await cancel_flag(session_factory, mine.saga_id) is True
