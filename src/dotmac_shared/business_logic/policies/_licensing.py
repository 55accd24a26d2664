"""Licensing constraints: usage limits, feature access, compliance and API rate limits.

Usage limits, feature access and compliance are policy documents shipped in
``definitions/licensing.*.yaml``; the default limits of each license tier are data in the
usage-limits policy (``parameters.tiers``), which is also where the tenant provisioning saga
gets a new tenant's limits (:meth:`LicensingEngine.plan_defaults`). API limits are a real
per-tenant rate limiter (:mod:`dotmac_shared.business_logic.ratelimit`) sized by the tier's
``max_api_calls_per_hour``.

Example:
    >>> engine = LicensingEngine()
    >>> engine.plan_defaults("basic")["max_users"]
    100
    >>> check = engine.check_usage_limits({"current_users": 101}, license="basic")
    >>> check["violations"][0]["limit"], check["violations"][0]["allowed_value"]
    ('max_users', 100)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.policies._eligibility import (
    register_shipped_policies,
    require_mapping,
    summarize,
)
from dotmac_shared.business_logic.policies.core import PolicyContext, PolicyEngine, PolicyResult
from dotmac_shared.business_logic.policies.core._results import jsonable
from dotmac_shared.business_logic.ratelimit import (
    API_CALLS_LIMIT,
    InMemoryRateLimiter,
    RateLimiter,
    RateLimitResult,
)

__all__ = [
    "API_WINDOW_SECONDS",
    "LICENSE_LIMITS",
    "LICENSING_POLICIES",
    "LicensingEngine",
]

#: The shipped licensing policies, by check.
LICENSING_POLICIES: Final[Mapping[str, str]] = {
    "usage_limits": "licensing.usage_limits",
    "feature_access": "licensing.feature_access",
    "compliance": "licensing.compliance",
}
#: The limits a license carries (``max_*``), in the order plan defaults list them.
LICENSE_LIMITS: Final = (
    "max_users",
    "max_storage_gb",
    "max_bandwidth_mbps",
    "max_integrations",
    API_CALLS_LIMIT,
)
#: ``max_api_calls_per_hour`` is counted over a sliding window of one hour.
API_WINDOW_SECONDS: Final = 3600.0


class LicensingEngine:
    """Checks a tenant's usage, features, license validity and API calls against its license.

    Args:
        engine: The policy engine to evaluate with; a new one when omitted. The shipped
            licensing policies are registered unless the engine already has them.
        rate_limiter: Counts API calls for :meth:`check_api_limit`. Defaults to an
            :class:`InMemoryRateLimiter` (one process); pass a
            :class:`~dotmac_shared.business_logic.ratelimit.RedisRateLimiter` to share limits
            between processes.

    A license is a mapping with ``tier`` (``basic``, ``pro`` — alias ``premium`` — or
    ``enterprise``), optional ``max_*`` limits (defaults come from the tier), ``status`` and
    ``expires_at``; wherever a license is expected, a bare tier name works too.
    """

    def __init__(
        self, engine: PolicyEngine | None = None, *, rate_limiter: RateLimiter | None = None
    ) -> None:
        self._engine = register_shipped_policies(
            engine if engine is not None else PolicyEngine(), LICENSING_POLICIES.values()
        )
        self._rate_limiter: RateLimiter = (
            rate_limiter if rate_limiter is not None else InMemoryRateLimiter()
        )

    @property
    def engine(self) -> PolicyEngine:
        """The underlying policy engine."""
        return self._engine

    @property
    def rate_limiter(self) -> RateLimiter:
        """The limiter counting API calls."""
        return self._rate_limiter

    # --- tiers --------------------------------------------------------------------------

    def _usage_parameters(self, context: PolicyContext | None) -> dict[str, Any]:
        policy = self._engine.registry.get(
            LICENSING_POLICIES["usage_limits"], tenant_id=context.tenant_id if context else None
        )
        return dict(policy.parameters)

    def tiers(self, context: PolicyContext | None = None) -> dict[str, dict[str, int]]:
        """License tier -> default limits, from the usage-limits policy's data."""
        tiers = self._usage_parameters(context)["tiers"]
        return {name: dict(limits) for name, limits in tiers.items()}

    def tier_limits(self, tier: str, context: PolicyContext | None = None) -> dict[str, int]:
        """Return the default limits of a license tier (``premium`` is an alias of ``pro``).

        Raises:
            InvalidInputError: Unknown tier; the message lists the known tiers.
        """
        parameters = self._usage_parameters(context)
        tiers: Mapping[str, Mapping[str, int]] = parameters["tiers"]
        aliases: Mapping[str, str] = parameters.get("tier_aliases", {})
        name = aliases.get(tier, tier) if isinstance(tier, str) else tier
        if not isinstance(name, str) or name not in tiers:
            known = sorted({*tiers, *aliases})
            raise InvalidInputError(
                f"unknown license tier {tier!r}; known tiers: {', '.join(known)}",
                field="tier",
                metadata={"known_tiers": known},
            )
        return dict(tiers[name])

    def plan_defaults(self, plan: str) -> dict[str, int]:
        """Return the limits a new tenant on ``plan`` starts with.

        Keys: ``max_users``, ``max_storage_gb``, ``max_bandwidth_mbps``,
        ``max_integrations`` and ``max_api_calls_per_hour``. Basic: 100 users, 50 GB,
        100 Mbps; pro and enterprise: 1000 users, 500 GB, 1000 Mbps.

        Raises:
            InvalidInputError: Unknown plan; the message lists the known plans.
        """
        limits = self.tier_limits(plan)
        return {key: limits[key] for key in LICENSE_LIMITS if key in limits}

    def resolve_license(
        self, license: Mapping[str, Any] | str, context: PolicyContext | None = None
    ) -> dict[str, Any]:
        """Return the license with every limit it does not state filled from its tier.

        Returns:
            A JSON-safe copy (Decimals as strings, datetimes in ISO 8601).

        Raises:
            InvalidInputError: Not a mapping or tier name, or an unknown tier.
        """
        resolved: dict[str, Any] = jsonable(self._resolve(license, context))
        return resolved

    def _resolve(
        self, license: Mapping[str, Any] | str, context: PolicyContext | None
    ) -> dict[str, Any]:
        """The license with its tier's limits filled in, values as given (for evaluation)."""
        if isinstance(license, str):
            return {"tier": license, **self.tier_limits(license, context)}
        data = dict(require_mapping(license, "license"))
        tier = data.get("tier")
        if tier is not None:
            for key, value in self.tier_limits(tier, context).items():
                data.setdefault(key, value)
        return data

    # --- policy checks ------------------------------------------------------------------

    def _evaluate(
        self, check: str, data: Mapping[str, Any], context: PolicyContext | None
    ) -> PolicyResult:
        return self._engine.evaluate(LICENSING_POLICIES[check], data, context)

    def check_usage_limits(
        self,
        usage: Mapping[str, Any],
        license: Mapping[str, Any] | str | None = None,
        context: PolicyContext | None = None,
    ) -> dict[str, Any]:
        """Whether current usage is within the license's limits.

        Args:
            usage: ``current_users``, ``current_bandwidth_mbps``, ``current_storage_gb``
                and ``current_integrations`` (and optionally the ``license``).
            license: The license (or tier name); overrides ``usage["license"]``.
            context: Evaluation context.

        Returns:
            ``within_limits``, ``violations`` (per exceeded or unknown limit: ``limit``,
            ``allowed_value``, ``current_value``, ``missing`` and ``message``) plus the
            common fields.

        Raises:
            InvalidInputError: No license given, or an unknown tier.
        """
        data = dict(require_mapping(usage, "usage"))
        chosen = license if license is not None else data.get("license")
        if chosen is None:
            raise InvalidInputError(
                "no license: pass license= (a mapping or a tier name)", field="license"
            )
        data["license"] = self._resolve(chosen, context)
        result = self._evaluate("usage_limits", data, context)
        violations = []
        for rule in result.failed_rules:
            limit = (rule.spec.value_from or rule.name).rsplit(".", 1)[-1]
            allowed, current = rule.expected, rule.actual
            if rule.missing:
                text = f"{limit}: {rule.field} is missing"
            else:
                text = f"{limit} exceeded: allowed {allowed}, current {current}"
            violations.append(
                {
                    "limit": limit,
                    "field": rule.field,
                    "allowed_value": jsonable(allowed),
                    "current_value": jsonable(current),
                    "missing": rule.missing,
                    "message": text,
                }
            )
        return {
            "within_limits": result.passed and result.in_effect,
            "violations": violations,
            **summarize(result),
        }

    def check_feature_access(
        self,
        feature: str,
        license: Mapping[str, Any] | str,
        context: PolicyContext | None = None,
    ) -> dict[str, Any]:
        """Whether the license grants ``feature``.

        Basic features (``dashboard``, ``basic_reports``, ``user_management``) come with
        every tier; premium features need a ``pro``/``premium`` or ``enterprise`` license.

        Returns:
            ``allowed``, ``feature``, ``tier`` plus the common fields.
        """
        resolved = (
            {"tier": license}
            if isinstance(license, str)
            else dict(require_mapping(license, "license"))
        )
        result = self._evaluate(
            "feature_access", {"feature": feature, "license": resolved}, context
        )
        return {
            "allowed": result.passed and result.in_effect,
            "feature": feature,
            "tier": jsonable(resolved.get("tier")),
            **summarize(result),
        }

    def check_compliance(
        self, license: Mapping[str, Any], context: PolicyContext | None = None
    ) -> dict[str, Any]:
        """Whether the license is active with a valid expiration date still ahead.

        ``license["expires_at"]`` may be an aware datetime or an ISO-8601 string; "now" is
        ``context.now`` when given, else the current UTC time.

        Returns:
            ``compliant``, ``expires_at`` (ISO 8601 if it was a datetime) plus the common
            fields.
        """
        data = dict(require_mapping(license, "license"))
        result = self._evaluate("compliance", {"license": data}, context)
        return {
            "compliant": result.passed and result.in_effect,
            "expires_at": jsonable(data.get("expires_at")),
            **summarize(result),
        }

    # --- API limits ---------------------------------------------------------------------

    async def check_api_limit(
        self,
        tenant_id: str,
        license: Mapping[str, Any] | str,
        *,
        cost: int = 1,
        context: PolicyContext | None = None,
    ) -> RateLimitResult:
        """Count an API call of ``tenant_id`` against its license's hourly limit.

        Args:
            tenant_id: Whose limit to count against (one sliding window per tenant).
            license: The license (or tier name); ``max_api_calls_per_hour`` comes from it,
                else from its tier.
            cost: How many calls this request counts for.
            context: Evaluation context (selects a tenant's own tier table).

        Returns:
            The limiter's answer: ``allowed``, ``limit`` (``max_api_calls_per_hour``),
            ``allowed_value``, ``current_value``, ``remaining`` and ``retry_after``.

        Raises:
            InvalidInputError: Empty tenant id, unknown tier, or a license without a limit.
        """
        if not isinstance(tenant_id, str) or not tenant_id:
            raise InvalidInputError("tenant_id must be a non-empty string", field="tenant_id")
        resolved = self._resolve(license, context)
        limit = resolved.get(API_CALLS_LIMIT)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise InvalidInputError(
                f"license has no usable {API_CALLS_LIMIT} (got {limit!r})", field=API_CALLS_LIMIT
            )
        return await self._rate_limiter.hit(
            f"{tenant_id}:api_calls",
            limit=limit,
            window_seconds=API_WINDOW_SECONDS,
            cost=cost,
            limit_name=API_CALLS_LIMIT,
        )
