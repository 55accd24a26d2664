"""A worker that cannot keep its lease stops the step before another worker may take it.

The unit-level tests run on both databases with a store whose renewals go to a database that
cannot be opened (a real ``PersistenceError``). The reliability tests cause the faults for
real on PostgreSQL: the first worker's connections are terminated (``pg_terminate_backend``),
or its network path is cut (a loopback TCP proxy). Every execution of the long step records
when it started and ended; no two may overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from dotmac_shared.business_logic import SagaLeaseLostError, create_session_factory
from dotmac_shared.business_logic.persistence import create_engine, engine_of
from dotmac_shared.business_logic.sagas import (
    ALL_TENANTS,
    SagaContext,
    SagaCoordinator,
    SagaDefinition,
    SagaStep,
    SqlSagaStore,
    StepContext,
)
from tests.support.tcp_proxy import TcpProxy

LEASE = 1.0


@dataclasses.dataclass
class Execution:
    worker: str
    start: float
    end: float | None = None


class Executions:
    """Start and end (monotonic) of every execution of the long step, by worker."""

    def __init__(self) -> None:
        self.runs: list[Execution] = []
        self.started = asyncio.Event()

    def definition(self, worker: str, seconds: float, *, ignore_cancel: bool = False):
        async def long_step(ctx: StepContext) -> dict:
            run = Execution(worker, time.monotonic())
            self.runs.append(run)
            self.started.set()
            try:
                await asyncio.sleep(seconds)
            except asyncio.CancelledError:
                if not ignore_cancel:
                    raise
            finally:
                run.end = time.monotonic()
            return {"done_by": worker}

        return SagaDefinition(name="long", steps=[SagaStep(name="long", execute=long_step)])

    def by(self, worker: str) -> list[Execution]:
        return [run for run in self.runs if run.worker == worker]

    def assert_no_overlap(self) -> None:
        ordered = sorted(self.runs, key=lambda run: run.start)
        assert all(run.end is not None for run in ordered), ordered
        for before, after in zip(ordered, ordered[1:], strict=False):
            assert before.end <= after.start, f"step ran on two workers at once: {ordered}"


def worker(factory, executions: Executions, name: str, seconds: float, **kwargs):
    coordinator = SagaCoordinator(factory, lease_seconds=LEASE, owner_id=name, **kwargs)
    coordinator.register_saga(executions.definition(name, seconds))
    return coordinator


class UnrenewableStore(SqlSagaStore):
    """The saga store, except that renewals go to a database that cannot be opened."""

    def __init__(self, session_factory, broken_url: str, failures: int | None = None) -> None:
        super().__init__(session_factory)
        self._broken = SqlSagaStore(create_engine(broken_url))
        self.failures = failures  # None: every renewal fails
        self.renewals = 0

    async def renew(self, saga_id: str, owner: str, lease_seconds: float) -> bool:
        self.renewals += 1
        if self.failures is None or self.renewals <= self.failures:
            return await self._broken.renew(saga_id, owner, lease_seconds)
        return await super().renew(saga_id, owner, lease_seconds)


def unopenable(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'missing-folder' / 'saga.db'}"


async def test_renewal_is_retried_and_the_step_goes_on_when_the_database_comes_back(
    session_factory, tmp_path
):
    executions = Executions()
    store = UnrenewableStore(session_factory, unopenable(tmp_path), failures=2)
    coordinator = worker(session_factory, executions, "w1", seconds=LEASE * 1.5, store=store)
    result = await coordinator.execute_saga(saga_name="long", context=SagaContext(str(uuid4())))
    assert result["status"] == "completed"
    assert result["step_results"] == {"long": {"done_by": "w1"}}
    assert store.renewals > 2  # two failed, then renewed


async def test_step_is_cancelled_before_the_lease_expires_when_it_cannot_be_renewed(
    session_factory, tmp_path
):
    executions = Executions()
    store = UnrenewableStore(session_factory, unopenable(tmp_path))
    coordinator = worker(session_factory, executions, "w1", seconds=30, store=store)
    saga_id = str(uuid4())
    started = time.monotonic()
    with pytest.raises(SagaLeaseLostError, match="lease lost") as caught:
        await coordinator.execute_saga(saga_name="long", context=SagaContext(saga_id))
    assert time.monotonic() - started < LEASE
    [run] = executions.runs
    assert run.end - run.start < LEASE  # stopped before its lease could pass to another
    assert caught.value.saga_id == saga_id
    saga = await coordinator.get_saga(saga_id, tenant_id=ALL_TENANTS)
    assert saga["status"] == "running" and saga["steps"][0]["status"] == "running"


async def test_result_of_a_step_ignoring_cancellation_is_discarded_when_the_lease_is_lost(
    session_factory, tmp_path
):
    executions = Executions()
    store = UnrenewableStore(session_factory, unopenable(tmp_path))
    coordinator = SagaCoordinator(session_factory, lease_seconds=LEASE, store=store)
    coordinator.register_saga(executions.definition("w1", 30, ignore_cancel=True))
    saga_id = str(uuid4())
    with pytest.raises(SagaLeaseLostError):
        await coordinator.execute_saga(saga_name="long", context=SagaContext(saga_id))
    saga = await coordinator.get_saga(saga_id, tenant_id=ALL_TENANTS)
    assert saga["status"] == "running" and saga["steps"][0]["result"] is None


# --- real faults, PostgreSQL ------------------------------------------------------------------


async def _recover_every(coordinator: SagaCoordinator, seconds: float, stop: asyncio.Event):
    while not stop.is_set():
        await coordinator.recover()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)


async def _until_finished(coordinator: SagaCoordinator, saga_id: str, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        saga = await coordinator.get_saga(saga_id, tenant_id=ALL_TENANTS)
        if saga["status"] not in ("running", "compensating"):
            return saga
        await coordinator.recover()
        await asyncio.sleep(0.1)
    raise AssertionError(f"saga {saga_id} did not finish in {seconds} s")


@pytest.mark.reliability
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_step_never_runs_twice_at_once_when_the_first_workers_connections_are_killed(
    session_factory, database_url
):
    app = f"w1-{uuid4().hex[:8]}"
    w1_factory = create_session_factory(
        database_url,
        migrate=False,
        connect_args={"server_settings": {"application_name": app}},
    )
    executions = Executions()
    first = worker(w1_factory, executions, "w1", seconds=4 * LEASE)
    second = worker(session_factory, executions, "w2", seconds=4 * LEASE)
    saga_id = str(uuid4())
    admin = await asyncpg.connect(
        make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    stop = asyncio.Event()
    try:
        run = asyncio.create_task(
            first.execute_saga(saga_name="long", context=SagaContext(saga_id))
        )
        await asyncio.wait_for(executions.started.wait(), 10)
        recovering = asyncio.create_task(_recover_every(second, 1.0, stop))
        killed = 0
        while not run.done():
            rows = await admin.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = $1",
                app,
            )
            killed += len(rows)
            await asyncio.wait({run}, timeout=0.3)
        outcome = await asyncio.gather(run, return_exceptions=True)
        stop.set()
        await recovering
        saga = await _until_finished(second, saga_id, 10)
    finally:
        stop.set()
        await admin.close()
        await engine_of(w1_factory).dispose()
    assert killed > 0
    executions.assert_no_overlap()
    [result] = outcome
    if isinstance(result, BaseException):
        assert isinstance(result, SagaLeaseLostError), repr(result)
    else:
        assert result["status"] == "completed" == saga["status"]
    assert saga["status"] == "completed"


@pytest.mark.reliability
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_step_stops_before_the_lease_expires_when_the_first_worker_is_partitioned(
    session_factory, database_url
):
    url = make_url(database_url)
    proxy = await TcpProxy.start(url.host or "127.0.0.1", url.port or 5432)
    w1_factory = create_session_factory(
        url.set(port=proxy.port).render_as_string(hide_password=False), migrate=False
    )
    executions = Executions()
    first = worker(w1_factory, executions, "w1", seconds=4 * LEASE)
    second = worker(session_factory, executions, "w2", seconds=LEASE / 2)
    saga_id = str(uuid4())
    stop = asyncio.Event()
    try:
        run = asyncio.create_task(
            first.execute_saga(saga_name="long", context=SagaContext(saga_id))
        )
        await asyncio.wait_for(executions.started.wait(), 10)
        await proxy.cut()
        recovering = asyncio.create_task(_recover_every(second, 0.2, stop))
        [outcome] = await asyncio.wait_for(asyncio.gather(run, return_exceptions=True), 10)
        saga = await _until_finished(second, saga_id, 10)
        stop.set()
        await recovering
    finally:
        stop.set()
        await proxy.close()
        await engine_of(w1_factory).dispose()
    assert isinstance(outcome, SagaLeaseLostError), repr(outcome)
    [mine] = executions.by("w1")
    assert mine.end - mine.start < LEASE  # cancelled before the lease could expire
    assert executions.by("w2"), "the second worker never took the saga over"
    executions.assert_no_overlap()
    assert saga["status"] == "completed"
    assert saga["step_results"] == {"long": {"done_by": "w2"}}
