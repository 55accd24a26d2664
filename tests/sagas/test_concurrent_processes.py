"""Several processes run sagas on one database at once: every saga lands whole, and once.

On SQLite the store writes a small state change on the event loop's thread when the write
lock is free at once, and waits for it on aiosqlite's thread when another process holds it;
here three processes really contend for that lock, with sagas alone and in groups.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from typing import Any

import pytest
from sqlalchemy import text

from dotmac_shared.business_logic import create_session_factory
from dotmac_shared.business_logic.persistence import engine_of
from dotmac_shared.business_logic.persistence.models import SagaExecution, SagaStepExecution
from dotmac_shared.business_logic.sagas import SagaContext, SagaCoordinator
from tests.sagas.steps import create_effects_table, effects, recording_saga

pytestmark = pytest.mark.reliability

PROCESSES = 3
STEPS = 3
#: Each process runs these groups of sagas one after another; a group's sagas run at once.
GROUPS = (1, 1, 1, 1, 10, 1, 1, 10, 1, 1)

SAGA_TABLE = SagaExecution.__tablename__
STEP_TABLE = SagaStepExecution.__tablename__


def _run_sagas(url: str, prefix: str, start: Any) -> None:
    async def go() -> None:
        factory = create_session_factory(url, migrate=False)
        coordinator = SagaCoordinator(factory)
        coordinator.register_saga(recording_saga("contended", steps=STEPS))
        start.wait(timeout=30)  # all processes begin together
        number = 0
        for size in GROUPS:
            ids = [f"{prefix}-{number + i}" for i in range(size)]
            number += size
            results = await asyncio.gather(
                *(
                    coordinator.execute_saga(saga_name="contended", context=SagaContext(i, "t"))
                    for i in ids
                )
            )
            assert [r["status"] for r in results] == ["completed"] * size
        await engine_of(factory).dispose()

    asyncio.run(go())


async def test_every_saga_completes_once_when_processes_write_at_the_same_time(
    session_factory, database_url
):
    await create_effects_table(session_factory)
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(PROCESSES)
    workers = [
        ctx.Process(target=_run_sagas, args=(database_url, f"p{n}", start))
        for n in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        await asyncio.to_thread(worker.join, 120)
    assert [w.exitcode for w in workers] == [0] * PROCESSES

    expected = [f"p{n}-{i}" for n in range(PROCESSES) for i in range(sum(GROUPS))]
    async with session_factory() as session:
        sagas = (await session.execute(text(f"SELECT saga_id, status FROM {SAGA_TABLE}"))).all()
        steps = (
            await session.execute(
                text(
                    "SELECT saga_id, COUNT(*), MIN(status), MAX(status), MAX(attempts) "
                    f"FROM {STEP_TABLE} GROUP BY saga_id"
                )
            )
        ).all()
    assert sorted(sagas) == sorted((saga_id, "completed") for saga_id in expected)
    assert sorted(steps) == sorted(
        (saga_id, STEPS, "completed", "completed", 1) for saga_id in expected
    )
    # Each step's effect is applied exactly once (keyed by the step's idempotency key).
    applied = await effects(session_factory)
    assert len(applied) == len(set(applied)) == len(expected) * STEPS
