"""The spec's usage examples, as written, right after ``seed_demo_data``."""

from __future__ import annotations

from uuid import uuid4

from dotmac_shared.business_logic.operations import seed_demo_data


def test_policy_evaluation_example_prints_eligible_true(capsys):
    from dotmac_shared.business_logic import PolicyEngine, PolicyContext  # noqa: F401, I001
    from dotmac_shared.business_logic.policies import PlanEligibilityEngine

    # Create policy engine
    engine = PlanEligibilityEngine()

    # Set up evaluation context
    context = PolicyContext(
        tenant_id="tenant123", user_id="user456", operation="plan_eligibility_check"
    )

    # Check customer eligibility for residential plan
    customer_data = {
        "id": "cust789",
        "customer_type": "residential",
        "credit_score": 650,
        "outstanding_balance": 0.0,
        "location": {"service_coverage": True},
    }

    result = engine.check_plan_eligibility(
        plan_type="residential_basic", customer_data=customer_data, context=context
    )

    print(f"Eligible: {result['eligible']}")
    print(f"Policy Result: {result['policy_result']}")
    out = capsys.readouterr().out
    assert "Eligible: True" in out
    assert "ALLOW" in out


async def test_idempotent_operations_example_prints_the_new_tenant(session_factory, capsys):
    db_session_factory = session_factory
    await seed_demo_data(db_session_factory)

    from dotmac_shared.business_logic import IdempotencyKey, IdempotencyManager
    from dotmac_shared.business_logic.operations import TenantProvisioningOperation

    operation_data = {
        "name": "New Tenant",
        "domain": "new-tenant",
        "plan": "basic",
        "admin_email": "admin@newtenant.com",
    }
    # Generate idempotency key
    key = IdempotencyKey.generate(
        operation_type="tenant_provisioning",
        tenant_id="tenant123",
        operation_data={
            "name": "New Tenant",
            "domain": "new-tenant",
            "plan": "basic",
            "admin_email": "admin@newtenant.com",
        },
    )

    # Execute idempotent operation
    operation = TenantProvisioningOperation()  # noqa: F841 - as in the spec
    manager = IdempotencyManager(db_session_factory)

    result = await manager.execute_idempotent(
        idempotency_key=key, operation_data=operation_data, context={"user_id": "user123"}
    )

    print(f"Success: {result.success}")
    print(f"Tenant ID: {result.data['tenant_id']}")
    out = capsys.readouterr().out
    assert "Success: True" in out
    assert f"Tenant ID: {result.data['tenant_id']}" in out and result.data["tenant_id"]


async def test_saga_orchestration_example_prints_the_new_service(session_factory, capsys):
    db_session_factory = session_factory
    await seed_demo_data(db_session_factory)

    from dotmac_shared.business_logic.operations import ServiceProvisioningSaga
    from dotmac_shared.business_logic.sagas import SagaContext, SagaCoordinator

    # Create saga coordinator
    coordinator = SagaCoordinator(db_session_factory)

    # Register saga definition
    saga_definition = ServiceProvisioningSaga.create_definition()
    coordinator.register_saga(saga_definition)

    # Create saga context
    context = SagaContext(saga_id=str(uuid4()), tenant_id="tenant123", user_id="user456")

    # Execute saga
    result = await coordinator.execute_saga(
        saga_name="service_provisioning",
        context=context,
        initial_data={
            "customer_id": "cust789",
            "service_type": "internet",
            "plan": "standard",
            "billing_period": "monthly",
        },
    )

    print(f"Status: {result['status']}")
    print(f"Service ID: {result['step_results']['activate_service']['service_id']}")
    out = capsys.readouterr().out
    assert "Status: completed" in out
    assert result["step_results"]["activate_service"]["service_id"].startswith("svc_")
