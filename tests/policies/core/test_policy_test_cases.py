"""Policy test cases shipped as data, run by one function and one pytest helper."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dotmac_shared.business_logic.exceptions import PolicyNotFoundError
from dotmac_shared.business_logic.policies import (
    PolicyDecision,
    PolicyEngine,
    assert_policy_test_cases,
    compile_policy,
    load_policy_file,
    run_policy_test_cases,
)

POLICY_YAML = """
name: plan_eligibility.residential_basic
version: 1.0.0
category: plan_eligibility
tags: [residential]
effective_from: 2026-01-01
rules:
  - name: residential_customer
    field: customer_type
    operator: eq
    value: residential
    message: Customer must be residential
  - name: min_credit_score
    field: credit_score
    operator: gte
    value: 600
  - name: no_outstanding_debt
    field: outstanding_balance
    operator: lte
    value: 0
    on_fail: REQUIRE_APPROVAL
  - name: service_coverage
    field: location.service_coverage
    operator: is_true
test_cases:
  - name: spec_customer_allowed
    input: {customer_type: residential, credit_score: 650, outstanding_balance: 0,
            location: {service_coverage: true}}
    context: {tenant_id: tenant123, now: 2026-03-01T00:00:00Z}
    expect: ALLOW
    failed_rules: []
  - name: low_credit_denied
    input: {customer_type: residential, credit_score: 550, outstanding_balance: 0,
            location: {service_coverage: true}}
    context: {tenant_id: tenant123, now: 2026-03-01T00:00:00Z}
    expect: DENY
    failed_rules: [min_credit_score]
  - name: debt_needs_approval
    input: {customer_type: residential, credit_score: 700, outstanding_balance: 10,
            location: {service_coverage: true}}
    context: {tenant_id: tenant123, now: 2026-03-01T00:00:00Z}
    expect: REQUIRE_APPROVAL
  - name: missing_fields_denied
    input: {}
    context: {tenant_id: tenant123, now: 2026-03-01T00:00:00Z}
    expect: DENY
    failed_rules: [residential_customer, min_credit_score, no_outstanding_debt, service_coverage]
  - name: not_in_force_before_2026
    input: {customer_type: residential, credit_score: 650, outstanding_balance: 0,
            location: {service_coverage: true}}
    context: {tenant_id: tenant123, now: 2025-06-01T00:00:00Z}
    expect: DENY
    failed_rules: []
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "residential_basic.yaml"
    path.write_text(POLICY_YAML)
    return path


@pytest.fixture
def engine(policy_file: Path) -> PolicyEngine:
    engine = PolicyEngine()
    engine.load_directory(policy_file.parent)
    return engine


def test_every_shipped_case_passes_when_run_from_data(engine: PolicyEngine) -> None:
    outcomes = assert_policy_test_cases(engine)
    assert [outcome.name for outcome in outcomes] == [
        "spec_customer_allowed",
        "low_credit_denied",
        "debt_needs_approval",
        "missing_fields_denied",
        "not_in_force_before_2026",
    ]
    assert {outcome.policy for outcome in outcomes} == {"plan_eligibility.residential_basic@1.0.0"}
    assert outcomes[2].actual is PolicyDecision.REQUIRE_APPROVAL
    assert outcomes[4].result is not None and outcomes[4].result.in_effect is False


def test_cases_run_when_given_a_policy_or_a_name(engine: PolicyEngine, policy_file: Path) -> None:
    assert len(run_policy_test_cases(load_policy_file(policy_file))) == 5
    assert len(run_policy_test_cases(engine, "plan_eligibility.residential_basic")) == 5
    assert len(run_policy_test_cases(engine.registry)) == 5
    with pytest.raises(PolicyNotFoundError):
        run_policy_test_cases(engine, "plan_eligibility.unknown")


def broken_policy(**case: Any) -> Any:
    return compile_policy(
        {
            "name": "t",
            "version": "1.0.0",
            "rules": [
                {"name": "a", "field": "a", "operator": "exists"},
                {"name": "b", "field": "b", "operator": "exists"},
            ],
            "test_cases": [{"name": "case", "input": {"a": 1}, **case}],
        }
    )


def test_outcome_says_what_differs_when_decision_wrong() -> None:
    (outcome,) = run_policy_test_cases(broken_policy(expect="ALLOW"))
    assert outcome.passed is False
    assert "expected ALLOW, got DENY" in outcome.detail
    assert "b is missing" in outcome.detail


def test_outcome_says_what_differs_when_failed_rules_wrong() -> None:
    (outcome,) = run_policy_test_cases(broken_policy(expect="DENY", failed_rules=["a"]))
    assert outcome.passed is False
    assert "expected failed rules ['a'], got ['b']" in outcome.detail


def test_helper_raises_listing_failures_when_a_case_fails() -> None:
    with pytest.raises(AssertionError) as caught:
        assert_policy_test_cases(broken_policy(expect="ALLOW"))
    assert "1 of 1 policy test cases failed" in str(caught.value)
    assert "t@1.0.0 / case" in str(caught.value)


def test_helper_raises_when_no_cases_to_run() -> None:
    policy = compile_policy(
        {
            "name": "t",
            "version": "1.0.0",
            "rules": [{"name": "a", "field": "a", "operator": "exists"}],
        }
    )
    with pytest.raises(AssertionError, match="no policy test cases"):
        assert_policy_test_cases(policy)
    assert assert_policy_test_cases(policy, require_cases=False) == []


def test_cases_use_shipping_version_when_tenant_overrides_exist(
    engine: PolicyEngine, policy_file: Path
) -> None:
    override = load_policy_file(policy_file).document.model_dump(by_alias=True)
    override["rules"][1]["value"] = 900
    override["test_cases"] = [
        {"name": "strict", "input": {"credit_score": 800}, "expect": "DENY"},
    ]
    engine.register_policy(override, tenant_id="tenant123")
    outcomes = assert_policy_test_cases(engine)
    assert len(outcomes) == 6
    assert outcomes[-1].policy == "plan_eligibility.residential_basic@1.0.0 [tenant tenant123]"
