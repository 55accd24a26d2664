"""``dotmac-bl worker`` outlives a PostgreSQL restart and then recovers abandoned sagas.

The server is a private one (``tests.support.postgres_server``), really stopped and started
under the running worker process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from dotmac_shared.business_logic.clock import SYSTEM_CLOCK
from dotmac_shared.business_logic.operations import ServiceProvisioningSaga, seed_demo_data
from dotmac_shared.business_logic.persistence import create_session_factory, engine_of
from dotmac_shared.business_logic.sagas import SagaContext, SagaCoordinator, StepContext
from tests.cli.helpers import SEEDED_CUSTOMERS, SERVICE_REQUEST
from tests.support.postgres_server import PostgresServer

pytestmark = pytest.mark.reliability

DEAD_LEASE = 30.0
SAGAS = 2


async def _seed(url: str) -> None:
    factory = create_session_factory(url)
    try:
        await seed_demo_data(factory, customers=SEEDED_CUSTOMERS)
    finally:
        await engine_of(factory).dispose()


async def _abandon(url: str, count: int) -> list[str]:
    """Start service provisioning sagas whose worker "dies" mid-step, then expire their leases.

    The leases are valid while each saga starts (so the running worker cannot take one over
    before its step has begun), and are moved into the past once the "dead" worker stopped:
    no waiting for them to run out.
    """
    started = asyncio.Event()

    async def hang(ctx: StepContext) -> dict:
        started.set()
        await asyncio.Event().wait()  # never returns: the worker dies here
        return {}

    shipped = ServiceProvisioningSaga.create_definition()
    steps = [
        dataclasses.replace(step, execute=hang) if step.name == "configure_service" else step
        for step in shipped.steps
    ]
    factory = create_session_factory(url, migrate=False)
    saga_ids = []
    try:
        dead = SagaCoordinator(factory, lease_seconds=DEAD_LEASE)
        dead.register_saga(dataclasses.replace(shipped, steps=steps))
        for _ in range(count):
            started.clear()
            saga_id = f"abandoned-{uuid.uuid4().hex[:8]}"
            task = asyncio.create_task(
                dead.execute_saga(
                    saga_name=ServiceProvisioningSaga.name,
                    context=SagaContext(saga_id=saga_id, tenant_id="tenant123", user_id="op"),
                    initial_data=SERVICE_REQUEST,
                )
            )
            await asyncio.wait_for(started.wait(), 10)
            task.cancel()  # no more lease renewals, nothing released
            await asyncio.gather(task, return_exceptions=True)
            saga_ids.append(saga_id)
        async with engine_of(factory).begin() as conn:
            await conn.execute(
                text(
                    "UPDATE saga_executions SET lease_expires_at = :past WHERE saga_id = ANY(:ids)"
                ),
                {"past": SYSTEM_CLOCK.now() - dt.timedelta(seconds=DEAD_LEASE), "ids": saga_ids},
            )
    finally:
        await engine_of(factory).dispose()
    return saga_ids


async def _statuses(url: str, saga_ids: list[str]) -> list[str]:
    factory = create_session_factory(url, migrate=False)
    try:
        async with factory() as session:
            rows = await session.execute(
                text("SELECT saga_id, status FROM saga_executions"),
            )
            found = dict(rows.all())
    finally:
        await engine_of(factory).dispose()
    return [found.get(saga_id, "missing") for saga_id in saga_ids]


def _wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(120)
def test_worker_survives_a_database_restart_and_then_completes_abandoned_sagas(tmp_path: Path):
    with PostgresServer() as server:
        asyncio.run(_seed(server.url))
        out, err = tmp_path / "worker.out", tmp_path / "worker.err"
        command = [
            str(Path(sys.executable).with_name("dotmac-bl")),
            "worker",
            "--database-url",
            server.url,
            "--lease-seconds",
            "5",
            "--poll-interval",
            "0.2",
            "--max-backoff",
            "0.5",
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
        with out.open("w") as stdout, err.open("w") as stderr:
            worker = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env)
        try:
            _wait_for(lambda: "started" in out.read_text(), 30, "the worker to start")
            server.stop("fast")
            time.sleep(3)  # the worker's passes fail meanwhile
            assert worker.poll() is None, err.read_text()
            server.start()
            saga_ids = asyncio.run(_abandon(server.url, SAGAS))
            _wait_for(
                lambda: asyncio.run(_statuses(server.url, saga_ids)) == ["completed"] * SAGAS,
                30,
                "the worker to complete the abandoned sagas",
            )
            assert worker.poll() is None, err.read_text()
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                code = worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
                raise
    assert code == 0, err.read_text()
    assert f"worker stopped after recovering {SAGAS} sagas" in out.read_text()
    logged = err.read_text()
    assert "saga recovery pass failed" in logged and "Traceback" in logged
