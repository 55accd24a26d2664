"""Plan eligibility through PlanEligibilityEngine: the spec example, every boundary, errors."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.policies import (
    PlanEligibilityEngine,
    PolicyContext,
    PolicyDecision,
    PolicyEngine,
)
from dotmac_shared.business_logic.policies._eligibility import PLAN_POLICIES, shipped_policy

ROOT = Path(__file__).resolve().parents[3]
CONTEXT = PolicyContext(tenant_id="tenant123", user_id="user456", operation="plan_eligibility")

RESIDENTIAL: dict[str, Any] = {
    "id": "cust789",
    "customer_type": "residential",
    "credit_score": 650,
    "outstanding_balance": 0.0,
    "location": {"service_coverage": True},
}
BUSINESS: dict[str, Any] = {
    "customer_type": "business",
    "business_details": {"registration_status": "active"},
    "contract_term_months": 12,
    "credit_limit": 1000,
    "support_tier": "premium",
}
ENTERPRISE: dict[str, Any] = {
    "customer_type": "enterprise",
    "business_details": {"employee_count": 50, "annual_revenue": 1_000_000, "location_count": 2},
    "agreements": {"sla_signed": True},
    "account_manager_assigned": True,
}
BASE = {"residential_basic": RESIDENTIAL, "business_pro": BUSINESS, "enterprise": ENTERPRISE}


@pytest.fixture(scope="module")
def engine() -> PlanEligibilityEngine:
    return PlanEligibilityEngine()


def with_value(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``data`` with ``path`` (a.b.c) set to ``value`` (``...`` deletes it)."""
    result = copy.deepcopy(data)
    *parents, leaf = path.split(".")
    target = result
    for key in parents:
        target = target[key]
    if value is ...:
        del target[leaf]
    else:
        target[leaf] = value
    return result


SPEC_EXAMPLE = textwrap.dedent(
    """
    from dotmac_shared.business_logic import PolicyEngine, PolicyContext
    from dotmac_shared.business_logic.policies import PlanEligibilityEngine

    # Create policy engine
    engine = PlanEligibilityEngine()

    # Set up evaluation context
    context = PolicyContext(
        tenant_id="tenant123",
        user_id="user456",
        operation="plan_eligibility_check"
    )

    # Check customer eligibility for residential plan
    customer_data = {
        "id": "cust789",
        "customer_type": "residential",
        "credit_score": 650,
        "outstanding_balance": 0.0,
        "location": {"service_coverage": True}
    }

    result = engine.check_plan_eligibility(
        plan_type="residential_basic",
        customer_data=customer_data,
        context=context
    )

    print(f"Eligible: {result['eligible']}")
    print(f"Policy Result: {result['policy_result']}")
    """
)


def test_spec_example_prints_eligible_true_when_run_as_written() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SPEC_EXAMPLE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "Eligible: True"
    assert lines[1].startswith("Policy Result: ALLOW plan_eligibility.residential_basic@1.0.0")


def test_result_has_the_documented_fields_when_customer_is_eligible(
    engine: PlanEligibilityEngine,
) -> None:
    result = engine.check_plan_eligibility("residential_basic", RESIDENTIAL, CONTEXT)
    assert result["eligible"] is True
    assert result["decision"] == "ALLOW"
    assert result["requires_approval"] is False
    assert result["plan_type"] == "residential_basic"
    assert result["policy_name"] == "plan_eligibility.residential_basic"
    assert result["policy_version"] == "1.0.0"
    assert result["reasons"] == [] and result["failed_rules"] == []
    assert result["policy_result"]["tenant_id"] == "tenant123"
    assert json.loads(json.dumps(result, allow_nan=False)) == result  # JSON-safe as it is


def test_reasons_are_business_messages_when_rules_fail(engine: PlanEligibilityEngine) -> None:
    customer = {**RESIDENTIAL, "credit_score": 550, "outstanding_balance": 20}
    result = engine.check_plan_eligibility("residential_basic", customer, CONTEXT)
    assert result["eligible"] is False
    assert result["decision"] == "DENY"
    assert result["reasons"] == [
        "A credit score of at least 600 is required",
        "The account has an outstanding balance that must be paid first",
    ]
    assert result["failed_rules"] == ["minimum_credit_score", "no_outstanding_balance"]


