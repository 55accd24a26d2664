"""Hostile policy documents: refused with a PolicyDefinitionError naming where, never a crash.

A document given as a dict meets the same limits as one read from a file, checked before
Pydantic spends time or memory on it; values that have no JSON/YAML form are refused.
"""

from __future__ import annotations

import copy
import json
import math
import time as timing
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dotmac_shared.business_logic.exceptions import PolicyDefinitionError
from dotmac_shared.business_logic.policies import (
    PolicyContext,
    PolicyDecision,
    PolicyEngine,
    compile_policy,
    load_policy_file,
)
from dotmac_shared.business_logic.policies.core._document import (
    MAX_DOCUMENT_DEPTH,
    MAX_DOCUMENT_TEXT,
    MAX_DOCUMENT_VALUES,
)

BASE: dict[str, Any] = {
    "name": "hostile.demo",
    "version": "1.0.0",
    "parameters": {"min": 600, "codes": ["a", "b"]},
    "metadata": {"owner": "billing"},
    "rules": [
        {"name": "score", "field": "score", "operator": "gte", "value": 600},
        {"name": "code", "field": "code", "operator": "in", "value": ["a", "b", 3]},
        {"name": "email", "field": "email", "operator": "regex", "value": r"^\S+@\S+\.\S+$"},
        {
            "name": "group",
            "any": [
                {"name": "tag", "field": "tags", "operator": "contains", "value": "vip"},
                {"name": "min", "field": "score", "operator": "gte", "value_from": "params.min"},
                {"name": "not_x", "not": {"name": "x", "field": "x", "operator": "eq", "value": 1}},
            ],
        },
    ],
    "test_cases": [{"name": "ok", "input": {"score": 700, "code": "a"}, "expect": "DENY"}],
}


def refused(document: Any) -> PolicyDefinitionError:
    with pytest.raises(PolicyDefinitionError) as caught:
        compile_policy(document)
    error = caught.value
    json.dumps(error.to_dict())  # the error itself is always printable and serialisable
    error.message.encode("utf-8")
    return error


def at(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """BASE with the node at ``path`` replaced by ``value``."""
    document = copy.deepcopy(BASE)
    node: Any = document
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return document


class Opaque:
    """An object with no JSON form."""


UNSERIALISABLE: list[tuple[str, Any, str]] = [
    ("set", {1, 2}, "set"),
    ("frozenset", frozenset({1}), "frozenset"),
    ("object", Opaque(), "Opaque"),
    ("bytes", b"\xff\x00", "bytes"),
    ("bytearray", bytearray(b"a"), "bytearray"),
    ("complex", 1j, "complex"),
    ("time", time(12, 0), "time"),
    ("nan in list", [1, float("nan")], "NaN"),
    ("infinity", float("inf"), "inf"),
    ("decimal nan", Decimal("NaN"), "NaN"),
    ("decimal snan", [Decimal("sNaN")], "NaN"),
    ("int keys", {1: "a", "b": 2}, "key"),
    ("none key", {None: 1}, "key"),
    ("huge int key", {10**5000: 1}, "key"),
    ("huge int", 10**2000, "integer"),
    ("lone surrogate", "ab\ud800", "surrogate"),
    ("surrogate key", {"\udfff": 1}, "surrogate"),
]


@pytest.mark.parametrize(
    ("case", "value", "problem"), UNSERIALISABLE, ids=[c[0] for c in UNSERIALISABLE]
)
def test_error_names_rule_when_rule_value_unserialisable(
    case: str, value: Any, problem: str
) -> None:
    error = refused(at(("rules", 0, "value"), value))
    assert error.policy_name == "hostile.demo"
    assert error.rule_name == "score"
    assert error.location is not None and error.location.startswith("rules[0].value")
    assert problem in error.message
    assert "rule 'score'" in error.message


@pytest.mark.parametrize(
    ("case", "value", "problem"), UNSERIALISABLE, ids=[c[0] for c in UNSERIALISABLE]
)
def test_error_names_location_when_metadata_value_unserialisable(
    case: str, value: Any, problem: str
) -> None:
    error = refused(at(("metadata", "owner"), value))
    assert error.location is not None and error.location.startswith("metadata.owner")
    assert problem in error.message


def test_error_names_nested_rule_when_group_child_value_unserialisable() -> None:
    error = refused(at(("rules", 3, "any", 2, "not", "value"), {"a": {1, 2}}))
    assert error.rule_name == "x"
    assert error.location == "rules[3].any[2].not.value.a"


def test_error_when_policy_name_has_lone_surrogate() -> None:
    error = refused({**BASE, "name": "bad\ud800"})
    assert "surrogate" in error.message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("version", "1" * 5_000 + ".0.0"),
        ("threshold", 10**999),
        ("name", "x" * 100_000),
        ("tags", [10**999]),
    ],
)
def test_error_when_policy_field_is_hostile(field: str, value: Any) -> None:
    assert refused({**BASE, field: value}).location is not None


