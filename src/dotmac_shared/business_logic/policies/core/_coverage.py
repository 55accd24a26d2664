"""Rule coverage: did a policy's shipped test cases see every rule both pass and fail?

A rule (leaf or group) is *covered* when at least one test case saw it pass and at least
one saw it fail: only then do the cases show that the rule decides something. Coverage is
computed from the evaluations' explanations (:attr:`PolicyResult.rule_results`, nested),
so it is pure and does no I/O::

    report = run_policy_coverage(engine)        # run every version's cases, then measure
    report.percent                              # 100.0 when every rule was seen both ways
    [rule.address for rule in report.uncovered]  # e.g. "demo@1.0.0 rules[1].all[0] (adult)"

Rules are addressed by their location in the document (``rules[1].all[0]``, as in
:class:`PolicyDefinitionError`) and their name, which is unique within a document. An
evaluation outside the policy's effective window evaluates no rule and so covers nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from dotmac_shared.business_logic.policies.core._compiler import Policy
from dotmac_shared.business_logic.policies.core._document import iter_rules
from dotmac_shared.business_logic.policies.core._results import PolicyResult, RuleResult
from dotmac_shared.business_logic.policies.core._testing import (
    PolicySource,
    TestCaseOutcome,
    run_policy_test_cases,
    select_policies,
)

__all__ = [
    "CoverageReport",
    "PolicyCoverage",
    "RuleCoverage",
    "RuleSeen",
    "coverage_of_outcomes",
    "policy_coverage",
    "run_policy_coverage",
]


class RuleSeen(enum.StrEnum):
    """How the test cases saw one rule."""

    BOTH = "both"  # seen passing and failing: covered
    PASS_ONLY = "pass only"  # never seen failing: nothing shows the rule can deny
    FAIL_ONLY = "fail only"  # never seen passing: nothing shows the rule can allow
    NEVER = "never"  # no case evaluated it (no case, or none in the effective window)


@dataclass(frozen=True, slots=True)
class RuleCoverage:
    """How often the test cases saw one rule pass and fail.

    Attributes:
        policy: ``name@version`` of the policy (with the tenant, if any).
        location: Where the rule sits in the document, e.g. ``rules[2].any[0]``.
        name: The rule's name.
        kind: ``leaf``, or the group kind ``all``, ``any`` or ``not``.
        passed: How many evaluations saw it pass.
        failed: How many evaluations saw it fail.
    """

    policy: str
    location: str
    name: str
    kind: str
    passed: int
    failed: int

    @property
    def seen(self) -> RuleSeen:
        """Whether it was seen passing, failing, both or neither."""
        if self.passed and self.failed:
            return RuleSeen.BOTH
        if self.passed:
            return RuleSeen.PASS_ONLY
        return RuleSeen.FAIL_ONLY if self.failed else RuleSeen.NEVER

    @property
    def covered(self) -> bool:
        """Whether it was seen both passing and failing."""
        return bool(self.passed and self.failed)

    @property
    def address(self) -> str:
        """``policy location (name)``: where to look."""
        return f"{self.policy} {self.location} ({self.name})"


def _percent(covered: int, total: int) -> float:
    # Nothing to cover is fully covered: an empty selection must not fail a gate on its own.
    return 100.0 if total == 0 else 100.0 * covered / total


@dataclass(frozen=True, slots=True)
class PolicyCoverage:
    """Rule coverage of one policy version.

    Attributes:
        policy: ``name@version`` (with the tenant, if any).
        cases: How many test cases were counted.
        rules: Every rule of the document, depth-first in document order (groups before
            their children).
    """

    policy: str
    cases: int
    rules: tuple[RuleCoverage, ...]

    @property
    def covered(self) -> int:
        """How many rules were seen both passing and failing."""
        return sum(1 for rule in self.rules if rule.covered)

    @property
    def total(self) -> int:
        """How many rules the document has (leaves and groups)."""
        return len(self.rules)

    @property
    def percent(self) -> float:
        """Covered rules / all rules, in percent (100 for a policy without rules)."""
        return _percent(self.covered, self.total)

    @property
    def uncovered(self) -> tuple[RuleCoverage, ...]:
        """The rules not seen both ways."""
        return tuple(rule for rule in self.rules if not rule.covered)


@dataclass(frozen=True, slots=True)
class CoverageReport:
    """Rule coverage of several policy versions.

    Attributes:
        policies: One entry per policy version, in the order measured.
    """

    policies: tuple[PolicyCoverage, ...]

    @property
    def covered(self) -> int:
        """Rules seen both ways, over every policy."""
        return sum(policy.covered for policy in self.policies)

    @property
    def total(self) -> int:
        """Rules over every policy."""
        return sum(policy.total for policy in self.policies)

    @property
    def percent(self) -> float:
        """Covered rules / all rules over every policy, in percent (100 when there are none)."""
        return _percent(self.covered, self.total)

    @property
    def uncovered(self) -> tuple[RuleCoverage, ...]:
        """Every rule not seen both ways, policy by policy."""
        return tuple(rule for policy in self.policies for rule in policy.uncovered)

    def meets(self, fail_under: float) -> bool:
        """Whether :attr:`percent` is at least ``fail_under``."""
        return self.percent >= fail_under

    def to_dict(self) -> dict[str, object]:
        """A JSON-friendly form: totals and every rule's counts."""
        return {
            "covered": self.covered,
            "total": self.total,
            "percent": self.percent,
            "policies": [
                {
                    "policy": policy.policy,
                    "cases": policy.cases,
                    "covered": policy.covered,
                    "total": policy.total,
                    "percent": policy.percent,
                    "rules": [
                        {
                            "location": rule.location,
                            "name": rule.name,
                            "kind": rule.kind,
                            "passed": rule.passed,
                            "failed": rule.failed,
                            "seen": rule.seen.value,
                        }
                        for rule in policy.rules
                    ],
                }
                for policy in self.policies
            ],
        }

    def format_text(self, *, all_rules: bool = False) -> str:
        """A plain-text table: one line per policy, then the uncovered (or all) rules."""
        lines = [f"{'policy':<50} {'rules':>5} {'covered':>7} {'%':>6}"]
        for policy in self.policies:
            lines.append(
                f"{policy.policy:<50} {policy.total:>5} {policy.covered:>7} {policy.percent:>5.1f}%"
            )
        lines.append(f"{'total':<50} {self.total:>5} {self.covered:>7} {self.percent:>5.1f}%")
        rules = [rule for p in self.policies for rule in p.rules] if all_rules else self.uncovered
        for rule in rules:
            lines.append(
                f"  {rule.seen.value:<9} {rule.address}  "
                f"(passed {rule.passed}, failed {rule.failed})"
            )
        return "\n".join(lines)


