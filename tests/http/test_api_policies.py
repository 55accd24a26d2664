"""``/v1/policies``: list, evaluate (explained), diff, and their errors as problem+json."""

from __future__ import annotations

import pytest

from dotmac_shared.business_logic.policies import PolicyEngine
from dotmac_shared.business_logic.policies._eligibility import (
    register_shipped_policies,
    shipped_policy,
    shipped_policy_names,
)
from tests.http.api_support import PROBLEM, running_api

BASIC = "plan_eligibility.residential_basic"
GOOD_CUSTOMER = {
    "credit_score": 720,
    "service_address": {"serviceable": True},
    "outstanding_balance": 0,
    "customer_type": "residential",
}


def engine_with_two_versions() -> PolicyEngine:
    engine = register_shipped_policies(PolicyEngine(), shipped_policy_names())
    document = shipped_policy(BASIC).document.model_dump(mode="json", exclude_none=True)
    document["version"] = "2.0.0"
    document["description"] = "stricter"
    engine.register_policy(document)
    return engine


async def test_list_returns_every_shipped_policy_when_authenticated(session_factory):
    async with running_api(session_factory) as api:
        response = await api.client.get("/v1/policies", headers=api.auth(api.operator))
    assert response.status_code == 200
    names = {item["name"] for item in response.json()}
    assert names == set(shipped_policy_names())


async def test_evaluate_explains_the_decision_when_the_policy_exists(session_factory):
    async with running_api(session_factory) as api:
        response = await api.client.post(
            f"/v1/policies/{BASIC}/evaluate",
            json={"input": {"credit_score": 500}},
            headers=api.auth(api.operator),
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["policy_name"] == BASIC and body["decision"] == "DENY"
    assert body["failed_rules"] and body["rule_results"]
    assert body["tenant_id"] == "tenant123"


async def test_evaluate_is_404_problem_when_the_policy_is_unknown(session_factory):
    async with running_api(session_factory) as api:
        response = await api.client.post(
            "/v1/policies/no.such/evaluate", json={"input": {}}, headers=api.auth(api.operator)
        )
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["code"] == "policy_not_found"


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
async def test_evaluate_is_422_when_the_input_holds_a_non_finite_number(session_factory, bad):
    async with running_api(session_factory) as api:
        response = await api.client.post(
            f"/v1/policies/{BASIC}/evaluate",
            content=f'{{"input": {{"credit_score": {bad}}}}}',
            headers=api.auth(api.operator, **{"Content-Type": "application/json"}),
        )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["field"] == "input.credit_score"


async def test_diff_shows_what_changed_when_two_versions_exist(session_factory):
    async with running_api(session_factory, policy_engine=engine_with_two_versions()) as api:
        response = await api.client.get(
            f"/v1/policies/{BASIC}/diff",
            params={"from": "1.0.0", "to": "2.0.0"},
            headers=api.auth(api.operator),
        )
        same = await api.client.get(
            f"/v1/policies/{BASIC}/diff",
            params={"from": "1.0.0", "to": "1.0.0"},
            headers=api.auth(api.operator),
        )
        missing = await api.client.get(
            f"/v1/policies/{BASIC}/diff",
            params={"from": "1.0.0", "to": "9.9.9"},
            headers=api.auth(api.operator),
        )
    assert response.status_code == 200
    body = response.json()
    assert not body["identical"] and "+description: stricter" in body["diff"]
    assert same.json()["identical"] and same.json()["diff"] == ""
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