def test_test_case_input_may_hold_nan_when_document_otherwise_valid() -> None:
    # NaN is an input a policy must handle; only rule values and parameters must be finite.
    document = at(("test_cases", 0, "input", "score"), float("nan"))
    policy = compile_policy(document)
    assert policy.evaluate({"score": float("nan")}).decision is PolicyDecision.DENY


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("rules", 0, "value"), Decimal("600.50")),
        (("rules", 0, "value"), date(2026, 1, 1)),
        (("rules", 0, "value"), datetime(2026, 1, 1, tzinfo=UTC)),
        (("rules", 0, "value"), 2**200),
        (("rules", 1, "value"), ("a", "b")),
        (("metadata", "owner"), "été 😀"),
    ],
)
def test_document_accepts_plain_python_values_when_json_like(
    path: tuple[str | int, ...], value: Any
) -> None:
    assert compile_policy(at(path, value)).name == "hostile.demo"


# --- nesting ------------------------------------------------------------------------------------


def nested_list(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [MAX_DOCUMENT_DEPTH + 1, 2_000, 100_000])
def test_error_names_rule_when_value_nested_too_deep(depth: int) -> None:
    error = refused(at(("rules", 0, "value"), nested_list(depth)))
    assert error.rule_name == "score"
    assert f"deeper than {MAX_DOCUMENT_DEPTH}" in error.message


def test_document_accepts_value_when_nested_just_below_limit() -> None:
    compile_policy(at(("metadata", "owner"), nested_list(MAX_DOCUMENT_DEPTH - 4)))


def test_error_when_value_is_cyclic() -> None:
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    error = refused(at(("parameters", "loop"), cycle))
    assert error.location is not None and error.location.startswith("parameters.loop")
    assert "deeper than" in error.message


# --- budgets ------------------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_error_is_quick_when_dict_holds_thousands_of_big_in_lists() -> None:
    # The case: 2,000 rules of 10,000 `in` values (the lists are shared, so building
    # the dict costs nothing; validating it once took seconds and gigabytes).
    values = list(range(10_000))
    document = {
        "name": "huge",
        "version": "1.0.0",
        "rules": [
            {"name": f"r{index}", "field": "x", "operator": "in", "value": values}
            for index in range(2_000)
        ],
    }
    error = refused(document)
    assert f"more than {MAX_DOCUMENT_VALUES} values" in error.message
    assert error.rule_name is not None and error.rule_name.startswith("r")


