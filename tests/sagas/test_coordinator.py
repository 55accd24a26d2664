from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest

from dotmac_shared.business_logic import (
    InvalidInputError,
    SagaDefinitionError,
    SagaError,
    SagaNotFoundError,
)
from dotmac_shared.business_logic.clock import ManualClock
from dotmac_shared.business_logic.sagas import (
    ALL_TENANTS,
    RetryPolicy,
    SagaContext,
    SagaCoordinator,
    SagaDefinition,
    SagaStatus,
    SagaStep,
)
from tests.sagas.steps import create_effects_table, effects, record, recording_saga, unrecord


@pytest.fixture
async def coordinator(session_factory):
    await create_effects_table(session_factory)
    return SagaCoordinator(session_factory, lease_seconds=5)


def ctx(saga_id: str | None = None, tenant: str = "tenant123") -> SagaContext:
    return SagaContext(saga_id=saga_id or str(uuid4()), tenant_id=tenant, user_id="user456")


async def test_spec_example_shape_completes_every_step_in_order(coordinator, session_factory):
    seen = []

    async def activate(step_ctx):
        seen.append(dict(step_ctx.data))
        await record(step_ctx)
        return {"service_id": f"svc-{step_ctx.data['customer_id']}"}

    coordinator.register_saga(
        SagaDefinition(
            name="service_provisioning",
            steps=[
                SagaStep(name="validate_request", execute=record, compensate=unrecord),
                SagaStep(name="activate_service", execute=activate, compensate=unrecord),
            ],
        )
    )
    context = ctx()
    result = await coordinator.execute_saga(
        saga_name="service_provisioning",
        context=context,
        initial_data={"customer_id": "cust789", "service_type": "internet"},
    )
    assert result["status"] == "completed"
    assert result["step_results"]["activate_service"]["service_id"] == "svc-cust789"
    assert result["compensated_steps"] == [] and result["error"] is None
    assert seen == [
        {"customer_id": "cust789", "service_type": "internet", "validate_request_done": True}
    ]
    assert await effects(session_factory, context.saga_id) == [
        f"{context.saga_id}:activate_service",
        f"{context.saga_id}:validate_request",
    ]


async def test_failed_step_compensates_completed_steps_in_reverse(coordinator, session_factory):
    coordinator.register_saga(recording_saga(fail_at="step_3"))
    context = ctx()
    result = await coordinator.execute_saga(saga_name="recording", context=context, initial_data={})
    assert result["status"] == "compensated"
    assert result["failed_step"] == "step_3" and "step_3 exploded" in result["error"]["message"]
    # The failed step took effect before failing, so it is compensated too, first.
    assert result["compensated_steps"] == ["step_3", "step_2", "step_1"]
    assert await effects(session_factory) == []
    saga = await coordinator.get_saga(context.saga_id, tenant_id=context.tenant_id)
    assert [s["status"] for s in saga["steps"]] == ["compensated"] * 3
    assert saga["lease_owner"] is None


async def test_retryable_step_succeeds_on_a_later_attempt(coordinator):
    calls = []

    async def flaky(step_ctx):
        calls.append(step_ctx.attempt)
        if len(calls) < 3:
            raise ConnectionError("try again")
        return {"ok": True}

    coordinator.register_saga(
        SagaDefinition(
            name="flaky",
            steps=[
                SagaStep(
                    name="flaky",
                    execute=flaky,
                    retry=RetryPolicy(max_attempts=3, initial_delay=0.001),
                )
            ],
        )
    )
    context = ctx()
    result = await coordinator.execute_saga(saga_name="flaky", context=context)
    assert result["status"] == "completed" and calls == [1, 2, 3]


async def test_non_retryable_error_is_not_retried(coordinator):
    calls = []

    async def broken(step_ctx):
        calls.append(1)
        raise KeyError("bug")

    policy = RetryPolicy(max_attempts=5, initial_delay=0.001, retry_on=(ConnectionError,))
    coordinator.register_saga(
        SagaDefinition(name="broken", steps=[SagaStep(name="b", execute=broken, retry=policy)])
    )
    result = await coordinator.execute_saga(saga_name="broken", context=ctx())
    assert result["status"] == "compensated" and calls == [1]


async def test_step_timeout_fails_the_step_and_compensates(coordinator, session_factory):
    async def slow(step_ctx):
        await asyncio.sleep(5)

    coordinator.register_saga(
        SagaDefinition(
            name="slow",
            steps=[
                SagaStep(name="first", execute=record, compensate=unrecord),
                SagaStep(name="slow", execute=slow, timeout=0.1),
            ],
        )
    )
    result = await coordinator.execute_saga(saga_name="slow", context=ctx())
    assert result["status"] == "compensated"
    assert "took longer than 0.1s" in result["error"]["message"]
    assert await effects(session_factory) == []


async def test_saga_timeout_compensates_with_a_timeout_error(coordinator):
    async def slow(step_ctx):
        await asyncio.sleep(5)

    coordinator.register_saga(
        SagaDefinition(
            name="slow_saga",
            timeout=0.2,
            steps=[
                SagaStep(name="slow", execute=slow, retry=RetryPolicy(max_attempts=5)),
            ],
        )
    )
    result = await coordinator.execute_saga(saga_name="slow_saga", context=ctx())
    assert result["status"] == "compensated" and result["error"]["code"] == "saga_timeout"


