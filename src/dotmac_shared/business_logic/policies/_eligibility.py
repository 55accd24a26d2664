"""Plan eligibility: which customers may order which plan, as versioned policy documents.

The rules live in ``definitions/plan_eligibility.*.yaml`` (shipped with the package); this
module is a thin layer that picks the policy for a plan, evaluates it and answers in the
shape the spec's example uses. It also owns the loading of the shipped definitions, which
the commission and licensing engines share.

Example:
    >>> from dotmac_shared.business_logic.policies import PlanEligibilityEngine, PolicyContext
    >>> engine = PlanEligibilityEngine()
    >>> result = engine.check_plan_eligibility(
    ...     plan_type="residential_basic",
    ...     customer_data={
    ...         "customer_type": "residential",
    ...         "credit_score": 650,
    ...         "outstanding_balance": 0.0,
    ...         "location": {"service_coverage": True},
    ...     },
    ...     context=PolicyContext(tenant_id="tenant123"),
    ... )
    >>> result["eligible"], result["decision"]
    (True, 'ALLOW')
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from dotmac_shared.business_logic.exceptions import InvalidInputError, PolicyNotFoundError
from dotmac_shared.business_logic.policies.core import (
    Policy,
    PolicyContext,
    PolicyDecision,
    PolicyEngine,
    PolicyResult,
    RuleResult,
    load_policy_file,
)

__all__ = [
    "DEFINITIONS_DIR",
    "PLAN_POLICIES",
    "PlanEligibilityEngine",
    "failed_rule_is_missing",
    "register_shipped_policies",
    "require_mapping",
    "shipped_policy",
    "shipped_policy_names",
    "summarize",
]

#: Directory of the policy documents shipped with the package.
DEFINITIONS_DIR: Final = Path(__file__).resolve().parent / "definitions"

#: Plan type -> the policy that decides eligibility for it.
PLAN_POLICIES: Final[Mapping[str, str]] = {
    "residential_basic": "plan_eligibility.residential_basic",
    "business_pro": "plan_eligibility.business_pro",
    "enterprise": "plan_eligibility.enterprise",
}
_PLAN_PREFIX: Final = "plan_eligibility."


def shipped_policy_names() -> tuple[str, ...]:
    """Return the names of every policy document shipped in ``definitions/``, sorted."""
    return tuple(sorted(path.stem for path in DEFINITIONS_DIR.glob("*.yaml")))


@functools.cache
def shipped_policy(name: str) -> Policy:
    """Return the shipped policy ``name``, loaded and validated once per process.

    Raises:
        PolicyNotFoundError: No such document ships with the package.
    """
    path = DEFINITIONS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise PolicyNotFoundError(
            f"no shipped policy named {name!r}",
            policy_name=name,
            known=shipped_policy_names(),
        )
    return load_policy_file(path)


def register_shipped_policies(engine: PolicyEngine, names: Iterable[str]) -> PolicyEngine:
    """Register each shipped policy in ``names`` that ``engine`` does not know yet.

    A policy the engine already has (say, a newer version registered by the application) is
    left alone, so applications can override the shipped rules.

    Returns:
        ``engine``, for chaining.
    """
    for name in names:
        if not _has_policy(engine, name):
            engine.register_policy(shipped_policy(name))
    return engine


def _has_policy(engine: PolicyEngine, name: str) -> bool:
    try:
        return bool(engine.registry.versions(name))
    except PolicyNotFoundError:
        return False


def failed_rule_is_missing(rule: RuleResult) -> bool:
    """Whether a failed rule failed for lack of data (itself or a failed child was missing)."""
    if rule.missing:
        return True
    return any(failed_rule_is_missing(child) for child in rule.children if not child.passed)


class PolicyResultDict(dict[str, Any]):
    """A :class:`PolicyResult` as its JSON-safe ``to_dict()``, printed as the result's summary.

    A plain ``dict`` to ``json.dumps`` and web frameworks; ``str()`` gives the one-line
    summary the spec's example prints (decision, policy, version, failed rules).
    """

    def __init__(self, result: PolicyResult) -> None:
        super().__init__(result.to_dict())
        self.summary = str(result)

    def __str__(self) -> str:
        return self.summary


def summarize(result: PolicyResult) -> dict[str, Any]:
    """The fields every domain check returns, taken from a :class:`PolicyResult`.

    All of them JSON-safe: ``policy_result`` is the result's ``to_dict()``, so a web
    framework can return the answer as it is.
    """
    failed = result.failed_rules  # read the explanation once
    if result.in_effect:
        reasons = [rule.message or rule.name for rule in failed]
    else:
        reasons = list(result.reasons)  # starts with the "not in force" note
    decision = result.decision
    return {
        "decision": decision.value,
        "policy_name": result.policy_name,
        "policy_version": result.policy_version,
        "reasons": reasons,
        "failed_rules": [rule.name for rule in failed],
        "requires_approval": decision is PolicyDecision.REQUIRE_APPROVAL,
        "policy_result": PolicyResultDict(result),
    }


def require_mapping(value: Any, field: str) -> Mapping[str, Any]:
    """Return ``value`` if it is a mapping, else raise :class:`InvalidInputError` naming it."""
    if not isinstance(value, Mapping):
        raise InvalidInputError(
            f"{field} must be a mapping, not {type(value).__name__}", field=field
        )
    return value


class PlanEligibilityEngine:
    """Checks a customer against the eligibility policy of a plan.

    Args:
        engine: The policy engine to evaluate with. A new one is made when omitted; either
            way the shipped plan policies are registered unless the engine already has them.

    A customer is ``eligible`` when every rule of the plan's policy passed. The ``decision``
    says what to do with that: enterprise deals always need a person (``REQUIRE_APPROVAL``)
    even for an eligible customer, so check ``decision`` (or ``requires_approval``) before
    provisioning, not ``eligible`` alone.
    """

    def __init__(self, engine: PolicyEngine | None = None) -> None:
        self._engine = register_shipped_policies(
            engine if engine is not None else PolicyEngine(), PLAN_POLICIES.values()
        )

    @property
    def engine(self) -> PolicyEngine:
        """The underlying policy engine."""
        return self._engine

    @property
    def known_plans(self) -> tuple[str, ...]:
        """Plan types this engine can check: the shipped ones and any registered since."""
        extra = sorted(
            {
                policy.name.removeprefix(_PLAN_PREFIX)
                for policy in self._engine.registry.list()
                if policy.name.startswith(_PLAN_PREFIX)
            }
            - PLAN_POLICIES.keys()
        )
        return (*PLAN_POLICIES, *extra)

    def policy_name(self, plan_type: str) -> str:
        """Return the policy deciding ``plan_type``.

        Raises:
            InvalidInputError: Unknown plan type; the message lists the known plans.
        """
        if isinstance(plan_type, str):
            shipped = PLAN_POLICIES.get(plan_type)
            if shipped is not None:
                return shipped
            name = plan_type if plan_type.startswith(_PLAN_PREFIX) else _PLAN_PREFIX + plan_type
            if _has_policy(self._engine, name):
                return name
        known = self.known_plans
        raise InvalidInputError(
            f"unknown plan type {plan_type!r}; known plans: {', '.join(known)}",
            field="plan_type",
            metadata={"known_plans": list(known)},
        )

    def check_plan_eligibility(
        self,
        plan_type: str,
        customer_data: Mapping[str, Any],
        context: PolicyContext | None = None,
        *,
        version: str | None = None,
    ) -> dict[str, Any]:
        """Evaluate ``customer_data`` against the eligibility policy of ``plan_type``.

        Args:
            plan_type: ``residential_basic``, ``business_pro``, ``enterprise`` or a plan whose
                policy ``plan_eligibility.<plan_type>`` was registered.
            customer_data: The customer, plus plan-side fields such as
                ``contract_term_months`` and ``support_tier``.
            context: Tenant, user and operation; selects a tenant's own policy version.
            version: Evaluate this policy version instead of the newest.

        Returns:
            ``eligible`` (every rule passed), ``decision`` (``"ALLOW"``, ``"DENY"`` or
            ``"REQUIRE_APPROVAL"``), ``requires_approval``, ``plan_type``, ``policy_name``,
            ``policy_version``, ``reasons`` (business-language messages of failed rules),
            ``failed_rules`` and ``policy_result`` (the full :class:`PolicyResult` as a
            JSON-safe :class:`PolicyResultDict`; the engine's ``evaluate`` gives the object).

        Raises:
            InvalidInputError: Unknown plan type (listing the known plans) or customer data
                that is not a mapping.
        """
        policy_name = self.policy_name(plan_type)
        data = require_mapping(customer_data, "customer_data")
        result = self._engine.evaluate(policy_name, data, context, version=version)
        answer = summarize(result)
        answer["eligible"] = result.passed and result.in_effect
        answer["plan_type"] = plan_type
        return answer

    def eligible_plans(
        self, customer_data: Mapping[str, Any], context: PolicyContext | None = None
    ) -> list[str]:
        """Return every plan type the customer is eligible for, in :attr:`known_plans` order.

        Plans that still need a person's approval (enterprise) are included: the customer
        qualifies for them.
        """
        data = require_mapping(customer_data, "customer_data")
        return [
            plan
            for plan in self.known_plans
            if (result := self._engine.evaluate(self.policy_name(plan), data, context)).passed
            and result.in_effect
        ]
