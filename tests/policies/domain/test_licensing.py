"""Licensing: usage limits, feature access, compliance and per-tenant API limits."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as redis_async

from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.policies import LicensingEngine, PolicyContext
from dotmac_shared.business_logic.policies._licensing import LICENSE_LIMITS
from dotmac_shared.business_logic.ratelimit import InMemoryRateLimiter, RedisRateLimiter

NOW = datetime(2026, 6, 1, tzinfo=UTC)
CTX = PolicyContext(tenant_id="tenant123", now=NOW)
USAGE: dict[str, Any] = {
    "current_users": 10,
    "current_bandwidth_mbps": 10,
    "current_storage_gb": 10,
    "current_integrations": 1,
}


@pytest.fixture(scope="module")
def licensing() -> LicensingEngine:
    return LicensingEngine()


def test_plan_defaults_match_the_tenant_plans_when_asked(licensing: LicensingEngine) -> None:
    assert licensing.plan_defaults("basic") == {
        "max_users": 100,
        "max_storage_gb": 50,
        "max_bandwidth_mbps": 100,
        "max_integrations": 5,
        "max_api_calls_per_hour": 1000,
    }
    for plan in ("pro", "enterprise"):
        defaults = licensing.plan_defaults(plan)
        assert (
            defaults["max_users"],
            defaults["max_storage_gb"],
            defaults["max_bandwidth_mbps"],
        ) == (1000, 500, 1000)
        assert list(defaults) == list(LICENSE_LIMITS)
    assert licensing.plan_defaults("premium") == licensing.plan_defaults("pro")


def test_unknown_plan_is_refused_with_the_known_tiers_when_asking_defaults(
    licensing: LicensingEngine,
) -> None:
    with pytest.raises(InvalidInputError) as info:
        licensing.plan_defaults("gold")
    assert "basic, enterprise, premium, pro" in info.value.message
    assert info.value.field == "tier"


LIMITS = [
    ("current_users", "max_users", 100),
    ("current_bandwidth_mbps", "max_bandwidth_mbps", 100),
    ("current_storage_gb", "max_storage_gb", 50),
    ("current_integrations", "max_integrations", 5),
]


@pytest.mark.parametrize(("field", "limit", "allowed"), LIMITS)
def test_usage_limit_boundary_holds_when_usage_is_below_at_or_above(
    licensing: LicensingEngine, field: str, limit: str, allowed: int
) -> None:
    for value, within in ((allowed - 1, True), (allowed, True), (allowed + 1, False)):
        result = licensing.check_usage_limits({**USAGE, field: value}, "basic", CTX)
        assert result["within_limits"] is within, (field, value)
    over = licensing.check_usage_limits({**USAGE, field: allowed + 1}, "basic", CTX)
    [violation] = over["violations"]
    assert violation["limit"] == limit
    assert (violation["allowed_value"], violation["current_value"]) == (allowed, allowed + 1)
    assert violation["missing"] is False
    assert violation["message"] == f"{limit} exceeded: allowed {allowed}, current {allowed + 1}"

    missing = licensing.check_usage_limits(
        {k: v for k, v in USAGE.items() if k != field}, "basic", CTX
    )
    assert missing["within_limits"] is False
    assert missing["violations"][0]["missing"] is True
    assert missing["violations"][0]["limit"] == limit


def test_license_limits_override_tier_defaults_when_stated(licensing: LicensingEngine) -> None:
    custom = {"tier": "basic", "max_users": 150}
    result = licensing.check_usage_limits({**USAGE, "current_users": 150}, custom, CTX)
    assert result["within_limits"] is True
    over = licensing.check_usage_limits({**USAGE, "current_storage_gb": 51}, custom, CTX)
    assert over["violations"][0]["allowed_value"] == 50  # filled from the basic tier


def test_every_exceeded_limit_is_listed_when_several_are_over(licensing: LicensingEngine) -> None:
    usage = {**USAGE, "current_users": 1001, "current_integrations": 26}
    result = licensing.check_usage_limits(usage, {"tier": "pro"}, CTX)
    assert [(v["limit"], v["allowed_value"], v["current_value"]) for v in result["violations"]] == [
        ("max_users", 1000, 1001),
        ("max_integrations", 25, 26),
    ]


def test_usage_check_is_refused_when_no_license_is_given(licensing: LicensingEngine) -> None:
    with pytest.raises(InvalidInputError, match="no license"):
        licensing.check_usage_limits(USAGE)


@pytest.mark.parametrize(
    ("feature", "tier", "allowed"),
    [
        ("dashboard", "basic", True),
        ("basic_reports", "basic", True),
        ("user_management", "basic", True),
        ("advanced_analytics", "basic", False),
        ("advanced_analytics", "premium", True),
        ("api_access", "pro", True),
        ("white_label", "enterprise", True),
        ("dashboard", "enterprise", True),
        ("time_travel", "enterprise", False),
        ("dashboard", "gold", False),
    ],
)
def test_feature_access_follows_the_license_tier_when_requested(
    licensing: LicensingEngine, feature: str, tier: str, allowed: bool
) -> None:
    result = licensing.check_feature_access(feature, tier, CTX)
    assert result["allowed"] is allowed
    assert (result["feature"], result["tier"]) == (feature, tier)


def test_premium_denial_says_which_license_is_needed_when_tier_is_basic(
    licensing: LicensingEngine,
) -> None:
    result = licensing.check_feature_access("api_access", {"tier": "basic"}, CTX)
    assert result["reasons"] == ["This feature needs a premium or enterprise license"]


@pytest.mark.parametrize(
    ("license", "compliant", "failed"),
    [
        ({"status": "active", "expires_at": NOW + timedelta(seconds=1)}, True, []),
        ({"status": "active", "expires_at": NOW}, False, ["license_not_expired"]),
        (
            {"status": "active", "expires_at": NOW - timedelta(seconds=1)},
            False,
            ["license_not_expired"],
        ),
        ({"status": "active", "expires_at": "2026-06-01T00:00:01+00:00"}, True, []),
        (
            {"status": "active", "expires_at": "2026-05-31T23:59:59+00:00"},
            False,
            ["license_not_expired"],
        ),
        ({"status": "active", "expires_at": "soon"}, False, ["license_not_expired"]),
        ({"status": "active"}, False, ["expiration_date_present", "license_not_expired"]),
        ({"status": "suspended", "expires_at": NOW + timedelta(days=9)}, False, ["license_active"]),
    ],
)
def test_compliance_needs_an_active_unexpired_license_when_checked(
    licensing: LicensingEngine, license: dict[str, Any], compliant: bool, failed: list[str]
) -> None:
    result = licensing.check_compliance(license, CTX)
    assert (result["compliant"], result["failed_rules"]) == (compliant, failed)


def test_compliance_uses_the_current_time_when_context_has_no_now(
    licensing: LicensingEngine,
) -> None:
    future = datetime.now(UTC) + timedelta(minutes=5)
    past = datetime.now(UTC) - timedelta(minutes=5)
    assert licensing.check_compliance({"status": "active", "expires_at": future})["compliant"]
    assert not licensing.check_compliance({"status": "active", "expires_at": past})["compliant"]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_api_limit_is_sized_by_the_license_tier_when_calls_arrive() -> None:
    clock = Clock()
    licensing = LicensingEngine(rate_limiter=InMemoryRateLimiter(clock=clock))
    results = [await licensing.check_api_limit("t1", "basic") for _ in range(1001)]
    assert all(r.allowed for r in results[:1000])
    refused = results[-1]
    assert not refused.allowed
    assert (refused.limit, refused.allowed_value, refused.current_value) == (
        "max_api_calls_per_hour",
        1000,
        1000,
    )
    assert (await licensing.check_api_limit("t2", "basic")).allowed  # other tenant
    assert (await licensing.check_api_limit("t1", {"tier": "enterprise"})).allowed_value == 100000
    clock.now += 3600  # an hour later the window is empty again
    assert (await licensing.check_api_limit("t1", "basic")).current_value == 1


async def test_api_limit_from_license_overrides_the_tier_when_stated() -> None:
    licensing = LicensingEngine()
    custom = {"tier": "basic", "max_api_calls_per_hour": 2}
    allowed = [(await licensing.check_api_limit("t", custom)).allowed for _ in range(3)]
    assert allowed == [True, True, False]
    with pytest.raises(InvalidInputError):
        await licensing.check_api_limit("", "basic")
    with pytest.raises(InvalidInputError):
        await licensing.check_api_limit("t", {"max_api_calls_per_hour": "many"})


async def test_api_limit_is_shared_when_two_engines_use_one_redis(
    redis: redis_async.Redis,
) -> None:
    prefix = f"test:licensing:{uuid.uuid4().hex}:"
    first = LicensingEngine(rate_limiter=RedisRateLimiter(redis, prefix=prefix))
    second = LicensingEngine(rate_limiter=RedisRateLimiter(redis, prefix=prefix))
    license = {"tier": "basic", "max_api_calls_per_hour": 3}
    try:
        answers = [
            await engine.check_api_limit("tenant123", license)
            for engine in (first, second, first, second)
        ]
    finally:
        await redis.delete(f"{prefix}tenant123:api_calls")
    assert [a.allowed for a in answers] == [True, True, True, False]
    assert answers[-1].current_value == 3


def test_plan_defaults_are_the_documented_tenant_limits_when_a_tenant_is_created(
    licensing: LicensingEngine,
) -> None:
    # The tenant saga and seed_demo_data take a new tenant's limits from here (one source).
    documented = {
        "basic": {"max_users": 100, "max_storage_gb": 50, "max_bandwidth_mbps": 100},
        "pro": {"max_users": 1000, "max_storage_gb": 500, "max_bandwidth_mbps": 1000},
        "enterprise": {"max_users": 1000, "max_storage_gb": 500, "max_bandwidth_mbps": 1000},
    }
    for plan, limits in documented.items():
        defaults = licensing.plan_defaults(plan)
        assert {key: defaults[key] for key in limits} == limits, plan
