"""Every error of the ``/v1`` API has a stable code: its status, ``type`` and context."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import update

import dotmac_shared.business_logic as package
from dotmac_shared.business_logic.exceptions import (
    AuthenticationError,
    BillingRunError,
    BusinessLogicError,
    PermissionDeniedError,
    ProvisioningError,
    ProvisioningRefusedError,
    ResourceNotFoundError,
    SagaCompensatedError,
)
from dotmac_shared.business_logic.http import (
    DEFAULT_PROBLEM_TYPE_BASE,
    compensated_saga_status,
    problem_body,
    problem_response,
)
from dotmac_shared.business_logic.operations._seed import DEMO_CUSTOMER_ID, DEMO_TENANT_ID
from dotmac_shared.business_logic.operations.models import ResourcePool
from tests.http.api_support import PROBLEM, running_api

SERVICE = {"service_type": "internet", "plan": "standard", "billing_cycle": "monthly"}
TENANT = {"name": "New ISP", "domain": "new-isp", "plan": "basic", "admin_email": "a@new.example"}


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": f'"{value}"'}


def assert_coded_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    """A problem+json answer with ``status`` whose ``type`` ends in its stable ``code``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["type"] == f"{DEFAULT_PROBLEM_TYPE_BASE}{code}"
    return body


@pytest.mark.parametrize(
    ("error", "status", "context"),
    [
        (
            AuthenticationError("no key", challenge='Bearer realm="x"'),
            401,
            {"challenge": 'Bearer realm="x"'},
        ),
        (
            PermissionDeniedError("admins only", required_role="admin"),
            403,
            {"required_role": "admin"},
        ),
        (
            ResourceNotFoundError("no customer", resource_type="customer", resource_id="c1"),
            404,
            {"resource_type": "customer", "resource_id": "c1"},
        ),
        (ProvisioningRefusedError("domain taken", metadata={"field": "domain"}), 422, {}),
        (BillingRunError("already finalized", billing_run_id="r1"), 409, {"billing_run_id": "r1"}),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BusinessLogicError) else None,
)
def test_client_error_is_its_status_with_its_code_and_context_when_rendered(error, status, context):
    body = problem_body(error)
    assert (body["status"], body["code"]) == (status, error.code)
    assert body["type"] == f"{DEFAULT_PROBLEM_TYPE_BASE}{error.code}"
    assert body["detail"] == error.message
    assert context.items() <= body.items()


def test_provisioning_error_is_a_502_without_its_message_when_rendered():
    body = problem_body(ProvisioningError("licensing said: secret-host-7 refused"))
    assert (body["status"], body["code"]) == (502, "provisioning_error")
    assert "secret-host-7" not in str(body)


def test_authentication_error_sends_its_challenge_when_answered():
    response = problem_response(AuthenticationError("no key"))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_new_errors_are_exported_from_the_top_level_package_when_imported():
    for cls in (
        AuthenticationError,
        PermissionDeniedError,
        ResourceNotFoundError,
        SagaCompensatedError,
        ProvisioningRefusedError,
    ):
        assert getattr(package, cls.__name__) is cls
        assert cls.__name__ in package.__all__


@pytest.mark.parametrize(
    ("failure_code", "status"),
    [
        ("invalid_input", 422),
        ("policy_violation", 422),
        ("provisioning_refused", 422),
        ("provisioning_error", 502),
        ("unexpected_error", 502),
        ("business_logic_error", 502),
        ("step_timeout", 504),
        ("saga_timeout", 504),
        ("persistence_error", 503),
        ("saga_cancelled", 409),
        ("saga_compensated", 502),
    ],
)
def test_compensated_saga_takes_its_failures_status_when_mapped(failure_code, status):
    assert compensated_saga_status(failure_code) == status


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=30))
def test_compensated_saga_is_a_client_or_gateway_error_whatever_its_failure_code(code):
    # Never a bare 500: either the failure names the client's fault or a system the saga drove.
    assert compensated_saga_status(code) != 500
    assert 400 <= compensated_saga_status(code) <= 504


def _compensated(code: str, message: str = "credit score too low") -> SagaCompensatedError:
    return SagaCompensatedError(
        "service not provisioned",
        saga_id="svc-1",
        saga_name="service_provisioning",
        failed_step="validate_request",
        compensated_steps=["validate_request"],
        failure={
            "code": code,
            "message": message,
            "step": "validate_request",
            "context": {"field": "credit_score", "metadata": {"reasons": ["too low"]}},
        },
    )