def _walk(results: Iterable[RuleResult]) -> Iterator[RuleResult]:
    for result in results:
        yield result
        yield from _walk(result.children)


def policy_coverage(policy: Policy, results: Iterable[PolicyResult]) -> PolicyCoverage:
    """Measure which of ``policy``'s rules the given evaluations saw pass and fail.

    Pure: it only reads the results' explanations.

    Args:
        policy: The policy version whose rules are counted.
        results: Evaluations of that policy (results of other policies are ignored).

    Returns:
        Every rule of the document with its pass and fail counts.
    """
    counts: dict[str, list[int]] = {}
    evaluations = 0
    for result in results:
        if result.policy_name != policy.name or result.policy_version != policy.version:
            continue
        evaluations += 1
        for rule in _walk(result.rule_results):
            tally = counts.setdefault(rule.name, [0, 0])
            tally[0 if rule.passed else 1] += 1
    rules = []
    for location, _depth, document in iter_rules(policy.document.rules):
        passed, failed = counts.get(document.name, (0, 0))
        kind = document.group_kind or "leaf"
        rules.append(RuleCoverage(policy.label, location, document.name, kind, passed, failed))
    return PolicyCoverage(policy.label, evaluations, tuple(rules))


def coverage_of_outcomes(
    policies: Iterable[Policy], outcomes: Iterable[TestCaseOutcome]
) -> CoverageReport:
    """Rule coverage of test-case outcomes (from :func:`run_policy_test_cases`).

    Outcomes are matched to policies by label (``name@version [tenant]``); a case that
    could not run has no result and counts for nothing.
    """
    by_label: dict[str, list[PolicyResult]] = {}
    for outcome in outcomes:
        if outcome.result is not None:
            by_label.setdefault(outcome.policy, []).append(outcome.result)
    return CoverageReport(
        tuple(policy_coverage(policy, by_label.get(policy.label, ())) for policy in policies)
    )


def run_policy_coverage(
    engine_or_policy: PolicySource, policy_name: str | None = None
) -> CoverageReport:
    """Run the test cases policies ship and measure their rule coverage.

    Args:
        engine_or_policy: A :class:`Policy`, a list of policies, a registry or an engine
            (every registered version, global and tenant), as for
            :func:`run_policy_test_cases`.
        policy_name: Only this policy (all its versions).

    Returns:
        The coverage of every selected policy version.

    Raises:
        PolicyNotFoundError: ``policy_name`` names no policy in ``engine_or_policy``.
    """
    outcomes = run_policy_test_cases(engine_or_policy, policy_name)
    return coverage_of_outcomes(select_policies(engine_or_policy, policy_name), outcomes)