# plan, field path, value, eligible — the boundary of every threshold of every plan.
BOUNDARIES = [
    ("residential_basic", "customer_type", "business", False),
    ("residential_basic", "customer_type", ..., False),
    ("residential_basic", "credit_score", 599, False),
    ("residential_basic", "credit_score", 600, True),
    ("residential_basic", "credit_score", 601, True),
    ("residential_basic", "credit_score", ..., False),
    ("residential_basic", "outstanding_balance", -0.01, True),
    ("residential_basic", "outstanding_balance", 0, True),
    ("residential_basic", "outstanding_balance", 0.01, False),
    ("residential_basic", "outstanding_balance", ..., False),
    ("residential_basic", "location.service_coverage", False, False),
    ("residential_basic", "location.service_coverage", ..., False),
    ("business_pro", "customer_type", "residential", False),
    ("business_pro", "business_details.registration_status", "expired", False),
    ("business_pro", "business_details.registration_status", ..., False),
    ("business_pro", "contract_term_months", 11, False),
    ("business_pro", "contract_term_months", 12, True),
    ("business_pro", "contract_term_months", 13, True),
    ("business_pro", "contract_term_months", ..., False),
    ("business_pro", "credit_limit", 999.99, False),
    ("business_pro", "credit_limit", 1000, True),
    ("business_pro", "credit_limit", 1000.01, True),
    ("business_pro", "credit_limit", ..., False),
    ("business_pro", "support_tier", "standard", False),
    ("business_pro", "support_tier", "enterprise", True),
    ("business_pro", "support_tier", ..., False),
    ("enterprise", "customer_type", "business", False),
    ("enterprise", "business_details.employee_count", 49, False),
    ("enterprise", "business_details.employee_count", 50, True),
    ("enterprise", "business_details.employee_count", 51, True),
    ("enterprise", "business_details.employee_count", ..., False),
    ("enterprise", "business_details.annual_revenue", 999_999.99, False),
    ("enterprise", "business_details.annual_revenue", 1_000_000, True),
    ("enterprise", "business_details.annual_revenue", 1_000_000.01, True),
    ("enterprise", "business_details.annual_revenue", ..., False),
    ("enterprise", "agreements.sla_signed", False, False),
    ("enterprise", "agreements.sla_signed", ..., False),
    ("enterprise", "account_manager_assigned", False, False),
    ("enterprise", "account_manager_assigned", ..., False),
    ("enterprise", "business_details.location_count", 1, False),
    ("enterprise", "business_details.location_count", 2, True),
    ("enterprise", "business_details.location_count", 3, True),
    ("enterprise", "business_details.location_count", ..., False),
]


@pytest.mark.parametrize(
    ("plan", "path", "value", "eligible"),
    BOUNDARIES,
    ids=[f"{p}-{f}-{'missing' if v is ... else v}" for p, f, v, _ in BOUNDARIES],
)
def test_eligibility_follows_the_threshold_when_a_field_is_at_its_boundary(
    engine: PlanEligibilityEngine, plan: str, path: str, value: Any, eligible: bool
) -> None:
    result = engine.check_plan_eligibility(plan, with_value(BASE[plan], path, value), CONTEXT)
    assert result["eligible"] is eligible
    if eligible:
        expected = "REQUIRE_APPROVAL" if plan == "enterprise" else "ALLOW"
        assert result["decision"] == expected
    else:
        assert result["decision"] == "DENY"
        assert len(result["failed_rules"]) == 1
        [failed] = [r for r in result["policy_result"]["rule_results"] if not r["passed"]]
        assert failed["field"] == path
        assert failed["missing"] is (value is ...)
        assert result["reasons"] == [failed["message"]]


def test_enterprise_customer_needs_approval_when_every_rule_passes(
    engine: PlanEligibilityEngine,
) -> None:
    result = engine.check_plan_eligibility("enterprise", ENTERPRISE, CONTEXT)
    assert result["eligible"] is True
    assert result["decision"] == "REQUIRE_APPROVAL"
    assert result["requires_approval"] is True
    assert result["policy_result"]["decision"] == PolicyDecision.REQUIRE_APPROVAL.value


def test_unknown_plan_is_an_error_listing_known_plans_when_checked(
    engine: PlanEligibilityEngine,
) -> None:
    with pytest.raises(InvalidInputError) as info:
        engine.check_plan_eligibility("gigabit_ultra", RESIDENTIAL, CONTEXT)
    error = info.value
    assert error.field == "plan_type"
    assert "residential_basic, business_pro, enterprise" in error.message
    assert error.metadata["known_plans"] == ["residential_basic", "business_pro", "enterprise"]


