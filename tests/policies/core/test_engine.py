"""Evaluation: decisions, scores, escalation, windows, groups, enforce, metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from dotmac_shared.business_logic.exceptions import (
    InvalidInputError,
    PolicyNotFoundError,
    PolicyViolationError,
)
from dotmac_shared.business_logic.policies import (
    PolicyContext,
    PolicyDecision,
    PolicyEngine,
    PolicyResult,
    RuleResult,
)
from tests.support.telemetry import metric_reader_installed

ALLOW, DENY, APPROVAL = (
    PolicyDecision.ALLOW,
    PolicyDecision.DENY,
    PolicyDecision.REQUIRE_APPROVAL,
)

RESIDENTIAL: dict[str, Any] = {
    "name": "plan_eligibility.residential_basic",
    "version": "1.0.0",
    "category": "plan_eligibility",
    "tags": ["residential"],
    "description": "Residential basic internet eligibility",
    "rules": [
        {
            "name": "residential_customer",
            "field": "customer_type",
            "operator": "eq",
            "value": "residential",
            "message": "Customer must be residential",
        },
        {
            "name": "min_credit_score",
            "field": "credit_score",
            "operator": "gte",
            "value": 600,
            "message": "Credit score must be at least 600",
        },
        {
            "name": "no_outstanding_debt",
            "field": "outstanding_balance",
            "operator": "lte",
            "value": 0,
            "message": "Outstanding balance must be paid",
        },
        {
            "name": "service_coverage",
            "field": "location.service_coverage",
            "operator": "is_true",
            "message": "Address is outside the service area",
        },
    ],
}

SPEC_CUSTOMER: dict[str, Any] = {
    "id": "cust789",
    "customer_type": "residential",
    "credit_score": 650,
    "outstanding_balance": 0.0,
    "location": {"service_coverage": True},
}
CONTEXT = PolicyContext(
    tenant_id="tenant123", user_id="user456", operation="plan_eligibility_check"
)


@pytest.fixture
def engine() -> PolicyEngine:
    engine = PolicyEngine()
    engine.register_policy(RESIDENTIAL)
    return engine


def policy(rules: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {"name": "t", "version": "1.0.0", "rules": rules, **fields}


def exists(name: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "field": field or name, "operator": "exists", **extra}


def test_spec_customer_is_allowed_when_every_rule_passes(engine: PolicyEngine) -> None:
    result = engine.evaluate("plan_eligibility.residential_basic", SPEC_CUSTOMER, CONTEXT)
    assert result.decision is ALLOW
    assert result.passed is True
    assert result.score == 1.0
    assert result.failed_rules == ()
    assert result.reasons == ()
    assert result.in_effect is True
    assert result.tenant_id == "tenant123"
    assert result.policy_version == "1.0.0"
    assert [rule.name for rule in result.rule_results] == [
        "residential_customer",
        "min_credit_score",
        "no_outstanding_debt",
        "service_coverage",
    ]
    assert [rule.actual for rule in result.rule_results] == ["residential", 650, 0.0, True]
    assert str(result) == "ALLOW plan_eligibility.residential_basic@1.0.0 (4/4 rules passed)"
    assert engine.is_allowed("plan_eligibility.residential_basic", SPEC_CUSTOMER, CONTEXT)


def test_decision_is_deny_with_reasons_when_rules_fail(engine: PolicyEngine) -> None:
    customer = {**SPEC_CUSTOMER, "credit_score": 550, "outstanding_balance": 20.5}
    result = engine.evaluate("plan_eligibility.residential_basic", customer)
    assert result.decision is DENY
    assert result.failed_rule_names == ("min_credit_score", "no_outstanding_debt")
    assert result.reasons == (
        "Credit score must be at least 600",
        "Outstanding balance must be paid",
    )
    assert "failed: min_credit_score, no_outstanding_debt" in str(result)
    assert not engine.is_allowed("plan_eligibility.residential_basic", customer)


def test_rules_are_reported_in_priority_order_when_priorities_differ() -> None:
    engine = PolicyEngine()
    engine.register_policy(
        policy(
            [
                exists("c", priority=300),
                exists("a", priority=10),
                exists("b", priority=10),
                exists("d"),
            ]
        )
    )
    result = engine.evaluate("t", {})
    assert [rule.name for rule in result.rule_results] == ["a", "b", "d", "c"]
    assert result.reasons == ("a is missing", "b is missing", "d is missing", "c is missing")


def test_result_serialises_to_json_when_converted_to_dict(engine: PolicyEngine) -> None:
    result = engine.evaluate(
        "plan_eligibility.residential_basic", {**SPEC_CUSTOMER, "credit_score": "abc"}, CONTEXT
    )
    data = json.loads(json.dumps(result.to_dict()))
    assert data["decision"] == "DENY"
    assert data["failed_rules"] == ["min_credit_score"]
    assert data["rule_results"][1]["actual"] == "abc"
    assert data["content_hash"] == result.content_hash
    assert len(result.content_hash) == 64
    assert result.duration_us > 0
    assert abs(result.evaluated_at - datetime.now(UTC)) < timedelta(seconds=5)


def test_results_are_immutable_when_caller_tries_to_change_them(engine: PolicyEngine) -> None:
    result = engine.evaluate("plan_eligibility.residential_basic", SPEC_CUSTOMER)
    with pytest.raises(AttributeError):
        result.decision = DENY  # type: ignore[misc]
    with pytest.raises(AttributeError):
        result.rule_results[0].passed = False  # type: ignore[misc]


def test_nested_groups_decide_when_any_all_not_combine() -> None:
    engine = PolicyEngine()
    engine.register_policy(
        policy(
            [
                {
                    "name": "contact",
                    "any": [
                        exists("has_email", "email"),
                        {
                            "name": "phone_ok",
                            "all": [
                                exists("has_phone", "phone"),
                                {
                                    "name": "not_premium_rate",
                                    "not": {
                                        "name": "premium_rate",
                                        "field": "phone",
                                        "operator": "starts_with",
                                        "value": "+1900",
                                    },
                                },
                            ],
                        },
                    ],
                    "message": "Customer needs an email or a normal phone",
                }
            ]
        )
    )
    assert engine.evaluate("t", {"email": "a@b"}).decision is ALLOW
    assert engine.evaluate("t", {"phone": "+15551234"}).decision is ALLOW
    result = engine.evaluate("t", {"phone": "+19005551234"})
    assert result.decision is DENY
    assert result.reasons == ("Customer needs an email or a normal phone",)
    (contact,) = result.rule_results
    assert [child.name for child in contact.children] == ["has_email", "phone_ok"]
    phone_ok = contact.children[1]
    assert phone_ok.passed is False
    assert phone_ok.children[1].children[0].passed is True
    assert engine.is_allowed("t", {"phone": "+19005551234"}) is False
    assert engine.is_allowed("t", {"phone": "+15551234"}) is True
    missing = engine.evaluate("t", {})
    assert missing.rule_results[0].missing is True


@pytest.mark.parametrize(
    ("data", "score", "decision"),
    [
        ({"a": 1, "b": 1, "c": 1}, 1.0, ALLOW),
        ({"a": 1, "b": 1}, 0.75, ALLOW),  # 3 of 4 weight
        ({"a": 1}, 0.5, DENY),  # below 0.6
        ({"b": 1, "c": 1}, 0.5, DENY),
        ({}, 0.0, DENY),
    ],
)
def test_score_weighs_scored_rules_when_threshold_set(
    data: dict[str, Any], score: float, decision: PolicyDecision
) -> None:
    engine = PolicyEngine()
    engine.register_policy(
        policy(
            [
                exists("a", required=False, weight=2),
                exists("b", required=False, weight=1),
                exists("c", required=False, weight=1),
            ],
            threshold=0.6,
        )
    )
    result = engine.evaluate("t", data)
    assert result.score == pytest.approx(score)
    assert result.threshold == 0.6
    assert result.decision is decision
    assert engine.is_allowed("t", data) is (decision is ALLOW)


def test_required_rule_denies_when_score_reaches_threshold() -> None:
    engine = PolicyEngine()
    engine.register_policy(policy([exists("hard"), exists("soft", required=False)], threshold=0.5))
    result = engine.evaluate("t", {"soft": 1})
    assert result.score == 1.0
    assert result.decision is DENY
    assert engine.is_allowed("t", {"soft": 1}) is False


def test_threshold_is_reached_when_float_weights_sum_exactly() -> None:
    engine = PolicyEngine()
    engine.register_policy(
        policy(
            [
                exists("a", required=False, weight=0.1),
                exists("b", required=False, weight=0.2),
                exists("c", required=False, weight=0.7),
            ],
            threshold=0.3,
        )
    )
    assert engine.evaluate("t", {"a": 1, "b": 1}).decision is ALLOW
    assert engine.is_allowed("t", {"a": 1, "b": 1}) is True


@pytest.mark.parametrize(
    ("data", "decision"),
    [
        ({"a": 1, "b": 1, "c": 1}, ALLOW),
        ({"b": 1, "c": 1}, APPROVAL),  # only an escalating rule failed
        ({"c": 1}, APPROVAL),  # both escalating rules failed
        ({"a": 1, "b": 1}, DENY),  # a plain rule failed
        ({"a": 1}, DENY),  # escalating and plain failed: plain DENY wins
    ],
)
def test_decision_escalates_when_only_escalating_rules_fail(
    data: dict[str, Any], decision: PolicyDecision
) -> None:
    engine = PolicyEngine()
    engine.register_policy(
        policy(
            [
                exists("a", on_fail="REQUIRE_APPROVAL"),
                exists("b", on_fail="REQUIRE_APPROVAL"),
                exists("c"),
            ]
        )
    )
    assert engine.evaluate("t", data).decision is decision
    assert engine.is_allowed("t", data) is (decision is ALLOW)


def test_policy_gives_its_outcomes_when_on_pass_and_on_fail_set() -> None:
    engine = PolicyEngine()
    engine.register_policy(
        policy([exists("signed_sla")], on_pass="REQUIRE_APPROVAL", on_fail="DENY")
    )
    passed = engine.evaluate("t", {"signed_sla": True})
    assert passed.passed is True
    assert passed.decision is APPROVAL
    assert engine.evaluate("t", {}).decision is DENY
    assert engine.is_allowed("t", {"signed_sla": True}) is False


def test_failure_allows_when_policy_on_fail_is_allow() -> None:
    engine = PolicyEngine()
    engine.register_policy(policy([exists("flagged")], on_pass="REQUIRE_APPROVAL", on_fail="ALLOW"))
    assert engine.evaluate("t", {}).decision is ALLOW
    assert engine.is_allowed("t", {}) is True
    assert engine.is_allowed("t", {"flagged": 1}) is False


WINDOW = {"effective_from": "2026-01-01T00:00:00Z", "effective_until": "2027-01-01"}


@pytest.mark.parametrize(
    ("now", "in_effect"),
    [
        (datetime(2025, 12, 31, 23, 59, tzinfo=UTC), False),
        (datetime(2026, 1, 1, tzinfo=UTC), True),
        (datetime(2026, 12, 31, 23, 59, tzinfo=UTC), True),
        (datetime(2027, 1, 1, tzinfo=UTC), False),
    ],
)
def test_policy_is_not_in_force_when_outside_effective_window(
    now: datetime, in_effect: bool
) -> None:
    engine = PolicyEngine()
    engine.register_policy(policy([exists("a")], **WINDOW))
    context = PolicyContext(tenant_id="t", now=now)
    result = engine.evaluate("t", {"a": 1}, context)
    assert result.in_effect is in_effect
    assert result.decision is (ALLOW if in_effect else DENY)
    assert engine.is_allowed("t", {"a": 1}, context) is in_effect
    if not in_effect:
        assert result.rule_results == ()
        assert "not in force" in result.reasons[0]
        assert "(not in force)" in str(result)


def test_window_uses_current_time_when_context_has_no_now() -> None:
    engine = PolicyEngine()
    engine.register_policy(policy([exists("a")], effective_from="2000-01-01"))
    engine.register_policy(policy([exists("a")], version="2.0.0", effective_until="2000-01-01"))
    assert engine.evaluate("t", {"a": 1}, version="1.0.0").in_effect is True
    assert engine.evaluate("t", {"a": 1}).in_effect is False


def test_enforce_raises_violation_when_decision_is_not_allow(engine: PolicyEngine) -> None:
    customer = {**SPEC_CUSTOMER, "credit_score": 500}
    result = engine.evaluate("plan_eligibility.residential_basic", customer, CONTEXT)
    assert result.decision is DENY  # evaluate never raises for a denial
    with pytest.raises(PolicyViolationError) as caught:
        engine.enforce("plan_eligibility.residential_basic", customer, CONTEXT)
    error = caught.value
    assert error.decision == "DENY"
    assert error.policy_name == "plan_eligibility.residential_basic"
    assert error.policy_version == "1.0.0"
    assert [rule["name"] for rule in error.failed_rules] == ["min_credit_score"]
    assert error.tenant_id == "tenant123"
    assert error.operation == "plan_eligibility_check"
    assert "Credit score must be at least 600" in error.message
    allowed = engine.enforce("plan_eligibility.residential_basic", SPEC_CUSTOMER, CONTEXT)
    assert allowed.decision is ALLOW


def test_enforce_raises_when_decision_requires_approval() -> None:
    engine = PolicyEngine()
    engine.register_policy(policy([exists("a")], on_pass="REQUIRE_APPROVAL"))
    with pytest.raises(PolicyViolationError) as caught:
        engine.enforce("t", {"a": 1})
    assert caught.value.decision == "REQUIRE_APPROVAL"


@pytest.mark.parametrize("data", [None, [], "customer", 5])
def test_invalid_input_error_when_data_not_a_mapping(engine: PolicyEngine, data: Any) -> None:
    with pytest.raises(InvalidInputError):
        engine.evaluate("plan_eligibility.residential_basic", data)
    with pytest.raises(InvalidInputError):
        engine.is_allowed("plan_eligibility.residential_basic", data)


def test_context_mapping_is_accepted_when_not_a_policy_context(engine: PolicyEngine) -> None:
    result = engine.evaluate(
        "plan_eligibility.residential_basic",
        SPEC_CUSTOMER,
        {"tenant_id": "t9"},  # type: ignore[arg-type]
    )
    assert result.tenant_id == "t9"
    with pytest.raises(InvalidInputError):
        engine.evaluate("plan_eligibility.residential_basic", SPEC_CUSTOMER, 5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        PolicyContext(tenant_id="t", now=datetime(2026, 1, 1))


def test_not_found_error_when_policy_unknown(engine: PolicyEngine) -> None:
    with pytest.raises(PolicyNotFoundError) as caught:
        engine.evaluate("plan_eligibility.unknown", SPEC_CUSTOMER)
    assert caught.value.known == ["plan_eligibility.residential_basic"]
    with pytest.raises(PolicyNotFoundError):
        engine.is_allowed("plan_eligibility.residential_basic", SPEC_CUSTOMER, version="9.9.9")


def test_many_rules_decide_like_few_when_policy_has_fifty_rules() -> None:
    rules = [
        {"name": f"r{index}", "field": f"f{index}", "operator": "gte", "value": index}
        for index in range(50)
    ]
    engine = PolicyEngine()
    engine.register_policy(policy(rules))
    data = {f"f{index}": index for index in range(50)}
    assert engine.evaluate("t", data).decision is ALLOW
    assert engine.is_allowed("t", data) is True
    for broken in (0, 7, 8, 31, 49):
        worse = {**data, f"f{broken}": -1}
        result = engine.evaluate("t", worse)
        assert result.failed_rule_names == (f"r{broken}",)
        assert engine.is_allowed("t", worse) is False


def test_evaluate_many_gives_one_result_per_input_when_batched(engine: PolicyEngine) -> None:
    customers = [{**SPEC_CUSTOMER, "credit_score": score} for score in (500, 600, 700)]
    results = engine.evaluate_many("plan_eligibility.residential_basic", customers)
    assert [result.decision for result in results] == [DENY, ALLOW, ALLOW]


def test_results_compare_equal_when_same_evaluation(engine: PolicyEngine) -> None:
    result = engine.evaluate("plan_eligibility.residential_basic", SPEC_CUSTOMER)
    assert result == result
    assert isinstance(hash(result), int)
    assert result.rule_results[0] == result.rule_results[0]
    other = engine.evaluate("plan_eligibility.residential_basic", {})
    assert result != other


@pytest.fixture(scope="module")
def metric_reader() -> Iterator[InMemoryMetricReader]:
    with metric_reader_installed() as reader:
        yield reader


def histogram_points(reader: InMemoryMetricReader) -> list[Any]:
    data = reader.get_metrics_data()
    points: list[Any] = []
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "dotmac.policy.evaluation.duration":
                    points.extend(metric.data.data_points)
    return points


def test_duration_metric_is_recorded_when_policy_evaluated(
    metric_reader: InMemoryMetricReader,
) -> None:
    engine = PolicyEngine()
    engine.register_policy({**RESIDENTIAL, "name": "metrics.check"})
    engine.evaluate("metrics.check", SPEC_CUSTOMER)
    engine.evaluate("metrics.check", {})
    points = {
        point.attributes["decision"]: point
        for point in histogram_points(metric_reader)
        if point.attributes["policy"] == "metrics.check"
    }
    assert points["ALLOW"].count == 1
    assert points["DENY"].count == 1
    assert 0 < points["ALLOW"].sum < 50  # milliseconds


def test_explanation_is_built_once_when_read_repeatedly(engine: PolicyEngine) -> None:
    result: PolicyResult = engine.evaluate("plan_eligibility.residential_basic", {})
    assert result.rule_results is result.rule_results
    assert result.failed_rule_names == tuple(rule.name for rule in result.rule_results)


def test_rule_result_reads_like_contract_when_built_in_python() -> None:
    failed = RuleResult.of("credit", False, field="credit_score", actual=5, message="too low")
    assert (failed.name, failed.passed, failed.message, failed.required) == (
        "credit",
        False,
        "too low",
        True,
    )
    assert failed.to_dict()["actual"] == 5
    passed = RuleResult.of("credit", True, message="ignored when passed")
    assert passed.message is None
    assert passed != failed
