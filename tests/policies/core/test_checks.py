"""Static checks: each check with a document that triggers it and one that does not."""

from __future__ import annotations

import itertools
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dotmac_shared.business_logic.exceptions import PolicyDefinitionError
from dotmac_shared.business_logic.policies import (
    Finding,
    PolicyEngine,
    PolicyRegistry,
    RuleResult,
    Severity,
    check_policy,
    compile_policy,
    load_policy_directory,
)
from dotmac_shared.business_logic.policies._eligibility import DEFINITIONS_DIR
from dotmac_shared.business_logic.policies.core._checks import CHECK_CODES, raise_for_errors


def leaf(name: str, field: str, operator: str, *value: Any, **extra: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"name": name, "field": field, "operator": operator, **extra}
    if value:
        rule["value"] = value[0]
    return rule


def doc(*rules: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"name": "checked", "version": "1.0.0", "rules": list(rules), **fields}


def codes(document: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [(f.severity.value, f.code, f.rule) for f in check_policy(document)]


# --- never passes / always passes ------------------------------------------------------------


def test_never_passes_is_an_error_when_required_rules_contradict_on_one_field() -> None:
    findings = check_policy(doc(leaf("high", "score", "gte", 600), leaf("low", "score", "lt", 500)))
    assert [(f.severity, f.code, f.rule, f.location) for f in findings] == [
        (Severity.ERROR, "never-passes", "low", "rules[1]")
    ]
    assert "'high'" in findings[0].message
    assert "score" in findings[0].message


def test_no_finding_when_required_ranges_overlap() -> None:
    assert codes(doc(leaf("high", "score", "gte", 500), leaf("low", "score", "lt", 600))) == []


def test_never_passes_names_the_group_when_an_all_group_is_unsatisfiable() -> None:
    group = {"name": "band", "all": [leaf("high", "x", "gte", 600), leaf("low", "x", "lte", 599)]}
    findings = check_policy(doc(group))
    assert [(f.code, f.rule, f.location) for f in findings] == [
        ("never-passes", "band", "rules[0]")
    ]
    assert "'high', 'low'" in findings[0].message


def test_no_finding_when_an_all_group_touches_at_an_included_bound() -> None:
    group = {"name": "band", "all": [leaf("high", "x", "gte", 600), leaf("low", "x", "lte", 600)]}
    assert codes(doc(group)) == []


def test_never_passes_when_in_has_an_empty_list() -> None:
    assert codes(doc(leaf("nothing", "plan", "in", []))) == [("error", "never-passes", "nothing")]


def test_no_finding_when_in_has_values() -> None:
    assert codes(doc(leaf("some", "plan", "in", ["a"]))) == []


@pytest.mark.parametrize(
    "rules",
    [
        [leaf("a", "x", "eq", 5), leaf("b", "x", "ne", 5)],
        [leaf("a", "x", "eq", "a"), leaf("b", "x", "eq", "b")],
        [leaf("a", "x", "eq", 5), leaf("b", "x", "not_in", [4, 5.0])],
        [leaf("a", "x", "is_true"), leaf("b", "x", "gte", 1)],
        [leaf("a", "x", "not_exists"), leaf("b", "x", "eq", 0)],
        [leaf("a", "x", "between", [1, 2]), leaf("b", "x", "gt", 2)],
        [leaf("a", "x", "in", ["a", "b"]), leaf("b", "x", "in", ["c"])],
        [leaf("a", "x", "regex", "^a"), leaf("b", "x", "lt", 3)],
    ],
    ids=[
        "eq-ne",
        "eq-eq",
        "eq-not_in",
        "bool-number",
        "absent-eq",
        "between-gt",
        "in-in",
        "str-num",
    ],
)
def test_never_passes_when_two_rules_contradict(rules: list[dict[str, Any]]) -> None:
    assert codes(doc(*rules)) == [("error", "never-passes", "b")]


@pytest.mark.parametrize(
    "rules",
    [
        [leaf("not_five", "x", "ne", 5), leaf("not_six", "x", "ne", 6)],
        [leaf("a", "x", "eq", 5), leaf("b", "y", "ne", 5)],
        [leaf("a", "x", "in", ["a", "b"]), leaf("b", "x", "in", ["b", "c"])],
        [leaf("a", "x", "gt", 1), leaf("b", "x", "lt", 1.5)],
    ],
    ids=["eq-ne", "other-field", "in-in", "gt-lt"],
)
def test_no_finding_when_two_rules_can_pass_together(rules: list[dict[str, Any]]) -> None:
    assert codes(doc(*rules)) == []


def test_dead_rule_is_a_warning_when_an_any_branch_never_passes() -> None:
    group = {
        "name": "either",
        "any": [
            {"name": "band", "all": [leaf("a", "x", "gt", 5), leaf("b", "x", "lt", 5)]},
            leaf("vip", "vip", "is_true"),
        ],
    }
    assert codes(doc(group)) == [("warning", "dead-rule", "band")]


def test_never_passes_when_every_any_branch_is_dead() -> None:
    group = {"name": "either", "any": [leaf("a", "x", "in", []), leaf("b", "y", "in", [])]}
    assert codes(doc(group)) == [("error", "never-passes", "a"), ("error", "never-passes", "b")]


def test_never_passes_when_a_not_wraps_a_rule_that_always_passes() -> None:
    either = {
        "name": "either",
        "any": [leaf("set", "x", "exists"), leaf("unset", "x", "not_exists")],
    }
    assert codes(doc({"name": "never", "not": either})) == [("error", "never-passes", "never")]


def test_always_passes_when_an_any_group_covers_every_value() -> None:
    either = {
        "name": "either",
        "any": [leaf("set", "x", "exists"), leaf("unset", "x", "not_exists")],
    }
    assert codes(doc(either, leaf("real", "y", "gt", 0))) == [
        ("warning", "always-passes", "either")
    ]


def test_no_finding_when_an_any_group_leaves_values_out() -> None:
    # Numbers below 5 or at least 5 still leave out a missing field, null, strings, NaN...
    either = {"name": "either", "any": [leaf("low", "x", "lt", 5), leaf("high", "x", "gte", 5)]}
    assert codes(doc(either)) == []


def test_always_passes_when_a_not_wraps_a_rule_that_never_passes() -> None:
    assert codes(doc({"name": "always", "not": leaf("nothing", "x", "in", [])})) == [
        ("warning", "always-passes", "always")
    ]


def test_contradiction_inside_a_not_is_not_an_error() -> None:
    band = {"name": "band", "all": [leaf("a", "x", "gt", 5), leaf("b", "x", "lt", 5)]}
    assert codes(doc({"name": "outside", "not": band}, leaf("y", "y", "eq", 1))) == [
        ("warning", "always-passes", "outside")
    ]


def test_params_values_are_reasoned_about_like_literal_values() -> None:
    rules = [leaf("low", "x", "lt", 5), {**leaf("high", "x", "gte"), "value_from": "params.min"}]
    assert codes(doc(*rules, parameters={"min": 10})) == [("error", "never-passes", "high")]
    assert codes(doc(*rules, parameters={"min": 1})) == []


def test_value_from_another_field_is_never_claimed_to_contradict() -> None:
    rules = [leaf("low", "x", "lt", 5), {**leaf("other", "x", "gt"), "value_from": "y"}]
    assert codes(doc(*rules)) == []


# --- threshold -----------------------------------------------------------------------------------


def scored(name: str, field: str, operator: str, value: Any, weight: float) -> dict[str, Any]:
    return leaf(name, field, operator, value, required=False, weight=weight)


def test_threshold_unreachable_is_an_error_when_scored_rules_cannot_pass_together() -> None:
    rules = [
        leaf("base", "x", "gte", 0),
        scored("many", "orders", "gte", 10, 1.0),
        scored("few", "orders", "lt", 3, 1.0),
    ]
    findings = check_policy(doc(*rules, threshold=0.75))
    assert [(f.severity, f.code, f.rule, f.location) for f in findings] == [
        (Severity.ERROR, "threshold-unreachable", None, "threshold")
    ]


def test_threshold_unreachable_when_a_scored_rule_contradicts_the_required_ones() -> None:
    rules = [
        leaf("base", "x", "gte", 10),
        scored("small", "x", "lt", 5, 3.0),
        scored("y", "y", "eq", 1, 1.0),
    ]
    assert ("error", "threshold-unreachable", None) in codes(doc(*rules, threshold=0.5))


def test_no_finding_when_the_threshold_is_reachable_exactly() -> None:
    rules = [
        leaf("base", "x", "gte", 0),
        scored("many", "orders", "gte", 10, 1.0),
        scored("few", "orders", "lt", 3, 1.0),
    ]
    assert codes(doc(*rules, threshold=0.5)) == []


def test_threshold_ignored_is_a_warning_when_no_rule_is_scored() -> None:
    assert codes(doc(leaf("a", "x", "gte", 0), threshold=0.5)) == [
        ("warning", "threshold-ignored", None)
    ]
    assert codes(doc(leaf("a", "x", "gte", 0))) == []


# --- duplicates and shadowing -------------------------------------------------------------------


def test_duplicate_rule_is_a_warning_when_siblings_test_the_same_thing() -> None:
    rules = [leaf("a", "x", "gte", 600), leaf("b", "x", "gte", 600.0, message="other words")]
    assert codes(doc(*rules)) == [("warning", "duplicate-rule", "b")]


def test_no_duplicate_when_long_numbers_differ_in_their_last_digit() -> None:
    big = 10**40
    rules = [leaf("a", "x", "ne", big), leaf("b", "x", "ne", big + 1)]
    assert codes(doc(*rules)) == []
    assert codes(doc(leaf("a", "x", "ne", big), leaf("b", "x", "ne", Decimal(big)))) == [
        ("warning", "duplicate-rule", "b")
    ]


def test_no_duplicate_when_the_same_test_is_in_different_groups() -> None:
    one = {"name": "one", "any": [leaf("a", "x", "eq", 1), leaf("b", "y", "eq", 1)]}
    two = {"name": "two", "any": [leaf("c", "x", "eq", 1), leaf("d", "z", "eq", 1)]}
    assert codes(doc(one, two)) == []


def test_shadowed_rule_is_a_warning_when_a_stricter_sibling_implies_it() -> None:
    findings = check_policy(
        doc(leaf("good", "score", "gte", 700), leaf("fair", "score", "gte", 600))
    )
    assert [(f.severity, f.code, f.rule) for f in findings] == [
        (Severity.WARNING, "shadowed-rule", "fair")
    ]
    assert "'good'" in findings[0].message


def test_shadowed_rule_in_an_any_group_is_the_stricter_one() -> None:
    group = {"name": "g", "any": [leaf("good", "s", "gte", 700), leaf("fair", "s", "gte", 600)]}
    assert codes(doc(group)) == [("warning", "shadowed-rule", "good")]


def test_no_shadowing_when_neither_rule_implies_the_other() -> None:
    assert codes(doc(leaf("min", "score", "gte", 600), leaf("max", "score", "lte", 800))) == []


def test_no_shadowing_for_exists_beside_a_comparison_of_the_same_field() -> None:
    assert codes(doc(leaf("present", "score", "exists"), leaf("min", "score", "gte", 600))) == []


def test_no_shadowing_between_scored_rules_that_form_tiers() -> None:
    rules = [scored("silver", "s", "gte", 600, 1.0), scored("gold", "s", "gte", 700, 1.0)]
    assert codes(doc(*rules, threshold=0.5)) == []


# --- input schema ------------------------------------------------------------------------------

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "score": {"type": "integer"},
        "name": {"type": "string"},
        "flags": {"type": "object", "properties": {"vip": {"type": ["boolean", "null"]}}},
        "devices": {"type": "array", "items": {"$ref": "#/$defs/device"}},
        "extra": {"type": "object", "additionalProperties": {"type": "number"}},
    },
    "$defs": {"device": {"type": "object", "properties": {"kind": {"type": "string"}}}},
}


