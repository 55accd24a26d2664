"""Hypothesis: compiled policies never raise on any input and agree with a reference model."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dotmac_shared.business_logic.exceptions import PolicyDefinitionError
from dotmac_shared.business_logic.policies import (
    OPERATORS,
    PolicyContext,
    PolicyDecision,
    compile_policy,
)

# --- inputs -------------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.dates(),
    st.datetimes(),
    st.datetimes(timezones=st.just(UTC)),
    st.sampled_from(["residential", "2026-01-01", "gold", "a@b.com", "+1555"]),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.sampled_from(["service_coverage", "type", "x", "y"]), children, max_size=4
        ),
    ),
    max_leaves=12,
)
FIELDS = ["customer_type", "score", "balance", "location", "devices", "email", "tags", "limit"]
inputs = st.dictionaries(st.sampled_from(FIELDS), values, max_size=len(FIELDS))

KITCHEN_SINK = compile_policy(
    {
        "name": "kitchen.sink",
        "version": "1.0.0",
        "threshold": 0.5,
        "parameters": {"min_score": 600, "names": ["gold", "silver"]},
        "rules": [
            {"name": "eq", "field": "customer_type", "operator": "eq", "value": "residential"},
            {"name": "eq_num", "field": "score", "operator": "eq", "value": 0.1},
            {"name": "ne", "field": "customer_type", "operator": "ne", "value": "business"},
            {"name": "gt", "field": "score", "operator": "gt", "value": 1},
            {
                "name": "gte_param",
                "field": "score",
                "operator": "gte",
                "value_from": "params.min_score",
            },
            {"name": "lt_date", "field": "balance", "operator": "lt", "value": "2026-01-01"},
            {"name": "lte", "field": "balance", "operator": "lte", "value": 0},
            {"name": "in", "field": "tags", "operator": "in", "value": ["gold", 1, None, [1]]},
            {"name": "not_in", "field": "tags", "operator": "not_in", "value_from": "params.names"},
            {"name": "contains", "field": "tags", "operator": "contains", "value": "gold"},
            {"name": "not_contains", "field": "email", "operator": "not_contains", "value": "@x"},
            {"name": "exists", "field": "email", "operator": "exists", "required": False},
            {"name": "not_exists", "field": "limit", "operator": "not_exists", "required": False},
            {"name": "is_true", "field": "location.service_coverage", "operator": "is_true"},
            {
                "name": "is_false",
                "field": "devices[0].x",
                "operator": "is_false",
                "required": False,
            },
            {"name": "between", "field": "score", "operator": "between", "value": [0, 1000]},
            {"name": "regex", "field": "email", "operator": "regex", "value": "^[a-z]+@"},
            {"name": "starts", "field": "email", "operator": "starts_with", "value": "a"},
            {"name": "ends", "field": "email", "operator": "ends_with", "value": ".com"},
            {"name": "len_gte", "field": "tags", "operator": "len_gte", "value": 1},
            {"name": "len_lte", "field": "devices", "operator": "len_lte", "value": 3},
            {"name": "dyn", "field": "score", "operator": "lte", "value_from": "limit"},
            {"name": "dyn_in", "field": "customer_type", "operator": "in", "value_from": "tags"},
            {"name": "ctx", "field": "context.region", "operator": "eq", "value": "eu"},
            {"name": "now", "field": "balance", "operator": "lt", "value_from": "context.now"},
            {
                "name": "group",
                "any": [
                    {"name": "g_email", "field": "email", "operator": "exists"},
                    {
                        "name": "g_not",
                        "not": {"name": "g_tags", "field": "tags", "operator": "exists"},
                    },
                ],
                "on_fail": "REQUIRE_APPROVAL",
                "required": False,
                "weight": 2,
            },
        ],
    }
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(inputs, st.sampled_from([None, PolicyContext(tenant_id="t", attributes={"region": "eu"})]))
def test_evaluation_never_raises_when_inputs_are_arbitrary(
    data: dict[str, Any], context: PolicyContext | None
) -> None:
    result = KITCHEN_SINK.evaluate(data, context)
    assert KITCHEN_SINK.is_allowed(data, context) is (result.decision is PolicyDecision.ALLOW)
    assert len(result.rule_results) == 26
    for rule in result.rule_results:
        assert rule.passed or rule.message
    assert result.passed is (
        all(rule.passed for rule in result.rule_results if rule.required)
        and result.score + 1e-9 >= result.threshold
    )
    json.dumps(result.to_dict())
    assert str(result)


# --- random documents ---------------------------------------------------------------------------

names = st.text(alphabet="abcxyz_.", min_size=1, max_size=6)
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def rules(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    leaf = st.fixed_dictionaries(
        {"name": names},
        optional={
            "field": st.one_of(
                st.sampled_from(["x", "a.b", "c[0].d", "context.tenant_id", "a..b", ""]), junk
            ),
            "operator": st.one_of(st.sampled_from(sorted(OPERATORS)), st.text(max_size=5), junk),
            "value": junk,
            "value_from": st.one_of(
                st.sampled_from(["y", "params.p", "params.q", "context.now"]), junk
            ),
            "required": st.one_of(st.booleans(), junk),
            "weight": junk,
            "priority": junk,
            "message": junk,
            "on_fail": st.one_of(st.sampled_from(["DENY", "REQUIRE_APPROVAL", "ALLOW"]), junk),
            "surprise": junk,
        },
    )
    if depth == 0:
        return leaf
    child = rules(depth - 1)
    group = st.fixed_dictionaries(
        {"name": names},
        optional={
            "all": st.lists(child, max_size=3),
            "any": st.lists(child, max_size=3),
            "not": child,
        },
    )
    return st.one_of(leaf, group)


documents = st.fixed_dictionaries(
    {"rules": st.one_of(st.lists(rules(3), max_size=4), junk)},
    optional={
        "name": st.one_of(names, junk),
        "version": st.one_of(st.sampled_from(["1.0.0", "1.0", "2.1.0-rc.1"]), junk),
        "threshold": junk,
        "parameters": st.one_of(st.fixed_dictionaries({"p": junk}), junk),
        "effective_from": st.one_of(st.sampled_from(["2026-01-01", "2026-01-01T00:00:00"]), junk),
        "on_pass": st.one_of(st.sampled_from(["ALLOW", "DENY"]), junk),
        "test_cases": junk,
    },
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(documents, inputs)
def test_only_definition_errors_when_documents_are_arbitrary(
    document: dict[str, Any], data: dict[str, Any]
) -> None:
    try:
        policy = compile_policy(document)
    except PolicyDefinitionError as error:
        assert error.message.startswith("policy")
        return
    result = policy.evaluate(data)
    assert policy.is_allowed(data) is (result.decision is PolicyDecision.ALLOW)
    json.dumps(result.to_dict())


# --- reference model ----------------------------------------------------------------------------

REF_FIELDS = ["f0", "f1", "f2"]
ref_values = st.one_of(st.none(), st.booleans(), st.integers(0, 4), st.sampled_from(["a", "b"]))
ABSENT = object()


def same(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    return type(left) is type(right) and left == right


def reference_leaf(rule: dict[str, Any], data: dict[str, Any]) -> bool:
    value = data.get(rule["field"], ABSENT)
    operator, expected = rule["operator"], rule.get("value")
    if operator == "exists":
        return value is not ABSENT and value is not None
    if operator == "not_exists":
        return value is ABSENT or value is None
    if value is ABSENT:
        return False
    if operator == "is_true":
        return value is True
    if operator == "eq":
        return same(value, expected)
    if operator == "ne":
        return not same(value, expected)
    if operator == "in":
        return any(same(value, item) for item in expected)
    numbers = isinstance(value, int) and not isinstance(value, bool)
    if operator == "gte":
        return numbers and value >= expected
    if operator == "lt":
        return numbers and value < expected
    raise AssertionError(operator)


def reference_rule(rule: dict[str, Any], data: dict[str, Any]) -> bool:
    if "all" in rule:
        return all(reference_rule(child, data) for child in rule["all"])
    if "any" in rule:
        return any(reference_rule(child, data) for child in rule["any"])
    if "not" in rule:
        return not reference_rule(rule["not"], data)
    return reference_leaf(rule, data)


@st.composite
def ref_leaf(draw: st.DrawFn) -> dict[str, Any]:
    operator = draw(
        st.sampled_from(["eq", "ne", "gte", "lt", "in", "exists", "not_exists", "is_true"])
    )
    rule: dict[str, Any] = {"field": draw(st.sampled_from(REF_FIELDS)), "operator": operator}
    if operator in ("eq", "ne"):
        rule["value"] = draw(ref_values)
    elif operator in ("gte", "lt"):
        rule["value"] = draw(st.integers(0, 4))
    elif operator == "in":
        rule["value"] = draw(st.lists(ref_values, max_size=3))
    return rule


ref_rule = st.recursive(
    ref_leaf(),
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda rules: {"all": rules}),
        st.lists(children, min_size=1, max_size=3).map(lambda rules: {"any": rules}),
        children.map(lambda rule: {"not": rule}),
    ),
    max_leaves=6,
)


def name_rules(rules: list[dict[str, Any]], prefix: str = "r") -> list[dict[str, Any]]:
    named = []
    for index, rule in enumerate(rules):
        rule = {**rule, "name": f"{prefix}{index}"}
        for key in ("all", "any"):
            if key in rule:
                rule[key] = name_rules(rule[key], f"{rule['name']}_")
        if "not" in rule:
            rule["not"] = name_rules([rule["not"]], f"{rule['name']}_")[0]
        named.append(rule)
    return named


@st.composite
def ref_policies(draw: st.DrawFn) -> dict[str, Any]:
    top = name_rules(draw(st.lists(ref_rule, min_size=1, max_size=10)))
    for rule in top:
        rule["required"] = draw(st.booleans())
        rule["weight"] = draw(st.sampled_from([0, 0.5, 1, 2]))
        rule["priority"] = draw(st.integers(0, 3))
        if draw(st.booleans()):
            rule["on_fail"] = draw(st.sampled_from(["DENY", "REQUIRE_APPROVAL"]))
    return {
        "name": "ref",
        "version": "1.0.0",
        "threshold": draw(st.sampled_from([0.0, 0.25, 0.5, 1.0])),
        "on_pass": draw(st.sampled_from(list(PolicyDecision))).value,
        "on_fail": draw(st.sampled_from(list(PolicyDecision))).value,
        "rules": top,
    }


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(ref_policies(), st.dictionaries(st.sampled_from(REF_FIELDS), ref_values))
def test_compiled_policy_matches_reference_when_rules_vary(
    document: dict[str, Any], data: dict[str, Any]
) -> None:
    policy = compile_policy(document)
    result = policy.evaluate(data)
    rules = document["rules"]
    outcomes = {rule["name"]: reference_rule(rule, data) for rule in rules}
    scored = [rule for rule in rules if not rule["required"]]
    total = sum(rule["weight"] for rule in scored)
    gained = sum(rule["weight"] for rule in scored if outcomes[rule["name"]])
    score = gained / total if total > 0 else 1.0
    failed_required = [rule for rule in rules if rule["required"] and not outcomes[rule["name"]]]
    passed = not failed_required and score + 1e-9 >= document["threshold"]
    if passed:
        decision = document["on_pass"]
    elif failed_required and all(r.get("on_fail") == "REQUIRE_APPROVAL" for r in failed_required):
        decision = "REQUIRE_APPROVAL"
    else:
        decision = document["on_fail"]
    assert {r.name: r.passed for r in result.rule_results} == outcomes
    assert math.isclose(result.score, score)
    assert result.passed is passed
    assert result.decision.value == decision
    assert policy.is_allowed(data) is (decision == "ALLOW")
    priorities = [r.priority for r in result.rule_results]
    assert priorities == sorted(priorities)


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)))
def test_window_matches_dates_when_now_varies(day: date) -> None:
    policy = compile_policy(
        {
            "name": "w",
            "version": "1.0.0",
            "effective_from": "2026-01-01",
            "effective_until": "2030-01-01",
            "rules": [{"name": "a", "field": "a", "operator": "exists"}],
        }
    )
    now = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    result = policy.evaluate({"a": Decimal(1)}, PolicyContext(tenant_id="t", now=now))
    assert result.in_effect is (date(2026, 1, 1) <= day < date(2030, 1, 1))
    assert result.passed is result.in_effect
