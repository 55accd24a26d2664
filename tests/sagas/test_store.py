"""The SQL saga store: one commit per state change, group commit of sagas in flight, fencing."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest

from dotmac_shared.business_logic import PersistenceError, SagaError, SagaLeaseLostError
from dotmac_shared.business_logic.persistence import engine_of
from dotmac_shared.business_logic.sagas import (
    SagaContext,
    SagaCoordinator,
    SagaDefinition,
    SagaEvent,
    SagaRecord,
    SagaStatus,
    SagaStep,
    SqlSagaStore,
    StepRecord,
    StepStatus,
)
from tests.sagas.steps import REFUSE_BOOM


def batches_of(store: SqlSagaStore) -> list[list[str]]:
    """Record the saga ids of every batch the store writes (one commit each)."""
    seen: list[list[str]] = []
    write = store._writes._write

    async def spy(batch):
        seen.append([w.saga_id for w in batch])
        return await write(batch)

    store._writes._write = spy
    return seen


def coordinator_with(session_factory, steps: int = 3) -> tuple[SagaCoordinator, SqlSagaStore]:
    async def noop(ctx):
        return {f"{ctx.step_name}_done": True}

    store = SqlSagaStore(session_factory)
    coordinator = SagaCoordinator(session_factory, store=store)
    coordinator.register_saga(
        SagaDefinition(
            name="plain",
            steps=[SagaStep(name=f"step_{i}", execute=noop) for i in range(1, steps + 1)],
        )
    )
    return coordinator, store


def record(saga_id: str) -> SagaRecord:
    return SagaRecord(
        saga_id=saga_id,
        saga_name="plain",
        saga_version="1",
        status=SagaStatus.RUNNING,
        initial_data={},
        context={"saga_id": saga_id},
    )


def running(name: str, index: int = 0) -> StepRecord:
    return StepRecord(name=name, index=index, status=StepStatus.RUNNING, attempts=1)


async def test_saga_and_its_first_step_are_one_commit_when_a_saga_starts(session_factory):
    store = SqlSagaStore(session_factory)
    observer = SagaCoordinator(session_factory)
    seen_by_step = {}

    async def first(ctx):
        seen_by_step.update(await observer.get_saga(ctx.saga_id, tenant_id=None))
        return {}

    coordinator = SagaCoordinator(session_factory, store=store)
    coordinator.register_saga(
        SagaDefinition(
            name="watched",
            steps=[SagaStep(name="first", execute=first), SagaStep(name="second", execute=first)],
        )
    )
    writes = batches_of(store)
    saga_id = str(uuid4())
    result = await coordinator.execute_saga(saga_name="watched", context=SagaContext(saga_id))
    assert result["status"] == "completed"
    # create + step 1 started | step 1 done + step 2 started | step 2 done + saga completed
    assert writes == [[saga_id]] * 3
    # The last view was taken inside step 2; both steps were durable by then.
    assert [s["status"] for s in seen_by_step["steps"]] == ["completed", "running"]
    assert seen_by_step["lease_owner"] == coordinator.owner_id


async def test_first_step_is_durable_as_running_before_it_runs_when_a_saga_starts(
    session_factory,
):
    observer = SagaCoordinator(session_factory)
    seen = {}

    async def first(ctx):
        seen.update(await observer.get_saga(ctx.saga_id, tenant_id=None))
        return {}

    coordinator = SagaCoordinator(session_factory)
    coordinator.register_saga(
        SagaDefinition(name="watched", steps=[SagaStep(name="first", execute=first)])
    )
    saga_id = str(uuid4())
    await coordinator.execute_saga(saga_name="watched", context=SagaContext(saga_id))
    assert seen["status"] == "running" and seen["current_step"] == 0
    assert [(s["name"], s["status"], s["attempts"]) for s in seen["steps"]] == [
        ("first", "running", 1)
    ]


async def test_every_row_of_a_write_lands_in_order_when_a_saga_writes_alone(session_factory):
    # A saga alone is a batch of one; small ones and large ones are written in different
    # forms (scalars, arrays) on PostgreSQL: every size must land whole, history in order.
    store = SqlSagaStore(session_factory)
    for steps, events in [(0, 0), (1, 1), (2, 4), (3, 5), (6, 9)]:
        saga_id = str(uuid4())
        rows = [running(f"step_{i}", i) for i in range(steps)]
        now = store.clock.now()
        entries = [
            SagaEvent(kind=f"test.{i}", occurred_at=now, step=f"step_{i}", attempt=i)
            for i in range(events)
        ]
        assert await store.create(record(saga_id), "w1", 30, rows, entries)
        for row in rows:
            row.status, row.result = StepStatus.COMPLETED, {"n": row.index}
        done = record(saga_id)
        done.status, done.current_step = SagaStatus.COMPLETED, steps
        assert await store.save(done, rows, "w1", entries[::-1]) is False
        loaded = await store.load(saga_id, tenant_id=None)
        assert loaded is not None and loaded.status is SagaStatus.COMPLETED
        assert loaded.lease_owner is None and loaded.current_step == steps
        assert [(s.name, s.status, s.result) for s in loaded.steps.values()] == [
            (f"step_{i}", StepStatus.COMPLETED, {"n": i}) for i in range(steps)
        ]
        history = await store.history(saga_id, tenant_id=None)
        kinds = [f"test.{i}" for i in range(events)]
        assert [e.kind for e in history] == kinds + kinds[::-1]


@pytest.mark.parametrize("sagas", [2, 25])
async def test_sagas_in_flight_share_commits_when_run_concurrently(session_factory, sagas):
    coordinator, store = coordinator_with(session_factory, steps=3)
    writes = batches_of(store)
    ids = [str(uuid4()) for _ in range(sagas)]
    results = await asyncio.gather(
        *(coordinator.execute_saga(saga_name="plain", context=SagaContext(i)) for i in ids)
    )
    assert [r["status"] for r in results] == ["completed"] * sagas
    assert all(len(r["step_results"]) == 3 for r in results)
    # Every saga's 4 state changes were each written exactly once, some of them together.
    written = [saga_id for batch in writes for saga_id in batch]
    assert sorted(written) == sorted(ids * 4)
    assert len(writes) < 4 * sagas
    assert all(len(batch) == len(set(batch)) for batch in writes)
    for saga_id in ids:
        saga = await coordinator.get_saga(saga_id, tenant_id=None)
        assert [s["status"] for s in saga["steps"]] == ["completed"] * 3
        assert saga["lease_owner"] is None


async def test_writer_that_lost_the_lease_writes_nothing_when_batched_with_others(
    session_factory,
):
    store = SqlSagaStore(session_factory)
    writes = batches_of(store)
    first, stolen, other = (record(str(uuid4())) for _ in range(3))
    for saga in (first, stolen, other):
        assert await store.create(saga, "w1", 30, [running("a")])
    assert await store.create(record(stolen.saga_id), "w1", 30) is False
    # Another worker took `stolen` over (its lease had expired).
    assert await store.renew(stolen.saga_id, "w1", -1)
    assert await store.acquire(stolen.saga_id, "w2", 30)
    writes.clear()

    done = StepRecord(name="a", index=0, status=StepStatus.COMPLETED, attempts=1, result={"x": 1})
    for saga in (first, stolen, other):
        saga.status, saga.current_step = SagaStatus.COMPLETED, 1
    outcomes = await asyncio.gather(
        store.save(first, [done], "w1"),
        store.save(stolen, [done], "w1"),
        store.save(other, [done], "w1"),
        return_exceptions=True,
    )
    # Ready together, the three changes went in one batch (see _GroupCommit).
    assert writes == [[first.saga_id, stolen.saga_id, other.saga_id]]
    assert outcomes[0] is False and outcomes[2] is False
    assert isinstance(outcomes[1], SagaLeaseLostError)
    for saga in (first, other):
        stored = await store.load(saga.saga_id, tenant_id=None)
        assert stored.status is SagaStatus.COMPLETED and stored.lease_owner is None
        assert stored.steps["a"].status is StepStatus.COMPLETED
        assert stored.steps["a"].result == {"x": 1}
    kept = await store.load(stolen.saga_id, tenant_id=None)
    assert kept.status is SagaStatus.RUNNING and kept.lease_owner == "w2"
    assert kept.steps["a"].status is StepStatus.RUNNING and kept.steps["a"].result is None


async def test_cancel_flag_reaches_each_writer_when_batched(session_factory):
    store = SqlSagaStore(session_factory)
    sagas = [record(str(uuid4())) for _ in range(4)]
    for saga in sagas:
        assert await store.create(saga, "w1", 30)
    assert await store.request_cancel(sagas[2].saga_id, tenant_id=None)
    flags = await asyncio.gather(*(store.save(s, [running("a")], "w1") for s in sagas))
    assert flags == [False, False, True, False]


async def test_same_saga_id_started_twice_at_once_runs_its_steps_once(session_factory):
    calls = []

    async def counted(ctx):
        calls.append(ctx.saga_id)
        await asyncio.sleep(0.05)
        return {}

    store = SqlSagaStore(session_factory)
    coordinator = SagaCoordinator(session_factory, store=store)
    coordinator.register_saga(
        SagaDefinition(name="once", steps=[SagaStep(name="a", execute=counted)])
    )
    writes = batches_of(store)
    leader, twice = str(uuid4()), str(uuid4())
    outcomes = await asyncio.gather(
        coordinator.execute_saga(saga_name="once", context=SagaContext(leader)),
        coordinator.execute_saga(saga_name="once", context=SagaContext(twice)),
        coordinator.execute_saga(saga_name="once", context=SagaContext(twice)),
        return_exceptions=True,
    )
    # The three starts were queued together; the two of `twice` went to separate batches.
    assert writes[:2] == [[leader, twice], [twice]]
    assert sorted(calls) == sorted([leader, twice])
    assert outcomes[0]["status"] == "completed" and outcomes[1]["status"] == "completed"
    assert isinstance(outcomes[2], SagaError)
    assert "being run by another worker" in str(outcomes[2])


async def test_bad_write_fails_only_its_own_saga_when_batched(session_factory):
    engine = engine_of(session_factory)
    async with engine.begin() as conn:  # the database refuses to record step "boom" as done
        for ddl in REFUSE_BOOM[engine.dialect.name]:
            await conn.exec_driver_sql(ddl)
    names = ["fine", "fine", "boom", "fine", "fine"]
    ids = [str(uuid4()) for _ in names]
    go, all_in_step, holding, release = (asyncio.Event() for _ in range(4))
    in_step = 0

    async def step(ctx):
        nonlocal in_step
        in_step += 1
        if in_step == len(names):
            all_in_step.set()
        await go.wait()
        if ctx.saga_id in (ids[2], ids[3]):
            # The bad change and one good one are never in the first batch: they are in the
            # next, with any the first did not take.
            await holding.wait()
        return {"done": True}

    store = SqlSagaStore(session_factory)
    coordinator = SagaCoordinator(session_factory, store=store)
    for name in ("fine", "boom"):
        coordinator.register_saga(
            SagaDefinition(name=name, steps=[SagaStep(name=name, execute=step)])
        )
    failed: list[list[str]] = []
    held: list[str] = []
    write = store._writes._write

    async def spy(batch):
        if go.is_set() and not holding.is_set():
            held.extend(w.saga_id for w in batch)
            holding.set()
            await release.wait()  # the first write waits until every other change queued
        try:
            return await write(batch)
        except Exception:
            failed.append([w.saga_id for w in batch])
            raise

    store._writes._write = spy
    runs = asyncio.gather(
        *(
            coordinator.execute_saga(saga_name=name, context=SagaContext(saga_id))
            for name, saga_id in zip(names, ids, strict=True)
        ),
        return_exceptions=True,
    )
    await asyncio.wait_for(all_in_step.wait(), 10)
    go.set()
    await asyncio.wait_for(holding.wait(), 10)
    while len(held) + len(store._writes._queue) < len(names):
        await asyncio.sleep(0.005)
    release.set()
    outcomes = await runs
    batched = [saga_id for saga_id in ids if saga_id not in held]
    assert held and not set(held) & {ids[2], ids[3]}
    # The batch of the others failed; written one by one, only the bad change did.
    assert [sorted(failed[0]), failed[1:]] == [sorted(batched), [[ids[2]]]]
    assert isinstance(outcomes[2], PersistenceError) and "no boom" in str(outcomes[2])
    assert outcomes[2].__cause__ is not None  # the database's own error, chained
    assert [o["status"] for i, o in enumerate(outcomes) if i != 2] == ["completed"] * 4
    stuck = await coordinator.get_saga(ids[2], tenant_id=None)
    assert stuck["status"] == "running" and stuck["steps"][0]["status"] == "running"


async def test_writer_cancelled_before_its_batch_writes_nothing(session_factory):
    store = SqlSagaStore(session_factory)
    first, dropped = record(str(uuid4())), record(str(uuid4()))
    for saga in (first, dropped):
        assert await store.create(saga, "w1", 30)
    writes = batches_of(store)
    leader = asyncio.create_task(store.save(first, [running("a")], "w1"))
    queued = asyncio.create_task(store.save(dropped, [running("a")], "w1"))
    await asyncio.sleep(0)  # the leader is writing; the other change waits for the next batch
    queued.cancel()
    assert await leader is False
    with pytest.raises(asyncio.CancelledError):
        await queued
    await asyncio.sleep(0.05)
    assert writes == [[first.saga_id]]
    assert (await store.load(first.saga_id, tenant_id=None)).steps["a"].status is StepStatus.RUNNING
    assert (await store.load(dropped.saga_id, tenant_id=None)).steps == {}