@pytest.mark.parametrize(
    "rule",
    [
        leaf("r", "score", "gte", 600),
        leaf("r", "name", "starts_with", "A"),
        leaf("r", "flags.vip", "is_true"),
        leaf("r", "flags.vip", "eq", None),
        leaf("r", "devices[0].kind", "in", ["router"]),
        leaf("r", "extra.anything", "lt", 3),
        leaf("r", "name", "not_exists"),
        {**leaf("r", "score", "gte"), "value_from": "extra.minimum"},
        leaf("r", "context.tenant_id", "eq", "t1"),
    ],
)
def test_no_schema_finding_when_fields_and_types_match_the_schema(rule: dict[str, Any]) -> None:
    assert codes(doc(rule, input_schema=SCHEMA)) == []


@pytest.mark.parametrize(
    ("rule", "declared"),
    [
        (leaf("r", "score", "starts_with", "A"), "number"),
        (leaf("r", "name", "gte", 600), "string"),
        (leaf("r", "flags.vip", "eq", "yes"), "boolean or null"),
        (leaf("r", "devices[0].kind", "is_true"), "string"),
        (leaf("r", "extra.anything", "len_gte", 1), "number"),
    ],
)
def test_type_mismatch_is_an_error_when_the_operator_cannot_apply(
    rule: dict[str, Any], declared: str
) -> None:
    findings = check_policy(doc(rule, input_schema=SCHEMA))
    assert [(f.severity, f.code, f.rule) for f in findings] == [
        (Severity.ERROR, "type-mismatch", "r")
    ]
    assert f"as {declared}" in findings[0].message