def test_customer_data_is_refused_when_not_a_mapping(engine: PlanEligibilityEngine) -> None:
    with pytest.raises(InvalidInputError) as info:
        engine.check_plan_eligibility("residential_basic", ["not", "a", "dict"], CONTEXT)  # type: ignore[arg-type]
    assert info.value.field == "customer_data"


def test_eligible_plans_lists_every_qualifying_plan_when_customer_fits_several(
    engine: PlanEligibilityEngine,
) -> None:
    assert engine.eligible_plans(RESIDENTIAL, CONTEXT) == ["residential_basic"]
    assert engine.eligible_plans(BUSINESS, CONTEXT) == ["business_pro"]
    assert engine.eligible_plans(ENTERPRISE, CONTEXT) == ["enterprise"]
    assert engine.eligible_plans({}, CONTEXT) == []


def test_registered_plan_is_known_and_checked_when_added_to_the_engine() -> None:
    policy_engine = PolicyEngine()
    policy_engine.register_policy(
        {
            "name": "plan_eligibility.student_lite",
            "version": "1.0.0",
            "category": "plan_eligibility",
            "rules": [{"name": "student", "field": "is_student", "operator": "is_true"}],
        }
    )
    engine = PlanEligibilityEngine(policy_engine)
    assert engine.known_plans == ("residential_basic", "business_pro", "enterprise", "student_lite")
    assert engine.check_plan_eligibility("student_lite", {"is_student": True})["eligible"]
    assert engine.eligible_plans({"is_student": True}) == ["student_lite"]


def test_application_version_is_kept_when_engine_already_has_the_policy() -> None:
    document = shipped_policy(PLAN_POLICIES["residential_basic"]).document.model_dump(
        by_alias=True, exclude_none=True
    )
    document["version"] = "2.0.0"
    document["rules"][1]["value"] = 700  # minimum_credit_score
    policy_engine = PolicyEngine()
    policy_engine.register_policy(document)
    engine = PlanEligibilityEngine(policy_engine)

    newest = engine.check_plan_eligibility("residential_basic", RESIDENTIAL, CONTEXT)
    assert (newest["policy_version"], newest["eligible"]) == ("2.0.0", False)
    assert policy_engine.registry.versions("plan_eligibility.residential_basic") == ["2.0.0"]


@settings(max_examples=200, deadline=None)
@given(
    credit=st.one_of(st.integers(300, 850), st.floats(300, 850, allow_nan=False)),
    balance=st.one_of(st.integers(-500, 500), st.floats(-500, 500, allow_nan=False)),
    covered=st.booleans(),
)
def test_residential_eligibility_matches_the_rules_when_inputs_vary(
    engine: PlanEligibilityEngine, credit: float, balance: float, covered: bool
) -> None:
    customer = {
        **RESIDENTIAL,
        "credit_score": credit,
        "outstanding_balance": balance,
        "location": {"service_coverage": covered},
    }
    result = engine.check_plan_eligibility("residential_basic", customer, CONTEXT)
    assert result["eligible"] is (credit >= 600 and balance <= 0 and covered)
    assert result["eligible"] is (result["decision"] == "ALLOW")


def test_pinned_version_is_evaluated_when_a_version_is_given() -> None:
    document = shipped_policy(PLAN_POLICIES["residential_basic"]).document.model_dump(
        by_alias=True, exclude_none=True
    )
    document["version"] = "1.1.0"
    document["rules"][1]["value"] = 700
    engine = PlanEligibilityEngine()
    engine.engine.register_policy(document)
    assert engine.check_plan_eligibility("residential_basic", RESIDENTIAL)["eligible"] is False
    pinned = engine.check_plan_eligibility("residential_basic", RESIDENTIAL, version="1.0.0")
    assert (pinned["eligible"], pinned["policy_version"]) == (True, "1.0.0")


def test_customer_is_not_eligible_when_the_policy_is_not_in_force() -> None:
    document = shipped_policy(PLAN_POLICIES["residential_basic"]).document.model_dump(
        by_alias=True, exclude_none=True
    )
    document["version"] = "3.0.0"
    document["effective_until"] = "2020-01-01T00:00:00Z"
    policy_engine = PolicyEngine()
    policy_engine.register_policy(document)
    result = PlanEligibilityEngine(policy_engine).check_plan_eligibility(
        "residential_basic", RESIDENTIAL, CONTEXT
    )
    assert (result["eligible"], result["decision"]) == (False, "DENY")
    assert "not in force" in result["reasons"][0]
