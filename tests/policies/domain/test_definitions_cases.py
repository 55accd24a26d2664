"""Every shipped policy document: valid, named after its file, its test cases pass, and its
test cases cover the boundary of every threshold (just below, at, just above, missing)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from numbers import Real
from typing import Any

import pytest

from dotmac_shared.business_logic.policies import (
    PolicyEngine,
    PolicyTestCase,
    RuleDocument,
    parse_path,
    run_policy_test_cases,
)
from dotmac_shared.business_logic.policies._eligibility import (
    DEFINITIONS_DIR,
    shipped_policy,
    shipped_policy_names,
)
from dotmac_shared.business_logic.policies.core._paths import MISSING, lookup

EXPECTED_POLICIES = [
    "commission.bonus",
    "commission.clawback",
    "commission.partner_eligibility",
    "commission.rate_validation",
    "commission.tier_advancement",
    "licensing.compliance",
    "licensing.feature_access",
    "licensing.usage_limits",
    "plan_eligibility.business_pro",
    "plan_eligibility.enterprise",
    "plan_eligibility.residential_basic",
]
COMPARISONS = {"gt", "gte", "lt", "lte"}
ZERO_COUNT_RULES = {
    "chargeback",
    "no_active_disputes",
    "no_pending_refunds",
    "no_recent_violations",
    "partner_policy_violation",
}


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    engine = PolicyEngine()
    engine.load_directory(DEFINITIONS_DIR)
    return engine


def test_every_expected_policy_ships_when_the_directory_is_loaded(engine: PolicyEngine) -> None:
    assert shipped_policy_names() == tuple(EXPECTED_POLICIES)
    assert engine.registry.names() == EXPECTED_POLICIES


@pytest.mark.parametrize("name", EXPECTED_POLICIES)
def test_shipped_test_cases_pass_when_run_through_the_engine(
    engine: PolicyEngine, name: str
) -> None:
    outcomes = run_policy_test_cases(engine, name)
    assert len(outcomes) >= 9, "each policy ships boundary test cases"
    failures = [f"{o.name}: {o.detail}" for o in outcomes if not o.passed]
    assert failures == []


def test_a_wrong_expectation_is_reported_when_a_case_disagrees() -> None:
    # The runner must be able to fail: flip one expectation and it does.
    document = shipped_policy("plan_eligibility.residential_basic").document.model_dump(
        by_alias=True, exclude_none=True
    )
    document["version"] = "0.0.1-check"
    document["test_cases"] = [{**document["test_cases"][0], "expect": "DENY"}]
    engine = PolicyEngine()
    engine.register_policy(document)
    [outcome] = run_policy_test_cases(engine)
    assert not outcome.passed


def _leaves(rules: list[RuleDocument]) -> Iterator[RuleDocument]:
    for rule in rules:
        children = [*(rule.all_ or []), *(rule.any_ or []), *([rule.not_] if rule.not_ else [])]
        if children:
            yield from _leaves(children)
        else:
            yield rule


def _threshold(rule: RuleDocument, parameters: dict[str, Any], case: PolicyTestCase) -> Any:
    if rule.value_from is None:
        return rule.value
    path = parse_path(rule.value_from, allow_params=True)
    if path.root == "context":
        return getattr(case.context, str(path.keys[0]), None)
    return lookup(parameters if path.root == "params" else case.input, path.keys)


def _comparable(value: Any, threshold: Any) -> bool:
    if isinstance(value, datetime) and isinstance(threshold, datetime):
        return True
    numbers = (value, threshold)
    return all(isinstance(x, Real) and not isinstance(x, bool) for x in numbers)


def _classify(value: Any, threshold: Any) -> str | None:
    if value is MISSING:
        return "missing"
    if not _comparable(value, threshold):
        return None
    return "below" if value < threshold else "at" if value == threshold else "above"


def _coverage() -> list[tuple[str, str, str, set[str]]]:
    rows = []
    for name in EXPECTED_POLICIES:
        policy = shipped_policy(name)
        for rule in _leaves(list(policy.document.rules)):
            if rule.field is None or rule.field.startswith("context."):
                continue
            keys = parse_path(rule.field).keys
            seen: set[str] = set()
            for case in policy.test_cases:
                value = lookup(case.input, keys)
                if rule.operator == "between":
                    low, high = rule.value
                    if value is MISSING:
                        seen.add("missing")
                        continue
                    seen.add(f"{_classify(value, low)}_low")
                    seen.add(f"{_classify(value, high)}_high")
                    continue
                kind = _classify(value, _threshold(rule, policy.parameters, case))
                if kind:
                    seen.add(kind)
            rows.append((name, rule.name, str(rule.operator), seen))
    return rows


@pytest.mark.parametrize(
    ("policy", "rule", "operator", "seen"),
    _coverage(),
    ids=[f"{p}:{r}" for p, r, _, _ in _coverage()],
)
def test_test_cases_cover_the_boundary_when_a_rule_has_a_threshold(
    policy: str, rule: str, operator: str, seen: set[str]
) -> None:
    assert "missing" in seen, f"{policy}: no test case without the field of {rule}"
    if operator in COMPARISONS:
        # A count compared with 0 ("no active disputes") has no value below 0 to test.
        needed = {"at", "above"} if rule in ZERO_COUNT_RULES else {"below", "at", "above"}
        assert needed <= seen, f"{policy}: {rule} boundary cases seen: {sorted(seen)}"
    if operator == "between":
        assert {"below_low", "at_low", "at_high", "above_high"} <= seen, sorted(seen)