@pytest.mark.parametrize(
    ("rule", "missing"),
    [
        (leaf("r", "scroe", "gte", 600), "scroe"),
        (leaf("r", "flags.gold", "is_true"), "flags.gold"),
        (leaf("r", "devices[0].model", "exists"), "devices[0].model"),
        (leaf("r", "name.first", "exists"), "name.first"),
        ({**leaf("r", "score", "gte"), "value_from": "minimum"}, "minimum"),
    ],
)
def test_unknown_field_is_an_error_when_a_path_is_absent_from_the_schema(
    rule: dict[str, Any], missing: str
) -> None:
    findings = check_policy(doc(rule, input_schema=SCHEMA))
    assert [(f.severity, f.code, f.rule) for f in findings] == [
        (Severity.ERROR, "unknown-field", "r")
    ]
    assert repr(missing) in findings[0].message


def test_no_schema_findings_when_the_document_has_no_schema() -> None:
    assert codes(doc(leaf("r", "scroe", "starts_with", "A"))) == []


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"x": {"type": "text"}}},
        {"type": "object", "properties": {"x": {"$ref": "#/$defs/none"}}},
        {"type": "object", "properties": {"x": {"$ref": "https://example.com/s.json"}}},
        {"type": "object", "properties": ["x"]},
        {"$ref": "#"},
    ],
)
def test_invalid_input_schema_is_an_error_when_the_checker_cannot_read_it(
    schema: dict[str, Any],
) -> None:
    assert [code for _, code, _ in codes(doc(leaf("r", "x", "exists"), input_schema=schema))] == [
        "invalid-input-schema"
    ]