async def test_compensation_failing_twice_then_succeeding_ends_compensated(coordinator):
    attempts = []

    async def shaky_undo(step_ctx):
        attempts.append(step_ctx.attempt)
        if len(attempts) < 3:
            raise ConnectionError("undo later")

    async def boom(step_ctx):
        raise RuntimeError("boom")

    coordinator.register_saga(
        SagaDefinition(
            name="shaky",
            steps=[
                SagaStep(
                    name="a",
                    execute=record,
                    compensate=shaky_undo,
                    compensation_retry=RetryPolicy(max_attempts=3, initial_delay=0.001),
                ),
                SagaStep(name="b", execute=boom),
            ],
        )
    )
    result = await coordinator.execute_saga(saga_name="shaky", context=ctx())
    assert result["status"] == "compensated" and attempts == [1, 2, 3]
    assert result["compensated_steps"] == ["a"]


async def test_compensation_that_always_fails_needs_a_person_then_resumes(
    coordinator, session_factory
):
    broken = {"on": True}

    async def undo(step_ctx):
        if broken["on"]:
            raise ConnectionError("billing system down")
        await unrecord(step_ctx)

    async def boom(step_ctx):
        raise RuntimeError("boom")

    coordinator.register_saga(
        SagaDefinition(
            name="stuck",
            steps=[
                SagaStep(
                    name="a",
                    execute=record,
                    compensate=undo,
                    compensation_retry=RetryPolicy(max_attempts=2, initial_delay=0.001),
                ),
                SagaStep(name="b", execute=boom),
            ],
        )
    )
    context = ctx()
    result = await coordinator.execute_saga(saga_name="stuck", context=context)
    assert result["status"] == "compensation_failed"
    assert "billing system down" in result["compensation_error"]["message"]
    saga = await coordinator.get_saga(context.saga_id, tenant_id=context.tenant_id)
    assert saga["steps"][0]["status"] == "compensation_failed"
    assert await effects(session_factory) == [f"{context.saga_id}:a"]
    # Nothing runs it again on its own...
    assert await coordinator.recover() == 0
    # ...until an operator fixes the cause and resumes it.
    broken["on"] = False
    resumed = await coordinator.resume_saga(context.saga_id, tenant_id=context.tenant_id)
    assert resumed["status"] == "compensated"
    assert await effects(session_factory) == []


async def test_finished_saga_id_returns_stored_result_without_running_again(coordinator):
    calls = []

    async def counted(step_ctx):
        calls.append(1)
        return {"n": len(calls)}

    coordinator.register_saga(
        SagaDefinition(name="once", steps=[SagaStep(name="a", execute=counted)])
    )
    context = ctx()
    first = await coordinator.execute_saga(saga_name="once", context=context, initial_data={"x": 1})
    again = await coordinator.execute_saga(saga_name="once", context=context, initial_data={"x": 1})
    assert first == again and calls == [1]


async def test_same_id_for_another_saga_is_refused(coordinator):
    coordinator.register_saga(recording_saga("one", steps=1))
    coordinator.register_saga(recording_saga("two", steps=1))
    context = ctx()
    await coordinator.execute_saga(saga_name="one", context=context)
    with pytest.raises(SagaError, match="belongs to a one saga"):
        await coordinator.execute_saga(saga_name="two", context=context)


async def test_unknown_saga_name_lists_the_registered_ones(coordinator):
    coordinator.register_saga(recording_saga("known", steps=1))
    with pytest.raises(SagaDefinitionError, match="registered: known"):
        await coordinator.execute_saga(saga_name="nope", context=ctx())


@pytest.mark.parametrize("data", [["a", "list"], {"when": object()}, {"nan": float("nan")}])
async def test_bad_initial_data_is_refused_before_anything_is_stored(coordinator, data):
    coordinator.register_saga(recording_saga("s", steps=1))
    context = ctx()
    with pytest.raises(InvalidInputError) as info:
        await coordinator.execute_saga(saga_name="s", context=context, initial_data=data)
    assert info.value.field == "initial_data"
    with pytest.raises(SagaNotFoundError):
        await coordinator.get_saga(context.saga_id, tenant_id=context.tenant_id)


async def test_step_returning_a_non_mapping_fails_clearly(coordinator):
    async def wrong(step_ctx):
        return ["not", "a", "dict"]

    coordinator.register_saga(
        SagaDefinition(name="wrong", steps=[SagaStep(name="w", execute=wrong)])
    )
    result = await coordinator.execute_saga(saga_name="wrong", context=ctx())
    assert result["status"] == "compensated"
    assert "step w result must be a mapping" in result["error"]["message"]