def test_compensated_saga_body_carries_the_failures_code_step_and_context_when_refused():
    body = problem_body(_compensated("provisioning_refused"))
    assert body["status"] == 422
    assert body["code"] == "provisioning_refused"
    assert body["type"] == f"{DEFAULT_PROBLEM_TYPE_BASE}provisioning_refused"
    assert body["detail"] == "credit score too low"
    assert body["step"] == "validate_request"
    assert body["context"]["field"] == "credit_score"
    assert (body["saga_id"], body["saga_status"]) == ("svc-1", "compensated")


def test_compensated_saga_body_withholds_the_message_when_a_system_failed():
    body = problem_body(_compensated("unexpected_error", message="psycopg: host db-7 down"))
    assert (body["status"], body["code"], body["step"]) == (
        502,
        "unexpected_error",
        "validate_request",
    )
    assert body["context"]["field"] == "credit_score"
    assert "db-7" not in str(body)


# --- through the API, on both databases ----------------------------------------------------


async def _walk(api: Any) -> list[tuple[str, Any, int, str]]:
    """Each error case of the API: (name, response, expected status, expected code)."""
    c = api.client
    op, admin, other = api.auth(api.operator), api.auth(api.admin), api.auth(api.other)
    eligibility = f"/v1/customers/{DEMO_CUSTOMER_ID}/eligibility"
    services = f"/v1/customers/{DEMO_CUSTOMER_ID}/services"
    return [
        ("no key", await c.get("/v1/sagas"), 401, "authentication_required"),
        (
            "bad key",
            await c.get("/v1/sagas", headers={"Authorization": "Bearer dmk_nope"}),
            401,
            "authentication_required",
        ),
        (
            "not bearer",
            await c.get("/v1/policies", headers={"Authorization": "Basic eDp5"}),
            401,
            "authentication_required",
        ),
        (
            "operator provisions a tenant",
            await c.post("/v1/tenants", json=TENANT, headers={**op, **key("t-op")}),
            403,
            "permission_denied",
        ),
        (
            "operator cancels",
            await c.post("/v1/sagas/whatever/cancel", headers=op),
            403,
            "permission_denied",
        ),
        (
            "unknown customer",
            await c.post(
                "/v1/customers/ghost/eligibility",
                params={"plan": "residential_basic"},
                headers=op,
            ),
            404,
            "not_found",
        ),
        (
            "another tenant's customer",
            await c.post(eligibility, params={"plan": "residential_basic"}, headers=other),
            404,
            "not_found",
        ),
        (
            "another tenant's customer's service",
            await c.post(services, json=SERVICE, headers={**other, **key("svc-o")}),
            404,
            "not_found",
        ),
        ("unknown saga", await c.get("/v1/sagas/nope", headers=op), 404, "saga_not_found"),
        (
            "unknown saga cancelled",
            await c.post("/v1/sagas/nope/cancel", headers=admin),
            404,
            "saga_not_found",
        ),
        ("unknown run", await c.get("/v1/billing-runs/nope", headers=op), 404, "not_found"),
        (
            "retry of a period never run",
            await c.post(
                "/v1/billing-runs", json={"billing_period": "2000-01", "retry": True}, headers=op
            ),
            409,
            "billing_run_error",
        ),
        (
            "unknown policy",
            await c.post("/v1/policies/nope/evaluate", json={"input": {}}, headers=op),
            404,
            "policy_not_found",
        ),
        (
            "unknown plan",
            await c.post(eligibility, params={"plan": "platinum"}, headers=op),
            422,
            "invalid_input",
        ),
        (
            "bad cursor",
            await c.get("/v1/sagas", params={"cursor": "!!"}, headers=op),
            422,
            "invalid_input",
        ),
        (
            "no idempotency key",
            await c.post(services, json=SERVICE, headers=op),
            400,
            "idempotency_key_missing",
        ),
        (
            "malformed body",
            await c.post(services, json={"plan": "gold"}, headers={**op, **key("svc-bad")}),
            422,
            "request_validation_error",
        ),
    ]


async def test_no_v1_error_is_about_blank_when_walking_every_error_case(session_factory):
    async with running_api(session_factory) as api:
        cases = await _walk(api)
    for name, response, status, code in cases:
        assert response.status_code == status, (name, response.text)
        body = response.json()
        assert response.headers["content-type"] == PROBLEM, name
        assert body["type"] != "about:blank", name
        assert (body["code"], body["type"]) == (code, f"{DEFAULT_PROBLEM_TYPE_BASE}{code}"), name
        assert body["status"] == status and body["correlation_id"], name