def test_invalid_input_schema_when_references_loop_through_any_of() -> None:
    schema = {"anyOf": [{"$ref": "#"}], "properties": {"x": {"type": "number"}}}
    assert [code for _, code, _ in codes(doc(leaf("r", "x", "exists"), input_schema=schema))] == [
        "invalid-input-schema"
    ]


_schema_words = st.sampled_from(
    [
        "type",
        "properties",
        "items",
        "prefixItems",
        "additionalProperties",
        "$ref",
        "anyOf",
        "oneOf",
        "allOf",
        "patternProperties",
        "x",
        "a",
        "b",
        "0",
    ]
)
_schema_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 3),
    st.sampled_from(
        [
            "string",
            "number",
            "object",
            "array",
            "boolean",
            "null",
            "text",
            "#",
            "#/properties",
            "#/properties/x",
            "#/$defs/a",
            "#/anyOf/0",
            "http://x",
        ]
    ),
)
_schemas = st.recursive(
    _schema_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(_schema_words, inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_schema_words, _schemas, max_size=5))
def test_arbitrary_input_schemas_give_findings_never_exceptions(schema: dict[str, Any]) -> None:
    rules = [
        leaf("a", "x", "gte", 1),
        leaf("b", "a.b", "is_true"),
        leaf("c", "x[0].a", "in", ["s"]),
        {**leaf("d", "b", "eq"), "value_from": "a.x"},
    ]
    for finding in check_policy(doc(*rules, input_schema=schema)):
        assert finding.code in CHECK_CODES
        str(finding)


