from __future__ import annotations

import pytest
from sqlalchemy import func, select

from dotmac_shared.business_logic import InvalidInputError, ProvisioningError
from dotmac_shared.business_logic.operations._adapters import (
    OutboxNotifier,
    RecordingNetworkProvisioner,
)
from dotmac_shared.business_logic.operations._seed import DEMO_TENANT_ID, seed_demo_data
from dotmac_shared.business_logic.operations._service_steps import (
    ServiceProvisioningSteps,
    service_id_for,
)
from dotmac_shared.business_logic.operations.models import (
    NetworkConfiguration,
    OutboxMessage,
    ResourceAllocation,
    Service,
)

REQUEST = {
    "customer_id": "cust789",
    "service_type": "internet",
    "plan": "standard",
    "billing_period": "monthly",
}


def credit_check(plan_type, customer, tenant_id, user_id):
    """A stand-in eligibility port: eligible with a credit score of at least 600."""
    ok = customer.get("credit_score", 0) >= 600
    return {
        "eligible": ok,
        "reasons": [] if ok else ["Credit score below 600"],
        "policy_version": "t",
    }


def make_steps(factory) -> ServiceProvisioningSteps:
    return ServiceProvisioningSteps(
        factory, RecordingNetworkProvisioner(), OutboxNotifier(), credit_check
    )


async def count(factory, model) -> int:
    async with factory() as session:
        return (await session.execute(select(func.count()).select_from(model))).scalar_one()


async def provision(steps, saga_id="saga-1") -> dict:
    request = await steps.validate_request(DEMO_TENANT_ID, "user456", REQUEST)
    allocated = await steps.allocate_resources(saga_id, DEMO_TENANT_ID, request)
    await steps.configure_service(saga_id, DEMO_TENANT_ID, request, allocated["ip_address"])
    activated = await steps.activate_service(saga_id, DEMO_TENANT_ID, request["customer_id"])
    await steps.notify_customer(saga_id, DEMO_TENANT_ID, request["customer_id"])
    return {"request": request, "allocated": allocated, "activated": activated}


async def test_all_steps_activate_a_configured_service_with_an_address(session_factory):
    await seed_demo_data(session_factory)
    result = await provision(make_steps(session_factory))
    service_id = service_id_for("saga-1")
    assert result["activated"]["service_id"] == service_id
    assert result["allocated"]["ip_address"] == "10.20.0.1"
    async with session_factory() as session:
        service = await session.get(Service, service_id)
    assert service is not None and service.status == "active" and service.started_at is not None
    assert service.configuration["network"]["ip_address"] == "10.20.0.1"
    assert await count(session_factory, OutboxMessage) == 1


async def test_rerunning_every_step_has_no_double_effect(session_factory):
    await seed_demo_data(session_factory)
    steps = make_steps(session_factory)
    first = await provision(steps)
    second = await provision(steps)
    assert first["allocated"] == second["allocated"]
    assert await count(session_factory, Service) == 1
    assert await count(session_factory, ResourceAllocation) == 1
    assert await count(session_factory, OutboxMessage) == 1


async def test_compensations_free_the_address_and_remove_the_service(session_factory):
    await seed_demo_data(session_factory)
    steps = make_steps(session_factory)
    result = await provision(steps)
    await steps.deactivate_service("saga-1", result["activated"]["billing_account_created"])
    await steps.deconfigure_service("saga-1")
    await steps.release_resources("saga-1")
    assert await count(session_factory, Service) == 0
    assert await count(session_factory, ResourceAllocation) == 0
    assert await count(session_factory, NetworkConfiguration) == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"service_type": "cable"}, "service_type"),
        ({"plan": "gold"}, "plan"),
        ({"billing_period": "weekly"}, "billing_period"),
        ({"customer_id": "nobody"}, "customer_id"),
        ({"customer_id": None}, "customer_id"),
    ],
)
async def test_bad_request_names_the_field(session_factory, change, field):
    await seed_demo_data(session_factory)
    with pytest.raises(InvalidInputError) as info:
        await make_steps(session_factory).validate_request(
            DEMO_TENANT_ID, None, {**REQUEST, **change}
        )
    assert info.value.field == field


async def test_customer_of_another_tenant_is_not_found(session_factory):
    await seed_demo_data(session_factory)
    with pytest.raises(InvalidInputError, match="does not exist in tenant"):
        await make_steps(session_factory).validate_request("other-tenant", None, REQUEST)


async def test_ineligible_customer_is_refused_with_reasons(session_factory):
    await seed_demo_data(session_factory)

    def deny(plan_type, customer, tenant_id, user_id):
        return {"eligible": False, "reasons": ["Outstanding balance must be paid"]}

    steps = ServiceProvisioningSteps(
        session_factory, RecordingNetworkProvisioner(), OutboxNotifier(), deny
    )
    with pytest.raises(ProvisioningError, match="Outstanding balance") as info:
        await steps.validate_request(DEMO_TENANT_ID, None, REQUEST)
    assert info.value.metadata["reasons"] == ["Outstanding balance must be paid"]
