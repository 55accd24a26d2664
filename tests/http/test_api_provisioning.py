"""Eligibility, service and tenant provisioning through ``/v1``: keys required, tenants apart."""

from __future__ import annotations

import asyncio

from dotmac_shared.business_logic.operations._seed import DEMO_CUSTOMER_ID
from tests.http.api_support import PROBLEM, running_api

SERVICE = {"service_type": "internet", "plan": "standard", "billing_cycle": "monthly"}
TENANT = {"name": "New ISP", "domain": "new-isp", "plan": "basic", "admin_email": "a@new.example"}


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": f'"{value}"'}


async def test_eligibility_answers_from_the_stored_profile_when_the_customer_exists(
    session_factory,
):
    async with running_api(session_factory) as api:
        response = await api.client.post(
            f"/v1/customers/{DEMO_CUSTOMER_ID}/eligibility",
            params={"plan": "residential_basic"},
            headers=api.auth(api.operator),
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["eligible"] is True and body["decision"] == "ALLOW"
    assert body["policy_result"]["policy_name"] == "plan_eligibility.residential_basic"


async def test_eligibility_is_404_when_the_customer_is_another_tenants(session_factory):
    async with running_api(session_factory) as api:
        response = await api.client.post(
            f"/v1/customers/{DEMO_CUSTOMER_ID}/eligibility",
            params={"plan": "residential_basic"},
            headers=api.auth(api.other),
        )
        ghost = await api.client.post(
            "/v1/customers/ghost/eligibility",
            params={"plan": "residential_basic"},
            headers=api.auth(api.operator),
        )
    for answer in (response, ghost):
        assert answer.status_code == 404 and answer.headers["content-type"] == PROBLEM
    # Another tenant's customer reads exactly like a missing one, name aside.
    assert response.json().keys() == ghost.json().keys()


async def test_eligibility_is_422_when_the_plan_is_unknown(session_factory):
    async with running_api(session_factory) as api:
        response = await api.client.post(
            f"/v1/customers/{DEMO_CUSTOMER_ID}/eligibility",
            params={"plan": "gold"},
            headers=api.auth(api.operator),
        )
    assert response.status_code == 422 and response.json()["field"] == "plan_type"


async def test_service_provisioning_is_400_when_the_idempotency_key_is_missing(session_factory):
    async with running_api(session_factory) as api:
        response = await api.client.post(
            f"/v1/customers/{DEMO_CUSTOMER_ID}/services",
            json=SERVICE,
            headers=api.auth(api.operator),
        )
    assert response.status_code == 400 and response.headers["content-type"] == PROBLEM


async def test_service_provisioning_runs_once_and_replays_when_the_key_repeats(session_factory):
    async with running_api(session_factory) as api:
        headers = api.auth(api.operator, **key("svc-1"))
        first = await api.client.post(
            f"/v1/customers/{DEMO_CUSTOMER_ID}/services", json=SERVICE, headers=headers
        )
        again = await api.client.post(
            f"/v1/customers/{DEMO_CUSTOMER_ID}/services", json=SERVICE, headers=headers
        )
        sagas = await api.client.get("/v1/sagas", headers=api.auth(api.operator))
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "completed"
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    assert [item["saga_id"] for item in sagas.json()["items"]] == [first.json()["saga_id"]]


async def test_concurrent_requests_with_one_key_provision_one_service_when_raced(
    session_factory,
):
    async with running_api(session_factory) as api:
        headers = api.auth(api.operator, **key("svc-race"))
        answers = await asyncio.gather(
            *(
                api.client.post(
                    f"/v1/customers/{DEMO_CUSTOMER_ID}/services", json=SERVICE, headers=headers
                )
                for _ in range(5)
            )
        )
        sagas = await api.client.get("/v1/sagas", headers=api.auth(api.operator))
    assert {answer.status_code for answer in answers} <= {201, 409}
    assert any(answer.status_code == 201 for answer in answers)
    assert len(sagas.json()["items"]) == 1


async def test_service_provisioning_is_404_when_the_customer_is_another_tenants(
    session_factory,
):
    async with running_api(session_factory) as api:
        response = await api.client.post(
            f"/v1/customers/{DEMO_CUSTOMER_ID}/services",
            json=SERVICE,
            headers=api.auth(api.other, **key("svc-x")),
        )
    assert response.status_code == 404


async def test_service_provisioning_is_422_when_the_request_is_malformed(session_factory):
    async with running_api(session_factory) as api:
        response = await api.client.post(
            f"/v1/customers/{DEMO_CUSTOMER_ID}/services",
            json={**SERVICE, "service_type": "teleport"},
            headers=api.auth(api.operator, **key("svc-bad")),
        )
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM


async def test_tenant_provisioning_is_403_when_the_key_is_an_operators(session_factory):
    async with running_api(session_factory) as api:
        response = await api.client.post(
            "/v1/tenants", json=TENANT, headers=api.auth(api.operator, **key("t-1"))
        )
    assert response.status_code == 403 and response.headers["content-type"] == PROBLEM


async def test_tenant_provisioning_creates_the_tenant_when_an_admin_asks(session_factory):
    async with running_api(session_factory) as api:
        response = await api.client.post(
            "/v1/tenants", json=TENANT, headers=api.auth(api.admin, **key("t-1"))
        )
        taken = await api.client.post(
            "/v1/tenants", json=TENANT, headers=api.auth(api.admin, **key("t-2"))
        )
        missing_key = await api.client.post("/v1/tenants", json=TENANT, headers=api.auth(api.admin))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["domain"] == "new-isp" and body["status"] == "active"
    assert taken.status_code == 422 and taken.headers["content-type"] == PROBLEM
    assert missing_key.status_code == 400


async def test_service_provisioning_is_422_when_the_customer_is_not_eligible(session_factory):
    from dotmac_shared.business_logic.operations.models import Customer

    async with running_api(session_factory) as api:
        async with session_factory() as session, session.begin():
            session.add(
                Customer(
                    id="cust-poor",
                    tenant_id="tenant123",
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
        sagas = await api.client.get(
            "/v1/sagas", params={"status": "compensated"}, headers=api.auth(api.operator)
        )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert "credit score" in response.json()["detail"]
    assert len(sagas.json()["items"]) == 1  # the refusal is on record
