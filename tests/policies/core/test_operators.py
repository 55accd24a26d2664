"""Every operator, on present, missing and wrong-typed input, through the compiled engine."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dotmac_shared.business_logic.policies import (
    OPERATORS,
    Policy,
    PolicyContext,
    PolicyDecision,
    compile_policy,
)

MISSING = object()


def one_rule(operator: str, value: Any = MISSING, *, field: str = "x", **extra: Any) -> Policy:
    rule: dict[str, Any] = {"name": "r", "field": field, "operator": operator, **extra}
    if value is not MISSING:
        rule["value"] = value
    return compile_policy({"name": "t", "version": "1.0.0", "rules": [rule]})


def outcome(policy: Policy, data: dict[str, Any], context: PolicyContext | None = None) -> bool:
    """Evaluate both paths; they must agree."""
    result = policy.evaluate(data, context)
    allowed = policy.is_allowed(data, context)
    assert allowed is (result.decision is PolicyDecision.ALLOW)
    assert result.passed is (result.decision is PolicyDecision.ALLOW)
    (rule,) = result.rule_results
    assert rule.passed is result.passed
    return result.passed


CASES: list[tuple[str, Any, Any, bool]] = [
    # operator, expected value, actual input value, passes
    ("eq", "residential", "residential", True),
    ("eq", "residential", "business", False),
    ("eq", 5, 5, True),
    ("eq", 5, 5.0, True),
    ("eq", 5, Decimal("5.00"), True),
    ("eq", 0.1, Decimal("0.1"), True),
    ("eq", 1, True, False),
    ("eq", True, 1, False),
    ("eq", True, True, True),
    ("eq", None, None, True),
    ("eq", None, 0, False),
    ("eq", "5", 5, False),
    ("eq", [1, 2], [1, 2], True),
    ("ne", "residential", "business", True),
    ("ne", "residential", "residential", False),
    ("ne", 1, True, True),
    ("gt", 600, 601, True),
    ("gt", 600, 600, False),
    ("gte", 600, 600, True),
    ("gte", 600, 599.99, False),
    ("gte", 600, Decimal("650"), True),
    ("gte", 600, Decimal("NaN"), False),
    ("gte", 600, float("nan"), False),
    ("gte", 600, "650", False),
    ("gte", 600, None, False),
    ("gte", 0, True, False),
    ("gte", 0.1, Decimal("0.1"), True),
    ("lt", 10, 9, True),
    ("lt", 10, 10, False),
    ("lte", 0, 0.0, True),
    ("lte", 0, Decimal("0.00"), True),
    ("lte", 0, Decimal("0.01"), False),
    ("lte", 0, False, False),
    ("lte", 0, [0], False),
    ("gte", "b", "c", True),
    ("gte", "b", 3, False),
    ("gte", date(2026, 1, 1), date(2026, 6, 1), True),
    ("gte", date(2026, 1, 1), "2026-06-01", True),
    ("lt", datetime(2026, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC), True),
    ("lt", datetime(2026, 1, 1, tzinfo=UTC), datetime(2025, 1, 1), False),  # naive vs aware
    ("in", ["gold", "silver"], "gold", True),
    ("in", ["gold", "silver"], "bronze", False),
    ("in", [1, 2], 2.0, True),
    ("in", [1, 2], True, False),
    ("in", [0.1], Decimal("0.1"), True),
    ("in", [[1], {"a": 1}], [1], True),
    ("in", ["a"], ["a"], False),
    ("not_in", ["banned"], "ok", True),
    ("not_in", ["banned"], "banned", False),
    ("contains", "x", "box", True),
    ("contains", "y", "box", False),
    ("contains", "a", ["a", "b"], True),
    ("contains", 1, [True], False),
    ("contains", 1, [1.0], True),
    ("contains", "k", {"k": 1}, True),
    ("contains", 1, "123", False),
    ("contains", "a", 5, False),
    ("not_contains", "fraud", ["ok"], True),
    ("not_contains", "fraud", ["fraud"], False),
    ("not_contains", "a", 5, False),
    ("between", [10, 20], 10, True),
    ("between", [10, 20], 20, True),
    ("between", [10, 20], 21, False),
    ("between", [0, 0.5], Decimal("0.5"), True),
    ("between", [10, 20], "15", False),
    ("between", [0, 1], True, False),
    ("regex", r"^[A-Z]{2}\d+$", "AB123", True),
    ("regex", r"^[A-Z]{2}\d+$", "ab123", False),
    ("regex", r"\d", 5, False),
    ("regex", r"a", "a" * 20_000, False),
    ("starts_with", "+1", "+15551234", True),
    ("starts_with", "+1", "+44", False),
    ("starts_with", "1", 15, False),
    ("ends_with", ".com", "a@b.com", True),
    ("ends_with", ".com", "a@b.org", False),
    ("len_gte", 2, "ab", True),
    ("len_gte", 2, ["a"], False),
    ("len_gte", 1, {"a": 1}, True),
    ("len_gte", 1, 5, False),
    ("len_lte", 2, "abc", False),
    ("len_lte", 2, [], True),
]


@pytest.mark.parametrize(("operator", "expected", "actual", "passes"), CASES)
def test_operator_decides_when_value_present(
    operator: str, expected: Any, actual: Any, passes: bool
) -> None:
    assert outcome(one_rule(operator, expected), {"x": actual}) is passes


@pytest.mark.parametrize(
    ("operator", "actual", "passes"),
    [
        ("exists", 0, True),
        ("exists", None, False),
        ("not_exists", None, True),
        ("not_exists", "", False),
        ("is_true", True, True),
        ("is_true", 1, False),
        ("is_true", "true", False),
        ("is_false", False, True),
        ("is_false", 0, False),
        ("is_false", None, False),
    ],
)
def test_valueless_operator_decides_when_value_present(
    operator: str, actual: Any, passes: bool
) -> None:
    assert outcome(one_rule(operator), {"x": actual}) is passes


def test_every_operator_is_covered_when_listing_cases() -> None:
    covered = {case[0] for case in CASES} | {"exists", "not_exists", "is_true", "is_false"}
    assert covered == set(OPERATORS)


SAMPLE_VALUES = {
    "eq": 1,
    "ne": 1,
    "gt": 1,
    "gte": 1,
    "lt": 1,
    "lte": 1,
    "in": [1],
    "not_in": [1],
    "contains": "a",
    "not_contains": "a",
    "between": [0, 1],
    "regex": "a",
    "starts_with": "a",
    "ends_with": "a",
    "len_gte": 1,
    "len_lte": 1,
}


@pytest.mark.parametrize("operator", sorted(OPERATORS - {"not_exists"}))
def test_rule_fails_with_missing_flag_when_field_absent(operator: str) -> None:
    policy = one_rule(operator, SAMPLE_VALUES.get(operator, MISSING))
    for data in ({}, {"other": 1}):
        result = policy.evaluate(data)
        (rule,) = result.rule_results
        assert rule.passed is False
        assert rule.missing is True
        assert rule.message == "x is missing"
        assert result.decision is PolicyDecision.DENY
        assert policy.is_allowed(data) is False


def test_not_exists_passes_when_field_absent() -> None:
    assert outcome(one_rule("not_exists"), {}) is True


def test_custom_message_is_used_when_field_missing() -> None:
    policy = one_rule("gte", 600, message="Credit score too low")
    (rule,) = policy.evaluate({}).rule_results
    assert rule.message == "Credit score too low"
    assert rule.detail == "x is missing"


@pytest.mark.parametrize(
    ("operator", "expected", "actual"),
    [
        ("gte", 600, "abc"),
        ("lt", 5, None),
        ("between", [1, 2], "1"),
        ("is_true", None, "yes"),
        ("starts_with", "a", 1),
        ("len_gte", 1, 3),
        ("contains", "a", 3),
        ("regex", "a", ["a"]),
    ],
)
def test_message_names_type_mismatch_when_input_has_wrong_type(
    operator: str, expected: Any, actual: Any
) -> None:
    policy = one_rule(operator, MISSING if expected is None else expected)
    (rule,) = policy.evaluate({"x": actual}).rule_results
    assert rule.passed is False
    assert rule.missing is False
    assert "has type" in (rule.message or "")


def test_business_message_keeps_type_detail_when_input_has_wrong_type() -> None:
    policy = one_rule("gte", 600, message="Credit score too low")
    (rule,) = policy.evaluate({"x": "abc"}).rule_results
    assert rule.message is not None
    assert rule.message.startswith("Credit score too low")
    assert "has type string, expected a number" in rule.message


def test_failure_detail_shows_actual_and_expected_when_comparison_fails() -> None:
    (rule,) = one_rule("gte", 600).evaluate({"x": 550}).rule_results
    assert rule.detail == "x is 550, expected >= 600"
    assert (rule.actual, rule.expected, rule.operator, rule.field) == (550, 600, "gte", "x")


@pytest.mark.parametrize(
    ("path", "data", "passes"),
    [
        ("location.service_coverage", {"location": {"service_coverage": True}}, True),
        ("location.service_coverage", {"location": {"service_coverage": False}}, False),
        ("location.service_coverage", {"location": "downtown"}, False),
        ("location.service_coverage", {"location": None}, False),
        ("devices[0].type", {"devices": [{"type": "ont"}]}, True),
        ("devices[1].type", {"devices": [{"type": "ont"}]}, False),
        ("devices[0].type", {"devices": "ont"}, False),
        ("a.b.c", {"a": {"b": {"c": "ont"}}}, True),
        ("a.b.c", {"a": {"b": ["ont"]}}, False),
    ],
)
def test_nested_path_resolves_when_structure_matches(
    path: str, data: dict[str, Any], passes: bool
) -> None:
    expected = True if path.endswith("coverage") else "ont"
    policy = one_rule("eq", expected, field=path)
    assert outcome(policy, data) is passes


def test_lookup_leaves_defaultdict_unchanged_when_key_missing() -> None:
    data: defaultdict[str, Any] = defaultdict(lambda: 700)
    data["location"] = defaultdict(lambda: True)
    policy = compile_policy(
        {
            "name": "t",
            "version": "1.0.0",
            "rules": [
                {"name": "a", "field": "credit_score", "operator": "gte", "value": 600},
                {"name": "b", "field": "location.ok", "operator": "is_true"},
            ],
        }
    )
    assert policy.evaluate(data).failed_rule_names == ("a", "b")
    assert policy.is_allowed(data) is False
    assert set(data) == {"location"}
    assert dict(data["location"]) == {}


def test_rule_compares_field_value_when_value_from_names_other_field() -> None:
    policy = one_rule("lte", field="requested", value_from="credit_limit")
    assert outcome(policy, {"requested": 500, "credit_limit": Decimal("1000")}) is True
    assert outcome(policy, {"requested": 1500, "credit_limit": 1000}) is False
    result = policy.evaluate({"requested": 1500, "credit_limit": 1000})
    (rule,) = result.rule_results
    assert (rule.actual, rule.expected) == (1500, 1000)


def test_rule_fails_as_missing_when_value_from_field_absent() -> None:
    policy = one_rule("lte", field="requested", value_from="credit_limit")
    (rule,) = policy.evaluate({"requested": 1}).rule_results
    assert rule.passed is False
    assert rule.missing is True
    assert "credit_limit" in (rule.message or "")


@pytest.mark.parametrize(
    ("operator", "actual", "other", "passes"),
    [
        ("eq", "a", "a", True),
        ("ne", "a", "b", True),
        ("gt", 2, 1, True),
        ("gte", "2026-01-02", date(2026, 1, 1), True),
        ("lt", 1, "2", False),
        ("in", "a", ["a", "b"], True),
        ("in", "a", "abc", False),
        ("not_in", "c", ["a"], True),
        ("contains", ["a"], "a", True),
        ("not_contains", ["a"], "b", True),
        ("starts_with", "abc", "ab", True),
        ("ends_with", "abc", 3, False),
        ("len_gte", "abc", 3, True),
        ("len_lte", "abc", True, False),
    ],
)
def test_dynamic_operator_decides_when_value_from_input(
    operator: str, actual: Any, other: Any, passes: bool
) -> None:
    policy = one_rule(operator, value_from="other")
    assert outcome(policy, {"x": actual, "other": other}) is passes


def test_value_from_params_resolves_when_compiled() -> None:
    policy = compile_policy(
        {
            "name": "t",
            "version": "1.0.0",
            "parameters": {"tiers": {"silver": {"min": 25000}}},
            "rules": [
                {
                    "name": "r",
                    "field": "revenue",
                    "operator": "gte",
                    "value_from": "params.tiers.silver.min",
                }
            ],
        }
    )
    assert outcome(policy, {"revenue": 30000}) is True
    assert outcome(policy, {"revenue": 100}) is False
    assert policy.evaluate({"revenue": 1}).rule_results[0].expected == 25000


@pytest.mark.parametrize(
    ("path", "context", "passes"),
    [
        ("context.tenant_id", PolicyContext(tenant_id="tenant123"), True),
        ("context.tenant_id", PolicyContext(tenant_id="other"), False),
        ("context.tenant_id", None, False),
        ("context.region", PolicyContext(tenant_id="t", attributes={"region": "tenant123"}), True),
        (
            "context.attributes.region",
            PolicyContext(tenant_id="t", attributes={"region": "tenant123"}),
            True,
        ),
        ("context.operation", PolicyContext(tenant_id="t", operation="tenant123"), True),
    ],
)
def test_context_path_resolves_when_context_given(
    path: str, context: PolicyContext | None, passes: bool
) -> None:
    policy = one_rule("eq", "tenant123", field=path)
    assert outcome(policy, {}, context) is passes


def test_context_now_compares_when_value_from_context_now() -> None:
    policy = one_rule("gt", field="expires_at", value_from="context.now")
    now = datetime(2026, 6, 1, tzinfo=UTC)
    context = PolicyContext(tenant_id="t", now=now)
    assert outcome(policy, {"expires_at": datetime(2027, 1, 1, tzinfo=UTC)}, context) is True
    assert outcome(policy, {"expires_at": "2026-01-01T00:00:00+00:00"}, context) is False


class Exploding:
    """An input object whose comparisons raise."""

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("boom")

    __hash__ = object.__hash__


def test_rule_fails_with_reason_when_input_comparison_raises() -> None:
    policy = compile_policy(
        {
            "name": "t",
            "version": "1.0.0",
            "rules": [
                {"name": "a", "field": "x", "operator": "eq", "value": "s"},
                {"name": "b", "field": "y", "operator": "exists"},
            ],
        }
    )
    result = policy.evaluate({"x": Exploding(), "y": 1})
    assert result.decision is PolicyDecision.DENY
    (failed,) = result.failed_rules
    assert failed.name == "a"
    assert "could not be evaluated" in (failed.detail or "")
    assert policy.is_allowed({"x": Exploding(), "y": 1}) is False


@given(
    st.one_of(
        st.integers(-(10**6), 10**6),
        st.floats(allow_nan=True, allow_infinity=True),
        st.decimals(allow_nan=True, allow_infinity=True, places=3),
        st.booleans(),
        st.text(max_size=3),
        st.none(),
    ),
    st.sampled_from(["gt", "gte", "lt", "lte", "eq"]),
    st.one_of(st.integers(-1000, 1000), st.floats(-1000, 1000).map(lambda v: round(v, 3))),
)
def test_numeric_operator_matches_decimal_reference_when_inputs_vary(
    actual: Any, operator: str, expected: float
) -> None:
    passes = outcome(one_rule(operator, expected), {"x": actual})
    if isinstance(actual, bool) or not isinstance(actual, int | float | Decimal):
        assert passes is False
        return
    left = Decimal(repr(actual)) if isinstance(actual, float) else Decimal(actual)
    if left.is_nan():
        assert passes is False
        return
    right = Decimal(repr(expected)) if isinstance(expected, float) else Decimal(expected)
    reference = {
        "gt": left > right,
        "gte": left >= right,
        "lt": left < right,
        "lte": left <= right,
        "eq": left == right,
    }[operator]
    assert passes is reference


# --- regex: RE2, linear in the input ---------------------------------------------------------

#: Patterns that backtrack for seconds to minutes in Python's ``re`` on these inputs; the
#: first input of each matches nothing, the second matches.
HOSTILE_REGEXES: list[tuple[str, str, str]] = [
    (r"^(a|a)*$", "a" * 27 + "!", "a" * 27),
    (r"\S+@\S+\.\S+", "@" * 2001, "user@example.com"),
    (r".*.*=", "a" * 5000, "a" * 4999 + "="),
    (r".*.*.*=", "a" * 1000, "a" * 999 + "="),
    (r"(a+)+$", "a" * 40 + "!", "a" * 40),
    (r"(x+x+)+y", "x" * 5000, "x" * 4999 + "y"),
]


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("pattern", "no_match", "match"), HOSTILE_REGEXES, ids=[c[0] for c in HOSTILE_REGEXES]
)
def test_regex_decides_in_linear_time_when_pattern_backtracks_in_python(
    pattern: str, no_match: str, match: str
) -> None:
    policy = one_rule("regex", pattern)
    for _ in range(20):  # one backtracking search alone would outlast the timeout
        assert outcome(policy, {"x": no_match}) is False
        assert outcome(policy, {"x": match}) is True
    (rule,) = policy.evaluate({"x": no_match}).rule_results
    assert rule.detail is not None and "does not match" in rule.detail


@pytest.mark.parametrize(
    ("pattern", "actual", "passes"),
    [
        (r"^\d+$", "123", True),
        (r"^\d+$", "١٢٣", False),  # RE2's \d is ASCII only
        (r"^a$", "a\n", False),  # $ is the very end of the text (Python's also before a final \n)
        (r"^a\z", "a", True),
        (r"^\x{e9}t\x{e9}$", "été", True),
        (r"(?i)^ÉTÉ$", "été", True),
        (r"^(?P<area>\d{3})-\d{4}$", "555-1234", True),
        (r"^.$", "😀", True),  # one code point, four UTF-8 bytes
        (r"b", "a😀b", True),
    ],
)
def test_regex_follows_re2_syntax_when_pattern_uses_it(
    pattern: str, actual: str, passes: bool
) -> None:
    assert outcome(one_rule("regex", pattern), {"x": actual}) is passes


def test_regex_fails_with_reason_when_input_has_lone_surrogate() -> None:
    policy = one_rule("regex", "a")
    assert outcome(policy, {"x": "a\ud800"}) is False
    (rule,) = policy.evaluate({"x": "a\ud800"}).rule_results
    assert rule.detail is not None and "surrogate" in rule.detail