async def test_sync_step_is_a_definition_error_and_not_retried(coordinator):
    calls = []

    def not_async(step_ctx):
        calls.append(1)
        return {}

    coordinator.register_saga(
        SagaDefinition(
            name="sync",
            steps=[SagaStep(name="s", execute=not_async, retry=RetryPolicy(max_attempts=3))],  # type: ignore[arg-type]
        )
    )
    result = await coordinator.execute_saga(saga_name="sync", context=ctx())
    assert "must be async" in result["error"]["message"] and calls == [1]


async def test_list_and_get_by_tenant_and_status(coordinator):
    coordinator.register_saga(recording_saga("ok", steps=1))
    coordinator.register_saga(recording_saga("bad", steps=2, fail_at="step_2"))
    await coordinator.execute_saga(saga_name="ok", context=ctx(tenant="t1"))
    await coordinator.execute_saga(saga_name="bad", context=ctx(tenant="t1"))
    await coordinator.execute_saga(saga_name="ok", context=ctx(tenant="t2"))
    assert len(await coordinator.list_sagas(tenant_id="t1")) == 2
    compensated = await coordinator.list_sagas(tenant_id="t1", status=SagaStatus.COMPENSATED)
    assert [s["saga_name"] for s in compensated] == ["bad"]
    assert len(await coordinator.list_sagas(tenant_id=ALL_TENANTS, status="completed")) == 2
    with pytest.raises(InvalidInputError):
        await coordinator.list_sagas(tenant_id="t1", status="sleeping")
    with pytest.raises(SagaNotFoundError):
        await coordinator.get_saga("missing", tenant_id="t1")


async def test_abandoned_saga_is_resumed_forward_by_another_worker(session_factory):
    await create_effects_table(session_factory)
    started = asyncio.Event()
    hold = asyncio.Event()

    async def hang(step_ctx):
        await record(step_ctx)
        started.set()
        await hold.wait()
        return {}

    definition = SagaDefinition(
        name="abandon",
        steps=[
            SagaStep(name="a", execute=record, compensate=unrecord),
            SagaStep(name="b", execute=hang, compensate=unrecord),
            SagaStep(name="c", execute=record, compensate=unrecord),
        ],
    )
    clock = ManualClock()  # the lease expires because the test moves the clock, not by sleeping
    dead = SagaCoordinator(session_factory, lease_seconds=5, clock=clock)
    dead.register_saga(definition)
    context = ctx()
    task = asyncio.create_task(dead.execute_saga(saga_name="abandon", context=context))
    await started.wait()
    task.cancel()  # the worker "dies" mid-step: no more renewals, nothing released
    with pytest.raises(asyncio.CancelledError):
        await task
    hold.set()
    rescuer = SagaCoordinator(session_factory, lease_seconds=5, clock=clock)
    rescuer.register_saga(definition)
    assert await rescuer.recover() == 0  # the lease has not expired yet
    clock.advance(5.1)
    assert await rescuer.recover() == 1
    saga = await rescuer.get_saga(context.saga_id, tenant_id=context.tenant_id)
    assert saga["status"] == "completed"
    assert [s["attempts"] for s in saga["steps"]] == [1, 2, 1]  # b ran again: at-least-once
    assert await effects(session_factory, context.saga_id) == [
        f"{context.saga_id}:{n}" for n in ("a", "b", "c")
    ]


async def test_long_step_keeps_its_lease_so_nobody_takes_over(session_factory):
    async def long_step(step_ctx):
        await asyncio.sleep(0.8)
        return {}

    definition = SagaDefinition(name="long", steps=[SagaStep(name="l", execute=long_step)])
    owner = SagaCoordinator(session_factory, lease_seconds=0.3)
    other = SagaCoordinator(session_factory, lease_seconds=0.3)
    for c in (owner, other):
        c.register_saga(definition)
    task = asyncio.create_task(owner.execute_saga(saga_name="long", context=ctx()))
    taken = 0
    for _ in range(6):
        await asyncio.sleep(0.12)
        taken += await other.recover()
    assert (await task)["status"] == "completed"
    assert taken == 0


async def test_cancel_of_a_saga_driven_elsewhere_compensates_at_the_next_step(session_factory):
    await create_effects_table(session_factory)
    in_step = asyncio.Event()
    go_on = asyncio.Event()

    async def waiting(step_ctx):
        await record(step_ctx)
        in_step.set()
        await go_on.wait()
        return {}

    definition = SagaDefinition(
        name="cancellable",
        steps=[
            SagaStep(name="a", execute=waiting, compensate=unrecord),
            SagaStep(name="b", execute=record, compensate=unrecord),
        ],
    )
    driver = SagaCoordinator(session_factory, lease_seconds=5)
    operator = SagaCoordinator(session_factory, lease_seconds=5)
    for c in (driver, operator):
        c.register_saga(definition)
    context = ctx()
    task = asyncio.create_task(driver.execute_saga(saga_name="cancellable", context=context))
    await in_step.wait()
    view = await operator.cancel_saga(context.saga_id, tenant_id=context.tenant_id)
    assert view["status"] == "running"  # the driver owns it; it will compensate
    go_on.set()
    result = await task
    assert result["status"] == "compensated" and result["error"]["code"] == "saga_cancelled"
    assert await effects(session_factory) == []
