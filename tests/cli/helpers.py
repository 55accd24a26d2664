"""Constants, assertions and set-ups shared by the command-line tests."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid

from sqlalchemy import update

from dotmac_shared.business_logic.clock import SYSTEM_CLOCK
from dotmac_shared.business_logic.operations import ServiceProvisioningSaga
from dotmac_shared.business_logic.persistence import create_session_factory, engine_of
from dotmac_shared.business_logic.persistence.models import SagaExecution
from dotmac_shared.business_logic.sagas import SagaContext, SagaCoordinator, StepContext

SEEDED_CUSTOMERS = 12
SERVICE_REQUEST = {
    "customer_id": "cust789",
    "service_type": "internet",
    "plan": "standard",
    "billing_period": "monthly",
}


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def flat(text: str) -> str:
    """Output with runs of whitespace collapsed (Rich pads and may wrap)."""
    return " ".join(text.split())


async def abandon_service_sagas(url: str, count: int = 1) -> list[str]:
    """Start service provisioning sagas whose worker "dies" in configure_service.

    Each lease is valid while its saga starts (so a running worker cannot take the saga
    over before its step has begun) and is moved into the past once the "dead" worker has
    stopped: the sagas are abandoned at once, nobody waits for a lease to run out.
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
    factory = create_session_factory(url)
    saga_ids: list[str] = []
    try:
        dead = SagaCoordinator(factory, lease_seconds=60)
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
                update(SagaExecution)
                .where(SagaExecution.saga_id.in_(saga_ids))
                .values(lease_expires_at=SYSTEM_CLOCK.now() - dt.timedelta(minutes=1))
            )
    finally:
        await engine_of(factory).dispose()
    return saga_ids