def test_error_when_dict_values_exceed_budget_under_rule_limits() -> None:
    values = list(range(9_000))
    rules = [
        {"name": f"r{index}", "field": "x", "operator": "in", "value": values}
        for index in range(MAX_DOCUMENT_VALUES // 9_000 + 1)
    ]
    error = refused({"name": "big", "version": "1.0.0", "rules": rules})
    assert "values" in error.message


def test_error_when_dict_text_exceeds_budget() -> None:
    error = refused(at(("rules", 0, "value"), "x" * (MAX_DOCUMENT_TEXT + 1)))
    assert f"more than {MAX_DOCUMENT_TEXT} characters" in error.message
    assert error.rule_name == "score"


def test_error_when_dict_has_more_rules_than_limit_before_validation() -> None:
    rule = {"name": "r", "field": "x", "operator": "exists"}
    error = refused({"name": "many", "version": "1.0.0", "rules": [rule] * 1_000_000})
    assert "at most 2000 rules" in error.message


def test_file_and_dict_meet_same_budget_when_document_is_large(tmp_path: Path) -> None:
    # Small values pack densely: under the file size limit, over the value budget.
    rules = [
        {"name": f"r{index}", "field": "x", "operator": "in", "value": [0] * 9_000}
        for index in range(MAX_DOCUMENT_VALUES // 9_000 + 1)
    ]
    document = {"name": "big", "version": "1.0.0", "rules": rules}
    path = tmp_path / "big.json"
    path.write_text(json.dumps(document, separators=(",", ":")))
    with pytest.raises(PolicyDefinitionError) as from_file:
        load_policy_file(path)
    from_dict = refused(document)
    assert str(path) in from_file.value.message
    assert from_file.value.message.endswith(from_dict.message)


# --- files --------------------------------------------------------------------------------------

VALID_YAML = "name: t\nversion: 1.0.0\nrules:\n  - {name: r, field: x, operator: eq, value: V}\n"


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("deep_flow.yaml", "[" * 3_000 + "]" * 3_000, "deeper than"),
        (
            "shallow_deep.yaml",
            "[" * (MAX_DOCUMENT_DEPTH + 1) + "]" * (MAX_DOCUMENT_DEPTH + 1),
            "deeper than",
        ),
        ("surrogate.yaml", '"a\\ud800"', "surrogate"),
        ("set.yaml", "!!set {a: null}", "set"),
        ("binary.yaml", '!!binary "/w=="', "bytes"),
        ("nan.yaml", ".nan", "NaN"),
        ("keys.yaml", "{1: a, b: 2}", "key"),
        ("bad_date.yaml", "2026-13-45", "invalid YAML"),
        ("huge_int.yaml", "1" + "0" * 5_000, "invalid YAML"),
        ("object.yaml", "!!python/object:builtins.object {}", "invalid YAML"),
    ],
)
def test_error_names_file_when_yaml_value_hostile(
    tmp_path: Path, name: str, value: str, problem: str
) -> None:
    path = tmp_path / name
    path.write_text(VALID_YAML.replace("V", value, 1))
    with pytest.raises(PolicyDefinitionError) as caught:
        load_policy_file(path)
    assert str(path) in caught.value.message
    assert problem in caught.value.message
    assert caught.value.metadata["file"] == str(path)


def test_error_names_file_when_yaml_nested_deep_in_block_style(tmp_path: Path) -> None:
    lines = [
        "name: t",
        "version: 1.0.0",
        "rules: [{name: r, field: x, operator: exists}]",
        "metadata:",
    ]
    lines += [" " * (level + 1) + f"k{level}:" for level in range(1_000)]
    path = tmp_path / "block.yaml"
    path.write_text("\n".join(lines) + " 1\n")
    with pytest.raises(PolicyDefinitionError, match="deeper than") as caught:
        load_policy_file(path)
    assert str(path) in caught.value.message


VALID_JSON = (
    '{"name":"t","version":"1.0.0","rules":[{"name":"r","field":"x","operator":"eq","value":V}]}'
)


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("deep.json", "[" * 100_000 + "]" * 100_000, "deeper than"),
        ("deepish.json", "[" * 500 + "]" * 500, "deeper than"),
        ("surrogate.json", '"a\\udc00"', "surrogate"),
        ("nan.json", "NaN", "NaN"),
        ("infinity.json", "[-Infinity]", "inf"),
        ("huge_int.json", "1" + "0" * 5_000, "invalid JSON"),
    ],
)
def test_error_names_file_and_rule_when_json_value_hostile(
    tmp_path: Path, name: str, value: str, problem: str
) -> None:
    path = tmp_path / name
    path.write_text(VALID_JSON.replace("V", value, 1))
    with pytest.raises(PolicyDefinitionError) as caught:
        load_policy_file(path)
    assert str(path) in caught.value.message
    assert problem in caught.value.message
    if not name.startswith(("deep.", "huge")):
        assert caught.value.rule_name == "r"


# --- Hypothesis: hostile values anywhere ----------------------------------------------------

HOSTILE_PATTERNS = [
    r"^(a|a)*$",
    r"\S+@\S+\.\S+",
    r".*.*=",
    r".*.*.*=",
    r"(a+)+$",
    r"(a)\1",
    r"(?=a)",
    r"a\Z",
    "(",
    "[\ud800]",
]
text = st.text(alphabet=st.characters(exclude_categories=()), max_size=12)  # surrogates too
hostile_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**1500, -(2**64), 2**63]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    text,
    st.sampled_from(HOSTILE_PATTERNS),
    st.binary(max_size=4),
    st.builds(Opaque),
    st.sets(st.integers(0, 3), max_size=2),
    st.complex_numbers(max_magnitude=2),
    st.dates(),
    st.datetimes(),
    st.datetimes(timezones=st.just(UTC)),
    st.times(),
    st.builds(nested_list, st.sampled_from([2, MAX_DOCUMENT_DEPTH, 300])),
)
hostile_values = st.recursive(
    hostile_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.tuples(children, children),
        st.dictionaries(
            st.one_of(text, st.integers(), st.none(), st.just(2**64)), children, max_size=3
        ),
    ),
    max_leaves=8,
)