def test_input_schema_leaves_the_content_hash_unchanged_when_absent() -> None:
    plain = compile_policy(doc(leaf("r", "x", "exists")))
    assert "input_schema" not in plain.canonical
    with_schema = compile_policy(doc(leaf("r", "x", "exists"), input_schema=SCHEMA))
    assert with_schema.canonical["input_schema"] == SCHEMA
    assert with_schema.content_hash != plain.content_hash


# --- registration ---------------------------------------------------------------------------------


def test_register_refuses_a_between_with_bounds_reversed_naming_the_rule() -> None:
    with pytest.raises(PolicyDefinitionError) as caught:
        PolicyEngine().register_policy(doc(leaf("band", "x", "between", [10, 1])))
    assert caught.value.rule_name == "band"


def test_register_refuses_a_document_with_an_error_naming_the_rule() -> None:
    engine = PolicyEngine()
    with pytest.raises(PolicyDefinitionError) as caught:
        engine.register_policy(doc(leaf("high", "x", "gte", 600), leaf("low", "x", "lt", 500)))
    error = caught.value
    assert error.policy_name == "checked"
    assert error.rule_name == "low"
    assert error.location == "rules[1]"
    assert error.metadata["code"] == "never-passes"
    assert "rule 'low' (rules[1])" in error.message
    assert engine.registry.names() == []


def test_register_many_registers_nothing_when_one_document_has_an_error() -> None:
    registry = PolicyRegistry()
    good = doc(leaf("a", "x", "gte", 1))
    bad = {**doc(leaf("b", "x", "in", [])), "name": "other"}
    with pytest.raises(PolicyDefinitionError, match="'b'"):
        registry.register_many([good, bad])
    assert registry.names() == []


def test_load_directory_refuses_a_folder_holding_a_document_with_an_error(
    tmp_path: Path,
) -> None:
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(doc(leaf("a", "x", "gte", 1))))
    bad = {**doc(leaf("a", "x", "is_true"), input_schema={"properties": {}}), "name": "bad"}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    engine = PolicyEngine()
    with pytest.raises(PolicyDefinitionError, match="unknown-field"):
        engine.load_directory(tmp_path)
    assert engine.registry.names() == []


def test_register_keeps_warnings_on_the_policy_when_there_is_no_error() -> None:
    policy = PolicyEngine().register_policy(
        doc(leaf("good", "s", "gte", 700), leaf("fair", "s", "gte", 600))
    )
    assert [(w.code, w.rule) for w in policy.warnings] == [("shadowed-rule", "fair")]
    assert policy.for_tenant("t1").warnings == policy.warnings


def test_raise_for_errors_does_nothing_when_there_are_only_warnings() -> None:
    warning = Finding(Severity.WARNING, "duplicate-rule", "p", "1.0.0", "r", "rules[0]", "m")
    raise_for_errors([warning])


def test_every_shipped_document_passes_every_check() -> None:
    policies = load_policy_directory(DEFINITIONS_DIR)
    assert len(policies) == 11
    assert {policy.name: list(policy.findings) for policy in policies} == {
        policy.name: [] for policy in policies
    }


def test_every_code_has_a_documented_severity() -> None:
    assert set(CHECK_CODES.values()) == {Severity.ERROR, Severity.WARNING}
    assert CHECK_CODES["never-passes"] is Severity.ERROR
    assert CHECK_CODES["shadowed-rule"] is Severity.WARNING


