"""A saga's history: every transition, appended in the same write as the state change."""

from __future__ import annotations

from uuid import uuid4

import pytest

from dotmac_shared.business_logic import InvalidInputError, SagaNotFoundError
from dotmac_shared.business_logic.sagas import (
    SagaContext,
    SagaCoordinator,
    SagaDefinition,
    SagaStep,
)
from tests.sagas.steps import boom, create_effects_table, record, unrecord

TENANT = "tenant-a"


def two_steps(fail: bool = False) -> SagaDefinition:
    return SagaDefinition(
        name="pair",
        steps=[
            SagaStep(name="first", execute=record, compensate=unrecord),
            SagaStep(name="second", execute=boom if fail else record, compensate=unrecord),
        ],
    )


async def test_history_records_every_transition_in_order_when_a_saga_completes(session_factory):
    await create_effects_table(session_factory)
    coordinator = SagaCoordinator(session_factory, owner_id="worker-1")
    coordinator.register_saga(two_steps())
    context = SagaContext(saga_id=str(uuid4()), tenant_id=TENANT)
    await coordinator.execute_saga(saga_name="pair", context=context)

    saga = await coordinator.get_saga(context.saga_id, tenant_id=TENANT)

    assert [(e.kind, e.step, e.attempt) for e in saga.history] == [
        ("saga.running", None, None),
        ("step.running", "first", 1),
        ("step.completed", "first", 1),
        ("step.running", "second", 1),
        ("step.completed", "second", 1),
        ("saga.completed", None, None),
    ]
    assert {e.worker for e in saga.history} == {"worker-1"}
    sequences = [e.sequence for e in saga.history]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    assert saga.to_dict()["history"][0]["kind"] == "saga.running"


async def test_history_records_the_failure_and_each_compensation_when_a_step_fails(
    session_factory,
):
    await create_effects_table(session_factory)
    coordinator = SagaCoordinator(session_factory)
    coordinator.register_saga(two_steps(fail=True))
    context = SagaContext(saga_id=str(uuid4()), tenant_id=TENANT)
    await coordinator.execute_saga(saga_name="pair", context=context)

    history = (await coordinator.get_saga(context.saga_id, tenant_id=TENANT)).history

    assert [(e.kind, e.step) for e in history][4:] == [
        ("step.failed", "second"),
        ("saga.compensating", "second"),
        ("step.compensating", "second"),
        ("step.compensated", "second"),
        ("step.compensating", "first"),
        ("step.compensated", "first"),
        ("saga.compensated", None),
    ]
    failed = history[4]
    assert failed.error is not None and failed.error.code == "unexpected_error"
    assert failed.error.context == {"exception_type": "RuntimeError"}


async def test_saga_history_pages_oldest_first_and_hides_other_tenants_sagas(session_factory):
    await create_effects_table(session_factory)
    coordinator = SagaCoordinator(session_factory)
    coordinator.register_saga(two_steps())
    context = SagaContext(saga_id=str(uuid4()), tenant_id=TENANT)
    await coordinator.execute_saga(saga_name="pair", context=context)

    first = await coordinator.saga_history(context.saga_id, tenant_id=TENANT, limit=4)
    rest = await coordinator.saga_history(
        context.saga_id, tenant_id=TENANT, after=first[-1].sequence
    )

    assert [e.kind for e in first + rest][-1] == "saga.completed" and len(first + rest) == 6
    with pytest.raises(SagaNotFoundError):
        await coordinator.saga_history(context.saga_id, tenant_id="tenant-b")
    with pytest.raises(InvalidInputError):
        await coordinator.saga_history(context.saga_id, tenant_id=TENANT, limit=0)