async def test_unauthenticated_request_is_challenged_when_it_has_no_valid_key(session_factory):
    async with running_api(session_factory) as api:
        missing = await api.client.get("/v1/sagas")
        wrong = await api.client.get("/v1/sagas", headers=api.auth("dmk_wrong"))
    for response in (missing, wrong):
        assert_coded_problem(response, 401, "authentication_required")
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_operator_is_told_the_role_it_lacks_when_it_asks_for_an_admin_route(
    session_factory,
):
    async with running_api(session_factory) as api:
        response = await api.client.post(
            "/v1/tenants", json=TENANT, headers=api.auth(api.operator, **key("t-1"))
        )
    assert assert_coded_problem(response, 403, "permission_denied")["required_role"] == "admin"


async def test_another_tenants_customer_looks_like_a_missing_one_when_asked_for(
    session_factory,
):
    async with running_api(session_factory) as api:
        theirs = await api.client.post(
            f"/v1/customers/{DEMO_CUSTOMER_ID}/eligibility",
            params={"plan": "residential_basic"},
            headers=api.auth(api.other),
        )
        ghost = await api.client.post(
            "/v1/customers/ghost/eligibility",
            params={"plan": "residential_basic"},
            headers=api.auth(api.other),
        )
    theirs_body = assert_coded_problem(theirs, 404, "not_found")
    ghost_body = assert_coded_problem(ghost, 404, "not_found")
    assert theirs_body["resource_type"] == ghost_body["resource_type"] == "customer"
    assert theirs_body["resource_id"] == DEMO_CUSTOMER_ID
    assert DEMO_TENANT_ID not in theirs.text  # nothing of the owner leaks


async def test_tenant_provisioning_is_422_with_the_failed_step_when_the_domain_is_taken(
    session_factory,
):
    async with running_api(session_factory) as api:
        first = await api.client.post(
            "/v1/tenants", json=TENANT, headers=api.auth(api.admin, **key("t-1"))
        )
        taken = await api.client.post(
            "/v1/tenants", json=TENANT, headers=api.auth(api.admin, **key("t-2"))
        )
    assert first.status_code == 201, first.text
    body = assert_coded_problem(taken, 422, "provisioning_refused")
    assert body["step"] == "create_tenant" and body["saga_status"] == "compensated"
    assert body["context"]["metadata"]["field"] == "domain"
    assert "already taken" in body["detail"]


async def test_service_provisioning_is_422_with_the_reasons_when_the_policy_refuses(
    session_factory,
):
    from dotmac_shared.business_logic.operations.models import Customer

    async with running_api(session_factory) as api:
        async with session_factory() as session, session.begin():
            session.add(
                Customer(
                    id="cust-poor",
                    tenant_id=DEMO_TENANT_ID,
                    name="Low Score",
                    email="low@example.com",
                    customer_type="residential",
                    profile={
                        "customer_type": "residential",
                        "credit_score": 400,
                        "outstanding_balance": 0,
                        "location": {"service_coverage": True},
                    },
                )
            )
        response = await api.client.post(
            "/v1/customers/cust-poor/services",
            json={"service_type": "internet", "plan": "basic"},
            headers=api.auth(api.operator, **key("svc-poor")),
        )
    body = assert_coded_problem(response, 422, "provisioning_refused")
    assert body["step"] == "validate_request" and body["saga_name"] == "service_provisioning"
    assert body["context"]["metadata"]["reasons"]


async def test_service_provisioning_is_502_with_the_failed_step_when_no_resource_is_free(
    session_factory,
):
    async with running_api(session_factory) as api:
        # The tenant's pools hold no addresses any more: allocation fails on the server's side.
        async with session_factory() as session, session.begin():
            await session.execute(
                update(ResourcePool)
                .where(ResourcePool.tenant_id == DEMO_TENANT_ID)
                .values(resource_type="retired")
            )
        response = await api.client.post(
            f"/v1/customers/{DEMO_CUSTOMER_ID}/services",
            json=SERVICE,
            headers=api.auth(api.operator, **key("svc-dry")),
        )
        saga = await api.client.get(
            f"/v1/sagas/{response.json().get('saga_id')}", headers=api.auth(api.operator)
        )
    body = assert_coded_problem(response, 502, "provisioning_error")
    assert body["step"] == "allocate_resources"
    assert body["saga_status"] == "compensated"
    assert body["context"]["operation"] == "allocate_resources"
    assert body["compensated_steps"] == ["allocate_resources"]
    assert saga.json()["status"] == "compensated"
