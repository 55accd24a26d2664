"""Every way a policy document can be wrong gives a PolicyDefinitionError naming it."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from dotmac_shared.business_logic.exceptions import PolicyDefinitionError
from dotmac_shared.business_logic.policies import (
    PolicyDocument,
    compile_policy,
    parse_policy_document,
    policy_json_schema,
)

BASE: dict[str, Any] = {
    "name": "plan_eligibility.residential_basic",
    "version": "1.0.0",
    "rules": [{"name": "min_credit", "field": "credit_score", "operator": "gte", "value": 600}],
}


def with_rule(**rule: Any) -> dict[str, Any]:
    document = copy.deepcopy(BASE)
    document["rules"].append({"name": "bad_rule", **rule})
    return document


def definition_error(document: Any) -> PolicyDefinitionError:
    with pytest.raises(PolicyDefinitionError) as caught:
        compile_policy(document)
    return caught.value


RULE_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("unknown operator", {"field": "x", "operator": "greater", "value": 1}, "unknown operator"),
    ("between one value", {"field": "x", "operator": "between", "value": [1]}, "[low, high]"),
    ("between strings", {"field": "x", "operator": "between", "value": ["a", "b"]}, "two numbers"),
    ("between bools", {"field": "x", "operator": "between", "value": [False, True]}, "numbers"),
    ("between reversed", {"field": "x", "operator": "between", "value": [5, 1]}, "low <= high"),
    ("between scalar", {"field": "x", "operator": "between", "value": 5}, "[low, high]"),
    ("regex no compile", {"field": "x", "operator": "regex", "value": "(unclosed"}, "compile"),
    ("regex too long", {"field": "x", "operator": "regex", "value": "a" * 513}, "512"),
    (
        "regex backreference",
        {"field": "x", "operator": "regex", "value": r"(a)\1"},
        "sequence: \\1",
    ),
    ("regex named backref", {"field": "x", "operator": "regex", "value": r"(?P<a>a)(?P=a)"}, "RE2"),
    ("regex lookahead", {"field": "x", "operator": "regex", "value": r"a(?=b)"}, "(?="),
    ("regex lookbehind", {"field": "x", "operator": "regex", "value": r"(?<!a)b"}, "(?<!"),
    ("regex python \\Z", {"field": "x", "operator": "regex", "value": r"a\Z"}, "sequence: \\Z"),
    ("regex python \\u", {"field": "x", "operator": "regex", "value": r"\u00e9"}, "escape"),
    ("regex huge repeat", {"field": "x", "operator": "regex", "value": "a{1001}"}, "repetition"),
    ("regex surrogate", {"field": "x", "operator": "regex", "value": "a\ud800"}, "surrogate"),
    ("regex not string", {"field": "x", "operator": "regex", "value": 5}, "pattern string"),
    ("bad path", {"field": "a..b", "operator": "exists"}, "bad path syntax"),
    ("bad path index", {"field": "a[x]", "operator": "exists"}, "bad path syntax"),
    ("bad path start", {"field": "[0].a", "operator": "exists"}, "bad path syntax"),
    ("params in field", {"field": "params.x", "operator": "exists"}, "only allowed in value_from"),
    ("bare context", {"field": "context", "operator": "exists"}, "context value"),
    ("bad value_from path", {"field": "x", "operator": "eq", "value_from": "a b"}, "value_from"),
    ("value missing", {"field": "x", "operator": "eq"}, "needs a value"),
    ("value for exists", {"field": "x", "operator": "exists", "value": 1}, "takes no value"),
    (
        "value and value_from",
        {"field": "x", "operator": "eq", "value": 1, "value_from": "y"},
        "not both",
    ),
    (
        "value_from on between",
        {"field": "x", "operator": "between", "value_from": "y"},
        "cannot compare with another field",
    ),
    ("unknown key", {"field": "x", "operator": "exists", "colour": "red"}, "unknown key 'colour'"),
    ("no operator", {"field": "x"}, "needs field and operator"),
    ("group and leaf", {"field": "x", "operator": "exists", "all": []}, "cannot also have"),
    ("two groups", {"all": [], "any": []}, "one of all/any/not"),
    ("empty any", {"any": []}, "at least one rule"),
    ("gt with list", {"field": "x", "operator": "gt", "value": [1]}, "number, string, date"),
    ("gt with nan", {"field": "x", "operator": "gt", "value": float("nan")}, "finite"),
    ("in with scalar", {"field": "x", "operator": "in", "value": "abc"}, "list of values"),
    ("len negative", {"field": "x", "operator": "len_gte", "value": -1}, "non-negative"),
    ("len bool", {"field": "x", "operator": "len_lte", "value": True}, "non-negative"),
    ("starts_with int", {"field": "x", "operator": "starts_with", "value": 1}, "needs a string"),
    ("negative weight", {"field": "x", "operator": "exists", "weight": -1}, "weight"),
    ("escalate to allow", {"field": "x", "operator": "exists", "on_fail": "ALLOW"}, "on_fail"),
    ("bad rule name", {"field": "x", "operator": "exists", "name": "has space"}, "name"),
]


@pytest.mark.parametrize(("case", "rule", "problem"), RULE_CASES, ids=[c[0] for c in RULE_CASES])
def test_error_names_policy_rule_and_problem_when_rule_invalid(
    case: str, rule: dict[str, Any], problem: str
) -> None:
    error = definition_error(with_rule(**rule))
    assert error.policy_name == "plan_eligibility.residential_basic"
    expected_rule = rule.get("name", "bad_rule")
    if case != "bad rule name":
        assert error.rule_name == expected_rule
        assert f"rule '{expected_rule}'" in error.message
    assert problem in error.message
    assert error.location is not None and error.location.startswith("rules[1]")
    assert error.to_dict()["code"] == "policy_definition_error"


def test_error_names_nested_rule_when_group_child_invalid() -> None:
    error = definition_error(
        with_rule(
            any=[
                {"name": "has_email", "field": "email", "operator": "exists"},
                {"name": "has_phone", "field": "phone", "operator": "matches"},
            ]
        )
    )
    assert error.rule_name == "has_phone"
    assert error.location == "rules[1].any[1].operator"
    assert "unknown operator 'matches'" in error.message


@pytest.mark.parametrize(
    "duplicate",
    [
        {"name": "min_credit", "field": "x", "operator": "exists"},
        {"name": "g", "all": [{"name": "min_credit", "field": "x", "operator": "exists"}]},
        {"name": "g", "not": {"name": "g", "field": "x", "operator": "exists"}},
    ],
)
def test_error_names_duplicate_when_rule_names_repeat(duplicate: dict[str, Any]) -> None:
    document = copy.deepcopy(BASE)
    document["rules"].append(duplicate)
    error = definition_error(document)
    assert "duplicate rule name" in error.message
    assert error.rule_name in {"min_credit", "g"}


@pytest.mark.parametrize("version", ["1.0", "1", "v1.0.0", "01.0.0", "1.0.0-", "", 1.0, None])
def test_error_names_version_when_not_semver(version: Any) -> None:
    document = {**copy.deepcopy(BASE), "version": version}
    error = definition_error(document)
    assert error.location == "version"
    assert error.policy_name == BASE["name"]


@pytest.mark.parametrize("version", ["0.0.1", "1.2.3-rc.1", "10.20.30+build.5", "1.0.0-alpha.beta"])
def test_document_accepts_semver_when_valid(version: str) -> None:
    assert compile_policy({**BASE, "version": version}).version == version


def nested(depth: int) -> dict[str, Any]:
    rule: dict[str, Any] = {"name": "leaf", "field": "x", "operator": "exists"}
    for level in range(depth - 1):
        rule = {"name": f"group_{level}", "all": [rule]}
    return rule


def test_document_accepts_nesting_when_depth_is_eight() -> None:
    policy = compile_policy({**BASE, "rules": [nested(8)]})
    assert policy.evaluate({"x": 1}).passed is True


@pytest.mark.parametrize("depth", [9, 50, 5000])
def test_error_names_rule_when_nesting_deeper_than_eight(depth: int) -> None:
    error = definition_error({**BASE, "rules": [nested(depth)]})
    assert "deeper than 8" in error.message
    assert error.rule_name is not None


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"name": "Has Caps"}, "name"),
        ({"name": None}, "name"),
        ({"owner": "me"}, "unknown key 'owner'"),
        ({"rules": []}, "rules"),
        ({"threshold": 1.5}, "threshold"),
        ({"on_pass": "MAYBE"}, "on_pass"),
        ({"effective_from": "2026-01-01T00:00:00"}, "timezone"),
        ({"effective_from": "not a date"}, "ISO date"),
        (
            {"effective_from": "2026-02-01T00:00:00Z", "effective_until": "2026-01-01T00:00:00Z"},
            "before effective_until",
        ),
        (
            {
                "parameters": {},
                "rules": [
                    {"name": "r", "field": "x", "operator": "gte", "value_from": "params.min"}
                ],
            },
            "no such parameter",
        ),
        (
            {
                "parameters": {"min": "abc"},
                "rules": [
                    {"name": "r", "field": "x", "operator": "between", "value_from": "params.min"}
                ],
            },
            "between needs",
        ),
        (
            {
                "parameters": {"pattern": r"^(\w+) \1$"},
                "rules": [
                    {"name": "r", "field": "x", "operator": "regex", "value_from": "params.pattern"}
                ],
            },
            "RE2",
        ),
        (
            {
                "test_cases": [
                    {"name": "c", "input": {}, "expect": "ALLOW", "failed_rules": ["nope"]}
                ]
            },
            "unknown top-level rules",
        ),
        ({"test_cases": [{"name": "c", "input": {}, "expect": "MAYBE"}]}, "expect"),
        (
            {
                "test_cases": [
                    {"name": "c", "input": {}, "expect": "ALLOW"},
                    {"name": "c", "input": {}, "expect": "DENY"},
                ]
            },
            "duplicate test case",
        ),
    ],
)
def test_error_names_problem_when_policy_fields_invalid(
    change: dict[str, Any], problem: str
) -> None:
    error = definition_error({**copy.deepcopy(BASE), **change})
    assert problem in error.message


@pytest.mark.parametrize("document", [None, [], "name: x", 5])
def test_error_when_document_not_a_mapping(document: Any) -> None:
    error = definition_error(document)
    assert "mapping" in error.message


def test_error_lists_every_problem_when_several_rules_invalid() -> None:
    document = copy.deepcopy(BASE)
    document["rules"] += [
        {"name": "a", "field": "x", "operator": "nope", "value": 1},
        {"name": "b", "field": "x", "operator": "between", "value": [3, 1]},
    ]
    error = definition_error(document)
    assert error.rule_name == "a"
    assert len(error.metadata["problems"]) == 2
    assert "rule 'b'" in error.message


def test_nothing_is_evaluated_when_document_uses_code_like_text() -> None:
    policy = compile_policy(
        {
            **BASE,
            "rules": [
                {
                    "name": "r",
                    "field": "x",
                    "operator": "eq",
                    "value": "__import__('os').system('x')",
                }
            ],
        }
    )
    assert policy.evaluate({"x": "__import__('os').system('x')"}).passed is True
    assert policy.evaluate({"x": 0}).passed is False


def test_json_schema_describes_document_when_exported() -> None:
    schema = policy_json_schema()
    assert schema == PolicyDocument.model_json_schema(by_alias=True)
    json.dumps(schema)
    assert {"name", "version", "rules"} <= set(schema["required"])
    rule = schema["$defs"]["RuleDocument"]
    assert {"all", "any", "not", "value_from", "operator"} <= set(rule["properties"])
    assert schema["additionalProperties"] is False
    operators = schema["$defs"]["Operator"]["enum"]
    assert "between" in operators and "len_lte" in operators


def test_parse_returns_same_document_when_already_validated() -> None:
    document = parse_policy_document(BASE)
    assert parse_policy_document(document) is document
    assert document.rules[0].operator == "gte"
