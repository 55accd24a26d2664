"""A failed saga records its failure as data: stable code, failing step, message, context."""

from __future__ import annotations

import json
import uuid

from dotmac_shared.business_logic import InvalidInputError
from dotmac_shared.business_logic.sagas import (
    SagaContext,
    SagaCoordinator,
    SagaDefinition,
    SagaFailure,
    SagaResult,
    SagaStep,
)

TENANT = "tenant-errors"


def definition() -> SagaDefinition:
    async def reserve(ctx):
        return {"reserved": True}

    async def release(ctx):
        return None

    async def validate(ctx):
        raise InvalidInputError("customer 'ghost' does not exist", field="customer_id")

    return SagaDefinition(
        name="structured",
        steps=[
            SagaStep(name="reserve", execute=reserve, compensate=release),
            SagaStep(name="validate_customer", execute=validate),
        ],
    )


def assert_invalid_customer(result: SagaResult) -> None:
    assert result.status == "compensated"
    assert isinstance(result.error, SagaFailure)
    assert result.error.code == "invalid_input"
    assert result.error.step == "validate_customer"
    assert result.error.message == "customer 'ghost' does not exist"
    assert result.error.context["field"] == "customer_id"
    # The same through the mapping view and the JSON view.
    assert result["error"]["context"]["field"] == "customer_id"
    as_json = json.loads(json.dumps(result.to_dict()))
    assert as_json["error"]["code"] == "invalid_input"
    assert as_json["failed_step"] == "validate_customer"


async def test_failure_has_code_step_and_field_when_a_step_raises_invalid_input(
    session_factory,
):
    coordinator = SagaCoordinator(session_factory, lease_seconds=30)
    coordinator.register_saga(definition())
    ctx = SagaContext(saga_id=str(uuid.uuid4()), tenant_id=TENANT)

    result = await coordinator.execute_saga(saga_name="structured", context=ctx)
    assert_invalid_customer(result)

    # Read back by another coordinator: the failure is stored as data, not as text.
    stored = await SagaCoordinator(session_factory).get_saga(ctx.saga_id, tenant_id=TENANT)
    assert_invalid_customer(stored)
    failing = next(s for s in stored.steps if s.name == "validate_customer")
    assert failing.error == stored.error
    listed = await SagaCoordinator(session_factory).list_sagas(tenant_id=TENANT)
    assert [s.error for s in listed] == [stored.error]


async def test_failure_has_a_generic_code_when_a_step_raises_a_foreign_exception(
    session_factory,
):
    async def down(ctx):
        raise ConnectionRefusedError("billing system down")

    coordinator = SagaCoordinator(session_factory, lease_seconds=30)
    coordinator.register_saga(
        SagaDefinition(name="foreign", steps=[SagaStep(name="charge", execute=down)])
    )
    ctx = SagaContext(saga_id=str(uuid.uuid4()), tenant_id=TENANT)
    await coordinator.execute_saga(saga_name="foreign", context=ctx)
    stored = await coordinator.get_saga(ctx.saga_id, tenant_id=TENANT)
    assert stored.error == SagaFailure(
        "unexpected_error",
        "billing system down",
        "charge",
        {"exception_type": "ConnectionRefusedError"},
    )


def test_result_to_dict_holds_only_json_types_when_step_results_hold_decimals():
    import datetime as dt
    from decimal import Decimal

    from dotmac_shared.business_logic.sagas import SagaStatus

    result = SagaResult(
        saga_id="s",
        saga_name="n",
        status=SagaStatus.COMPLETED,
        step_results={"price": {"amount": Decimal("1.50"), "id": uuid.UUID(int=1)}},
        created_at=dt.datetime.now(dt.UTC),
    )
    data = result.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["step_results"]["price"] == {"amount": "1.50", "id": str(uuid.UUID(int=1))}
    assert result["step_results"]["price"]["amount"] == Decimal("1.50")
