"""Policy test cases as data: run the cases a policy document ships.

A document's ``test_cases`` give an input, an optional context, the expected decision and
optionally the exact set of top-level rules that must fail. Each case runs against the
policy version that ships it (never a tenant override or another version)::

    outcomes = run_policy_test_cases(engine)            # every registered version
    assert_policy_test_cases(engine, "plan_eligibility.residential_basic")  # in pytest
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.policies.core._compiler import Policy
from dotmac_shared.business_logic.policies.core._document import PolicyTestCase
from dotmac_shared.business_logic.policies.core._engine import PolicyEngine
from dotmac_shared.business_logic.policies.core._registry import PolicyRegistry
from dotmac_shared.business_logic.policies.core._results import (
    PolicyContext,
    PolicyDecision,
    PolicyResult,
)

__all__ = [
    "PolicySource",
    "TestCaseOutcome",
    "assert_policy_test_cases",
    "run_policy_test_cases",
    "select_policies",
]

PolicySource = PolicyEngine | PolicyRegistry | Policy | Sequence[Policy]


@dataclass(frozen=True, slots=True)
class TestCaseOutcome:
    """The outcome of one policy test case.

    Attributes:
        name: The test case's name.
        policy: ``name@version`` of the policy that ran it (with the tenant, if any).
        passed: Whether the decision (and failed rules, if given) matched.
        detail: What matched or what differed.
        expected: The decision the case expects.
        actual: The decision the policy gave (``None`` if the case could not run).
        result: The full result (``None`` if the case could not run).
    """

    __test__ = False  # not a pytest test class

    name: str
    policy: str
    passed: bool
    detail: str
    expected: PolicyDecision | None = None
    actual: PolicyDecision | None = None
    result: PolicyResult | None = None


def _run_case(policy: Policy, case: PolicyTestCase) -> TestCaseOutcome:
    try:
        context = PolicyContext(**case.context.model_dump()) if case.context is not None else None
        result = policy.evaluate(case.input, context)
    except InvalidInputError as exc:
        return TestCaseOutcome(
            case.name, policy.label, False, f"could not run: {exc.message}", case.expect
        )
    problems: list[str] = []
    if result.decision is not case.expect:
        problems.append(f"expected {case.expect.value}, got {result.decision.value}")
    if case.failed_rules is not None:
        expected_failed = set(case.failed_rules)
        actual_failed = set(result.failed_rule_names)
        if expected_failed != actual_failed:
            problems.append(
                f"expected failed rules {sorted(expected_failed)}, got {sorted(actual_failed)}"
            )
    if problems and result.reasons:
        problems.append("reasons: " + "; ".join(result.reasons))
    detail = "; ".join(problems) if problems else f"{result.decision.value} as expected"
    return TestCaseOutcome(
        case.name, policy.label, not problems, detail, case.expect, result.decision, result
    )


def select_policies(source: PolicySource, policy_name: str | None = None) -> list[Policy]:
    """The policy versions in ``source`` (every registered version of an engine or registry).

    Args:
        source: As for :func:`run_policy_test_cases`.
        policy_name: Only this policy's versions.
    """
    if isinstance(source, Policy):
        policies = [source]
    elif isinstance(source, PolicyEngine):
        policies = source.registry.all_policies()
    elif isinstance(source, PolicyRegistry):
        policies = source.all_policies()
    else:
        policies = list(source)
    if policy_name is not None:
        policies = [policy for policy in policies if policy.name == policy_name]
    return policies


def run_policy_test_cases(
    engine_or_policy: PolicySource, policy_name: str | None = None
) -> list[TestCaseOutcome]:
    """Run the test cases shipped with policies.

    Args:
        engine_or_policy: A :class:`Policy`, a list of policies, a :class:`PolicyRegistry`
            or a :class:`PolicyEngine` (every registered version, global and tenant).
        policy_name: Only run the cases of this policy (all its versions).

    Returns:
        One outcome per test case, in policy then document order.

    Raises:
        PolicyNotFoundError: ``policy_name`` names no policy in ``engine_or_policy``.
    """
    policies = select_policies(engine_or_policy, policy_name)
    if policy_name is not None and not policies:
        from dotmac_shared.business_logic.exceptions import PolicyNotFoundError

        raise PolicyNotFoundError(
            f"no policy named {policy_name!r} to run test cases for", policy_name=policy_name
        )
    return [_run_case(policy, case) for policy in policies for case in policy.test_cases]


def assert_policy_test_cases(
    engine_or_policy: PolicySource, policy_name: str | None = None, *, require_cases: bool = True
) -> list[TestCaseOutcome]:
    """Pytest helper: run the shipped test cases and fail with every mismatch listed.

    Args:
        engine_or_policy: As for :func:`run_policy_test_cases`.
        policy_name: Only this policy's cases.
        require_cases: Fail when there is no test case at all (a policy without tests).

    Returns:
        The outcomes (all passed).

    Raises:
        AssertionError: A case failed, or no case ran while ``require_cases`` is set.
    """
    outcomes = run_policy_test_cases(engine_or_policy, policy_name)
    if require_cases and not outcomes:
        raise AssertionError("no policy test cases to run")
    failures = [outcome for outcome in outcomes if not outcome.passed]
    if failures:
        lines = [f"{len(failures)} of {len(outcomes)} policy test cases failed:"]
        lines += [f"- {outcome.policy} / {outcome.name}: {outcome.detail}" for outcome in failures]
        raise AssertionError("\n".join(lines))
    return outcomes
