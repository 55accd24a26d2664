"""The recovery worker keeps going when a pass fails, and recovers once the database is back."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from dotmac_shared.business_logic.clock import ManualClock
from dotmac_shared.business_logic.persistence import create_engine, engine_of
from dotmac_shared.business_logic.sagas import (
    ALL_TENANTS,
    SagaContext,
    SagaCoordinator,
    SagaDefinition,
    SagaStep,
    SagaWorker,
    SqlSagaStore,
    StepContext,
)
from tests.sagas.steps import REFUSE_BOOM

LEASE = 30.0
FAILED_PASSES = 3


class FlakyStore(SqlSagaStore):
    """The saga store, except that the first scans for expired leases hit a database that
    cannot be opened (a real PersistenceError)."""

    def __init__(self, session_factory, broken_url: str, clock: ManualClock) -> None:
        super().__init__(session_factory, clock=clock)
        self._broken = SqlSagaStore(create_engine(broken_url), clock=clock)
        self.scans = 0

    async def claim_expired(
        self, owner: str, lease_seconds: float, limit: int, **kwargs: Any
    ) -> list[str]:
        self.scans += 1
        if self.scans <= FAILED_PASSES:
            return await self._broken.claim_expired(owner, lease_seconds, limit, **kwargs)
        return await super().claim_expired(owner, lease_seconds, limit, **kwargs)


def definition(step) -> SagaDefinition:
    return SagaDefinition(name="worked", steps=[SagaStep(name="only", execute=step)])


async def abandon(session_factory, clock: ManualClock) -> str:
    """Start a saga whose worker "dies" mid-step; return its id (its lease still runs)."""
    started = asyncio.Event()

    async def hang(ctx: StepContext) -> dict:
        started.set()
        await asyncio.Event().wait()
        return {}

    dead = SagaCoordinator(session_factory, lease_seconds=LEASE, clock=clock)
    dead.register_saga(definition(hang))
    saga_id = str(uuid4())
    task = asyncio.create_task(dead.execute_saga(saga_name="worked", context=SagaContext(saga_id)))
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return saga_id


async def test_worker_logs_backs_off_and_recovers_when_passes_fail(
    session_factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    clock = ManualClock()
    saga_id = await abandon(session_factory, clock)
    clock.advance(LEASE + 1)

    async def finish(ctx: StepContext) -> dict:
        return {"finished": True}

    store = FlakyStore(session_factory, f"sqlite+aiosqlite:///{tmp_path / 'gone' / 'x.db'}", clock)
    coordinator = SagaCoordinator(session_factory, lease_seconds=LEASE, store=store, clock=clock)
    coordinator.register_saga(definition(finish))
    worker = SagaWorker(coordinator, poll_interval=0.01)
    caplog.set_level(logging.ERROR, logger="dotmac_shared.business_logic.sagas._worker")
    running = asyncio.create_task(worker.run())
    try:
        for _ in range(500):
            if (await coordinator.get_saga(saga_id, tenant_id=ALL_TENANTS))[
                "status"
            ] == "completed":
                break
            assert not running.done(), running
            await asyncio.sleep(0.01)
        assert (await coordinator.get_saga(saga_id, tenant_id=ALL_TENANTS))["status"] == "completed"
        assert not running.done()
    finally:
        worker.stop()
        recovered = await asyncio.wait_for(running, 10)
    assert recovered == 1 and worker.failures == FAILED_PASSES
    failures = [r for r in caplog.records if "recovery pass failed" in r.getMessage()]
    assert len(failures) == FAILED_PASSES
    assert all(r.exc_info is not None for r in failures)  # logged with the traceback


async def test_recovery_pass_finishes_every_other_saga_when_one_cannot_be_written(
    session_factory, caplog: pytest.LogCaptureFixture
):
    engine = engine_of(session_factory)
    async with engine.begin() as conn:  # the database refuses to record step "boom" as done
        for ddl in REFUSE_BOOM[engine.dialect.name]:
            await conn.exec_driver_sql(ddl)
    clock = ManualClock()
    names = ["fine", "boom", "fine"]
    ids = []
    for name in names:
        started = asyncio.Event()

        async def hang(ctx: StepContext, started=started) -> dict:
            started.set()
            await asyncio.Event().wait()
            return {}

        dead = SagaCoordinator(session_factory, lease_seconds=LEASE, clock=clock)
        dead.register_saga(SagaDefinition(name=name, steps=[SagaStep(name=name, execute=hang)]))
        saga_id = str(uuid4())
        task = asyncio.create_task(dead.execute_saga(saga_name=name, context=SagaContext(saga_id)))
        await asyncio.wait_for(started.wait(), 10)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        ids.append(saga_id)
    clock.advance(LEASE + 1)

    async def finish(ctx: StepContext) -> dict:
        return {"finished": True}

    rescuer = SagaCoordinator(session_factory, lease_seconds=LEASE, clock=clock)
    for name in ("fine", "boom"):
        rescuer.register_saga(
            SagaDefinition(name=name, steps=[SagaStep(name=name, execute=finish)])
        )
    caplog.set_level(logging.ERROR, logger="dotmac_shared.business_logic.sagas._coordinator")
    assert await rescuer.recover() == 3  # the bad saga does not fail the whole pass
    statuses = [
        (await rescuer.get_saga(saga_id, tenant_id=ALL_TENANTS))["status"] for saga_id in ids
    ]
    assert statuses == ["completed", "running", "completed"]
    [logged] = [r for r in caplog.records if "recovery of saga" in r.getMessage()]
    assert ids[1] in logged.getMessage() and logged.exc_info is not None