def containers(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every dict/list node of a plain document."""
    found = [path]
    if isinstance(node, dict):
        for key, child in node.items():
            if isinstance(child, dict | list):
                found += containers(child, (*path, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            if isinstance(child, dict | list):
                found += containers(child, (*path, index))
    return found


@st.composite
def mutated_documents(draw: st.DrawFn) -> dict[str, Any]:
    document = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(containers(document)))
        node: Any = document
        for part in path:
            node = node[part]
        value = draw(hostile_values)
        if isinstance(node, dict):
            keys = sorted(node, key=str)
            key = draw(st.one_of(st.sampled_from(keys), text) if keys else text)
            if draw(st.integers(0, 5)) == 0 and key in node:
                del node[key]
            else:
                node[key] = value
        elif node and draw(st.booleans()):
            node[draw(st.integers(0, len(node) - 1))] = value
        else:
            node.append(value)
    return document


INPUT_FIELDS = ["score", "code", "email", "tags", "x"]
#: The issue's bound: no evaluation of an accepted hostile document may take longer.
MAX_EVALUATION_SECONDS = 0.05
hostile_inputs = st.dictionaries(st.sampled_from(INPUT_FIELDS), hostile_values, max_size=5)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_documents(), st.lists(hostile_inputs, max_size=3))
def test_only_definition_errors_when_documents_hold_hostile_values(
    document: dict[str, Any], inputs: list[dict[str, Any]]
) -> None:
    engine = PolicyEngine()
    try:
        policy = engine.register_policy(document)
    except PolicyDefinitionError as error:
        json.dumps(error.to_dict())
        error.message.encode("utf-8")
        return
    policy.canonical_yaml()
    context = PolicyContext(tenant_id="t", attributes={"region": "eu"})
    for data in [*inputs, *(case.input for case in policy.test_cases)]:
        # CPU time of this thread: what a hostile document could burn, whatever the load.
        started = timing.thread_time()
        result = policy.evaluate(data, context)
        assert policy.is_allowed(data, context) is (result.decision is PolicyDecision.ALLOW)
        spent = timing.thread_time() - started
        assert spent < MAX_EVALUATION_SECONDS, f"{spent:.3f} s of CPU for one evaluation"
        json.dumps(result.to_dict(), default=str)


@st.composite
def mutated_files(draw: st.DrawFn) -> tuple[str, str]:
    suffix = draw(st.sampled_from([".yaml", ".json"]))
    source = (
        yaml.safe_dump(BASE, allow_unicode=True)
        if suffix == ".yaml"
        else json.dumps(BASE, ensure_ascii=False)
    )
    snippets = st.sampled_from(
        [
            "[" * 2_000,
            "{" * 200,
            '"\\ud800"',
            "\\udc00",
            "!!binary AAAA",
            "!!set {a: null}",
            "!!python/object:builtins.object {}",
            "&a [1]",
            "*a",
            "NaN",
            "-Infinity",
            "1e999",
            "9" * 5_000,
            "2026-13-45",
            "\t",
            "\x00",
            "\ufeff",
            "---\n",
            ": :",
            "? [a]\n: b",
        ]
    )
    for _ in range(draw(st.integers(1, 3))):
        index = draw(st.integers(0, len(source)))
        cut = draw(st.integers(0, 3))
        source = source[:index] + draw(st.one_of(snippets, text)) + source[index + cut :]
    return suffix, source


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_files())
def test_only_definition_errors_when_files_are_mutated(
    tmp_path_factory: pytest.TempPathFactory, file: tuple[str, str]
) -> None:
    suffix, source = file
    path = tmp_path_factory.mktemp("mutated") / f"policy{suffix}"
    path.write_bytes(source.encode("utf-8", "surrogatepass"))
    try:
        policy = load_policy_file(path)
    except PolicyDefinitionError as error:
        assert str(path) in error.message
        json.dumps(error.to_dict())
        return
    for case in policy.test_cases:
        policy.evaluate(case.input)


def test_hostile_numbers_compare_when_accepted() -> None:
    policy = compile_policy(at(("rules", 0, "value"), 2**200))
    assert policy.evaluate({"score": math.inf}).rule_results[0].passed is True
    assert policy.evaluate({"score": Decimal("sNaN")}).rule_results[0].passed is False
