"""Fixtures of the command-line tests: a tmp SQLite file, seeded data, an abandoned saga."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dotmac_shared.business_logic.clock import SYSTEM_CLOCK, ManualClock
from dotmac_shared.business_logic.operations import ServiceProvisioningSaga, seed_demo_data
from dotmac_shared.business_logic.persistence import create_session_factory, engine_of
from dotmac_shared.business_logic.sagas import SagaContext, SagaCoordinator, StepContext
from tests.cli.helpers import DEAD_LEASE, SEEDED_CUSTOMERS, SERVICE_REQUEST


@pytest.fixture
def runner() -> CliRunner:
    # Wide enough that Rich does not wrap table cells or lines.
    return CliRunner(env={"COLUMNS": "200"})


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


async def _seed(url: str, customers: int) -> None:
    factory = create_session_factory(url)
    try:
        await seed_demo_data(factory, customers=customers)
    finally:
        await engine_of(factory).dispose()


@pytest.fixture
def seeded_url(db_url: str) -> str:
    """A migrated database with the demo tenant, plans and a few billable customers."""
    asyncio.run(_seed(db_url, SEEDED_CUSTOMERS))
    return db_url


async def _abandon(url: str) -> str:
    """Start a service provisioning saga whose worker "dies" inside configure_service."""
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
    factory = create_session_factory(url)
    try:
        # The dead worker's clock runs a minute behind: the lease it writes has expired by
        # every other worker's clock, so nobody waits for it to run out.
        behind = ManualClock(SYSTEM_CLOCK.now() - dt.timedelta(minutes=1))
        dead = SagaCoordinator(factory, lease_seconds=DEAD_LEASE, clock=behind)
        dead.register_saga(dataclasses.replace(shipped, steps=steps))
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
        return saga_id
    finally:
        await engine_of(factory).dispose()


@pytest.fixture
def abandoned_saga(seeded_url: str) -> str:
    """The id of a service provisioning saga left running with an expired lease."""
    return asyncio.run(_abandon(seeded_url))
