"""The service provisioning saga end to end: concurrent sagas on a small address pool."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import delete, func, select

from dotmac_shared.business_logic.operations import ServiceProvisioningSaga, seed_demo_data
from dotmac_shared.business_logic.operations.models import (
    NetworkConfiguration,
    Resource,
    ResourceAllocation,
    Service,
)
from dotmac_shared.business_logic.sagas import SagaContext, SagaCoordinator
from tests.operations.test_service_steps import REQUEST


async def pool_of(factory, size: int) -> None:
    await seed_demo_data(factory, address_pool="10.30.0.0/27")  # 30 host addresses
    async with factory() as session, session.begin():
        values = (await session.execute(select(Resource.value).order_by(Resource.id))).scalars()
        await session.execute(delete(Resource).where(Resource.value.in_(list(values)[size:])))


async def scalar(factory, stmt):
    async with factory() as session:
        return (await session.execute(stmt)).scalar_one()


async def test_only_as_many_sagas_succeed_as_addresses_when_20_race_for_10(session_factory):
    await pool_of(session_factory, 10)
    coordinator = SagaCoordinator(session_factory)
    coordinator.register_saga(ServiceProvisioningSaga.create_definition())
    outcomes = await asyncio.gather(
        *(
            coordinator.execute_saga(
                saga_name="service_provisioning",
                context=SagaContext(saga_id=str(uuid.uuid4()), tenant_id="tenant123"),
                initial_data=REQUEST,
            )
            for _ in range(20)
        )
    )
    statuses = sorted(o["status"] for o in outcomes)
    assert statuses == ["compensated"] * 10 + ["completed"] * 10
    for failed in (o for o in outcomes if o["status"] == "compensated"):
        assert failed["failed_step"] == "allocate_resources"
        assert (
            "no free ipv4" in failed["error"]["message"].lower()
            or "exhausted" in failed["error"]["message"].lower()
        )
    addresses = [
        o["step_results"]["allocate_resources"]["ip_address"]
        for o in outcomes
        if o["status"] == "completed"
    ]
    assert len(set(addresses)) == 10
    allocations = select(func.count()).select_from(ResourceAllocation)
    assert await scalar(session_factory, allocations) == 10
    active = select(func.count()).where(Service.status == "active")
    assert await scalar(session_factory, active) == 10
    assert await scalar(session_factory, select(func.count()).select_from(Service)) == 10


async def test_failure_before_activation_frees_everything_when_configuration_fails(
    session_factory,
):
    await pool_of(session_factory, 2)

    class BrokenNetwork:
        async def configure(self, session, **kwargs):
            raise ConnectionError("radius down")

        async def deconfigure(self, session, *, service_id):
            return None

    coordinator = SagaCoordinator(session_factory)
    coordinator.register_saga(
        ServiceProvisioningSaga.create_definition(provisioner=BrokenNetwork())
    )
    outcome = await coordinator.execute_saga(
        saga_name="service_provisioning",
        context=SagaContext(saga_id="svc-fail-0", tenant_id="tenant123"),
        initial_data=REQUEST,
    )
    assert outcome["status"] == "compensated" and outcome["failed_step"] == "configure_service"
    for model in (ResourceAllocation, Service, NetworkConfiguration):
        assert await scalar(session_factory, select(func.count()).select_from(model)) == 0


async def test_service_stays_active_in_an_incident_when_notifying_fails_after_activation(
    session_factory,
):
    await pool_of(session_factory, 2)

    class BrokenNotifier:
        async def notify(self, session, **kwargs):
            raise ConnectionError("mail relay down")

        async def notify_many(self, session, messages):
            raise ConnectionError("mail relay down")

    coordinator = SagaCoordinator(session_factory)
    coordinator.register_saga(ServiceProvisioningSaga.create_definition(notifier=BrokenNotifier()))
    outcome = await coordinator.execute_saga(
        saga_name="service_provisioning",
        context=SagaContext(saga_id="svc-fail-1", tenant_id="tenant123"),
        initial_data=REQUEST,
    )
    # Activation is the pivot: past it nothing is undone; the saga waits for a person.
    assert outcome["status"] == "incident" and outcome["failed_step"] == "notify_customer"
    assert outcome["compensated_steps"] == []
    active = select(func.count()).where(Service.status == "active")
    assert await scalar(session_factory, active) == 1


async def test_ineligible_customer_is_refused_with_reasons_when_validating(session_factory):
    await pool_of(session_factory, 2)
    coordinator = SagaCoordinator(session_factory)
    coordinator.register_saga(ServiceProvisioningSaga.create_definition())
    outcome = await coordinator.execute_saga(
        saga_name="service_provisioning",
        context=SagaContext(saga_id="svc-biz-1", tenant_id="tenant123"),
        initial_data={**REQUEST, "plan": "premium"},  # premium needs a business customer
    )
    assert outcome["status"] == "compensated" and outcome["failed_step"] == "validate_request"
    assert "not eligible" in outcome["error"]["message"]
    assert await scalar(session_factory, select(func.count()).select_from(Service)) == 0
