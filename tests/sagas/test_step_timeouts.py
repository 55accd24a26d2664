"""A step that outlives its timeout is timed out, whatever it hands back afterwards."""

from __future__ import annotations

import asyncio
import time
from uuid import uuid4

from dotmac_shared.business_logic.sagas import (
    ALL_TENANTS,
    RetryPolicy,
    SagaContext,
    SagaCoordinator,
    SagaDefinition,
    SagaStep,
    StepContext,
)
from tests.sagas.steps import create_effects_table, effects, record, unrecord

TIMEOUT = 0.1


async def stubborn(ctx: StepContext) -> dict:
    """Ignores its cancellation: catches it and returns a result anyway."""
    try:
        await asyncio.sleep(5)
    except asyncio.CancelledError:
        return {"late": True}
    return {"late": False}


async def blocking(ctx: StepContext) -> dict:
    """Blocks the event loop past its timeout (a synchronous call inside the coroutine)."""
    time.sleep(TIMEOUT * 3)
    return {"late": True}


def saga(name: str, step, retry: RetryPolicy | None = None) -> SagaDefinition:
    options = {"retry": retry} if retry is not None else {}
    return SagaDefinition(
        name=name,
        steps=[
            SagaStep(name="first", execute=record, compensate=unrecord),
            SagaStep(name="late", execute=step, timeout=TIMEOUT, **options),
        ],
    )


async def run(session_factory, definition: SagaDefinition) -> dict:
    await create_effects_table(session_factory)
    coordinator = SagaCoordinator(session_factory, lease_seconds=5)
    coordinator.register_saga(definition)
    result = await coordinator.execute_saga(
        saga_name=definition.name, context=SagaContext(str(uuid4()))
    )
    return await coordinator.get_saga(result["saga_id"], tenant_id=ALL_TENANTS)


async def test_step_ignoring_cancellation_is_timed_out_when_it_returns_after_its_timeout(
    session_factory,
):
    saga_view = await run(session_factory, saga("stubborn", stubborn))
    assert saga_view["status"] == "compensated"
    assert f"took longer than {TIMEOUT}s" in saga_view["error"]["message"]
    late = saga_view["steps"][1]
    assert late["status"] != "completed" and late["result"] is None
    assert "late" not in saga_view["step_results"]
    assert await effects(session_factory) == []  # the first step was compensated


async def test_step_blocking_past_its_timeout_is_timed_out_when_it_returns_a_result(
    session_factory,
):
    saga_view = await run(session_factory, saga("blocking", blocking))
    assert saga_view["status"] == "compensated"
    assert f"took longer than {TIMEOUT}s" in saga_view["error"]["message"]
    assert saga_view["steps"][1]["result"] is None


async def test_late_step_is_retried_per_its_policy_when_its_result_was_discarded(
    session_factory,
):
    calls = []

    async def late_once(ctx: StepContext) -> dict:
        calls.append(ctx.attempt)
        if ctx.attempt == 1:
            time.sleep(TIMEOUT * 3)  # blocks past the timeout: this result is discarded
            return {"attempt": 1}
        return {"attempt": ctx.attempt}

    policy = RetryPolicy(max_attempts=3, initial_delay=0.001, retry_on=(TimeoutError,))
    saga_view = await run(session_factory, saga("retried", late_once, policy))
    assert saga_view["status"] == "completed"
    assert calls == [1, 2]
    assert saga_view["step_results"]["late"] == {"attempt": 2}