def test_check_policy_refuses_what_is_not_a_document() -> None:
    with pytest.raises(PolicyDefinitionError, match="must be a mapping"):
        check_policy(["not", "a", "document"])  # type: ignore[arg-type]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("operator", "group"), [("not_in", None), ("not_in", "all"), ("in", "any")]
)
def test_checks_finish_when_a_document_is_at_the_limits_on_one_field(
    operator: str, group: str | None
) -> None:
    # 2,000 rules of 40 values on one field: per-field sets are widened past a bound and the
    # search for shadowed rules stops at a budget, so the checks stay far below the timeout.
    rules = [
        leaf(f"r{index}", "x", operator, list(range(index * 40, index * 40 + 40)))
        for index in range(1_999)
    ]
    document = doc(*rules) if group is None else doc({"name": "g", group: rules})
    findings = check_policy(document)
    assert all(finding.code in CHECK_CODES for finding in findings)


# --- soundness against the evaluator -----------------------------------------------------------

_NUMBERS = [-2, -1, -0.5, 0, 0.5, 1, 1.5, 2, 3]
_ABSENT = object()


def _values(operator: str) -> st.SearchStrategy[Any]:
    number = st.sampled_from(_NUMBERS)
    if operator == "between":
        return st.tuples(number, number).map(lambda pair: sorted(pair))
    if operator in ("in", "not_in"):
        return st.lists(number, max_size=3)
    return number


@st.composite
def _leaves(draw: st.DrawFn) -> dict[str, Any]:
    operator = draw(
        st.sampled_from(
            [
                "gt",
                "gte",
                "lt",
                "lte",
                "eq",
                "ne",
                "between",
                "in",
                "not_in",
                "exists",
                "not_exists",
            ]
        )
    )
    rule: dict[str, Any] = {"field": draw(st.sampled_from(["x", "y"])), "operator": operator}
    if operator not in ("exists", "not_exists"):
        rule["value"] = draw(_values(operator))
    return rule


_trees = st.recursive(
    _leaves(),
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=4).map(lambda rules: {"all": rules}),
        st.lists(children, min_size=1, max_size=3).map(lambda rules: {"any": rules}),
        children.map(lambda rule: {"not": rule}),
    ),
    max_leaves=6,
)


def _named(rule: dict[str, Any], counter: itertools.count[int]) -> dict[str, Any]:
    named = {**rule, "name": f"r{next(counter)}"}
    for kind in ("all", "any"):
        if kind in rule:
            named[kind] = [_named(child, counter) for child in rule[kind]]
    if "not" in rule:
        named["not"] = _named(rule["not"], counter)
    return named


def _candidates(tree: dict[str, Any], field: str) -> list[Any]:
    numbers: set[float] = set()

    def collect(rule: dict[str, Any]) -> None:
        if rule.get("field") == field:
            value = rule.get("value")
            numbers.update(value if isinstance(value, list) else [] if value is None else [value])
        for child in rule.get("all", rule.get("any", [])):
            collect(child)
        if "not" in rule:
            collect(rule["not"])

    collect(tree)
    found: list[Any] = [_ABSENT, None, True, "text", math.nan, math.inf, -math.inf, Decimal("NaN")]
    for number in sorted(numbers):
        found += [number, number - 0.25, number + 0.25, Decimal(repr(number))]
    return found


def _rule_results(results: tuple[RuleResult, ...]) -> dict[str, bool]:
    passed: dict[str, bool] = {}
    for result in results:
        passed[result.name] = result.passed
        passed.update(_rule_results(result.children))
    return passed


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_trees)
def test_claims_hold_on_sampled_inputs_when_rules_are_random_numeric_intervals(
    tree: dict[str, Any],
) -> None:
    top = _named(tree, itertools.count())
    findings = check_policy(doc(top))
    never = {f.rule for f in findings if f.code in ("never-passes", "dead-rule")}
    always = {f.rule for f in findings if f.code == "always-passes"}
    if not never and not always:
        return
    policy = compile_policy(doc(top))
    for x, y in itertools.product(_candidates(top, "x"), _candidates(top, "y")):
        data = {key: value for key, value in (("x", x), ("y", y)) if value is not _ABSENT}
        passed = _rule_results(policy.evaluate(data).rule_results)
        for name in never:
            assert not passed[name], (name, data)
        for name in always:
            assert passed[name], (name, data)
