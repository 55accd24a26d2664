"""A PostgreSQL server that stops under running sagas: callers get the framework's errors.

The server is a private one (``tests.support.postgres_server``), really stopped mid-run.
"""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest

from dotmac_shared.business_logic import BusinessLogicError, PersistenceError, SagaError
from dotmac_shared.business_logic.persistence import create_session_factory, engine_of
from dotmac_shared.business_logic.sagas import (
    SagaContext,
    SagaCoordinator,
    SagaDefinition,
    SagaStep,
    StepContext,
)
from tests.support.postgres_server import PostgresServer, throwaway_postgres

__all__ = ["throwaway_postgres"]

pytestmark = pytest.mark.reliability

IN_FLIGHT = 20
LEASE = 1.0


@pytest.mark.timeout(120)
async def test_every_in_flight_saga_ends_in_a_framework_error_when_postgres_stops(
    throwaway_postgres: PostgresServer,
):
    factory = create_session_factory(throwaway_postgres.url)
    in_step = 0
    all_in_step = asyncio.Event()

    async def slow(ctx: StepContext) -> dict:
        nonlocal in_step
        if ctx.step_name == "a":
            in_step += 1
            if in_step == IN_FLIGHT:
                all_in_step.set()
        await asyncio.sleep(0.3)
        return {ctx.step_name: True}

    coordinator = SagaCoordinator(factory, lease_seconds=LEASE)
    coordinator.register_saga(
        SagaDefinition(
            name="outage",
            steps=[SagaStep(name=name, execute=slow) for name in ("a", "b", "c", "d")],
        )
    )
    runs = [
        asyncio.create_task(
            coordinator.execute_saga(saga_name="outage", context=SagaContext(str(uuid4())))
        )
        for _ in range(IN_FLIGHT)
    ]
    try:
        await asyncio.wait_for(all_in_step.wait(), 20)
        await asyncio.to_thread(throwaway_postgres.stop, "fast")
        outcomes = await asyncio.wait_for(asyncio.gather(*runs, return_exceptions=True), 30)
        late = await asyncio.gather(
            *(
                coordinator.execute_saga(saga_name="outage", context=SagaContext(str(uuid4())))
                for _ in range(3)
            ),
            return_exceptions=True,
        )
    finally:
        for run in runs:
            run.cancel()
        await engine_of(factory).dispose()
    raw = [o for o in outcomes + late if not isinstance(o, BusinessLogicError)]
    assert raw == [], f"{len(raw)} calls did not end in a framework error: {raw!r}"
    assert all(isinstance(o, PersistenceError) for o in late)
    # A saga in flight stops when its lease can no longer be kept (SagaLeaseLostError, the
    # driver's error chained); a saga started after the stop cannot even be created.
    assert all(isinstance(o, SagaError | PersistenceError) for o in outcomes), outcomes
