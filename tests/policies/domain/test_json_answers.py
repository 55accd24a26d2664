"""Commission and licensing answers are JSON-safe; the typed results keep their Decimals."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.policies import (
    CommissionRates,
    CommissionRulesEngine,
    CommissionTransaction,
    LicensingEngine,
    PlanEligibilityEngine,
    PolicyContext,
    calculate_commissions,
)

NOW = datetime.now(UTC)
CTX = PolicyContext(tenant_id="tenant123", operation="json_answers", now=NOW)

#: Field values an application might pass: numbers of every kind, money, times, text.
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=False, places=2, min_value=-(10**9), max_value=10**9),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.datetimes(timezones=st.just(UTC)),
    st.dates(),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=3),
)


def fields(*names: str) -> st.SearchStrategy[dict[str, Any]]:
    """Mappings with any subset of ``names``, each holding any of :data:`VALUES`."""
    return st.dictionaries(st.sampled_from(names), VALUES, max_size=len(names))


def assert_plain_json(value: Any, where: str = "answer") -> None:
    """``value`` holds only JSON types (no Decimal, datetime or result objects)."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str), f"{where} key {key!r}"
            assert_plain_json(item, f"{where}[{key!r}]")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            assert_plain_json(item, f"{where}[{index}]")
    else:
        assert value is None or type(value) in (bool, int, float, str), (
            f"{where} is a {type(value).__name__}"
        )
    json.dumps(value, allow_nan=False)  # strict JSON: no NaN or Infinity either


@pytest.fixture(scope="module")
def rules() -> CommissionRulesEngine:
    return CommissionRulesEngine()


@pytest.fixture(scope="module")
def licensing() -> LicensingEngine:
    return LicensingEngine()


SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(
    partner=fields(
        "status",
        "agreement_signed",
        "compliance_status",
        "performance_score",
        "active_disputes",
        "tax_information_complete",
    ),
    rate=fields(
        "commission_rate",
        "calculated_payout",
        "transaction_amount",
        "customer_monthly_revenue",
        "service_active_days",
        "pending_refunds",
    ),
    clawback=fields(
        "customer_cancelled",
        "days_to_cancellation",
        "service_quality_score",
        "chargeback_count",
        "fraud_score",
        "partner_policy_violations",
    ),
    bonus=fields(
        "quarterly_performance_pct",
        "quarterly_revenue",
        "quarterly_target",
        "customer_satisfaction",
        "new_customers",
        "customer_retention_rate",
        "upsell_revenue",
        "certifications_current",
    ),
    bonus_amount=st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=0),
)
def test_commission_answers_are_plain_json_when_inputs_hold_any_values(
    rules, partner, rate, clawback, bonus, bonus_amount
):
    checks = [
        lambda: rules.check_partner_eligibility(partner, CTX),
        lambda: rules.validate_rate(rate, CTX),
        lambda: rules.check_clawback(clawback, CTX),
        lambda: rules.check_bonus_eligibility(bonus, CTX, bonus_amount=bonus_amount),
    ]

    for check in checks:
        try:
            answer = check()
        except InvalidInputError as exc:  # only a derived amount beyond Decimal's exponents
            assert "out of the range of decimal arithmetic" in exc.message
            continue
        assert_plain_json(answer)


@SETTINGS
@given(
    tier=st.sampled_from(["bronze", "silver", "gold", "platinum"]),
    partner=fields(
        "quarterly_revenue",
        "active_customers",
        "performance_score",
        "certifications_current",
        "violations_last_6_months",
    ),
)
def test_tier_advancement_answer_is_plain_json_when_inputs_hold_any_values(rules, tier, partner):
    answer = rules.check_tier_advancement({**partner, "current_tier": tier}, CTX)

    assert_plain_json(answer)


def test_shortfalls_name_decimal_amounts_as_strings_when_revenue_is_a_decimal(rules):
    answer = rules.check_tier_advancement(
        {"current_tier": "bronze", "quarterly_revenue": Decimal("10.50")}, CTX
    )

    revenue = [s for s in answer["shortfalls"] if s["field"] == "quarterly_revenue"]
    assert [s["actual"] for s in revenue] == ["10.50"]
    assert_plain_json(answer)


def test_huge_payout_is_refused_by_the_maximum_when_it_cannot_hold_cents(rules):
    answer = rules.validate_rate(
        {"transaction_amount": Decimal("2.85e20"), "commission_rate": 350930}, CTX
    )

    assert answer["valid"] is False and "maximum_payout" in answer["failed_rules"]
    assert Decimal(answer["calculated_payout"]) > Decimal("1e25")


@pytest.mark.parametrize(
    ("check", "data", "field"),
    [
        (
            "validate_rate",
            {"transaction_amount": Decimal("1e999999"), "commission_rate": Decimal("1e999999")},
            "transaction_amount",
        ),
        (
            "check_bonus_eligibility",
            {"quarterly_revenue": Decimal("1e999999"), "quarterly_target": Decimal("1e-999999")},
            "quarterly_revenue",
        ),
    ],
)
def test_derived_amount_is_an_invalid_input_when_it_overflows_decimal_arithmetic(
    rules, check, data, field
):
    with pytest.raises(InvalidInputError, match="out of the range") as raised:
        getattr(rules, check)(data, CTX)

    assert raised.value.field == field


def test_money_is_a_decimal_string_when_a_payout_or_bonus_is_returned(rules):
    rate = rules.validate_rate(
        {"transaction_amount": Decimal("1234.56"), "commission_rate": Decimal("0.1")}, CTX
    )
    bonus = rules.check_bonus_eligibility({}, CTX, bonus_amount=Decimal("99.90"))

    assert rate["calculated_payout"] == "123.46"
    assert bonus["bonus_payable"] == "0"


@SETTINGS
@given(
    usage=fields(
        "current_users", "current_bandwidth_mbps", "current_storage_gb", "current_integrations"
    ),
    tier=st.sampled_from(["basic", "pro", "premium", "enterprise"]),
    limits=fields("max_users", "max_storage_gb", "max_bandwidth_mbps", "max_integrations"),
    feature=st.text(max_size=12),
    status=VALUES,
    expires_at=VALUES,
)
def test_licensing_answers_are_plain_json_when_inputs_hold_any_values(
    licensing, usage, tier, limits, feature, status, expires_at
):
    license = {"tier": tier, **limits, "status": status, "expires_at": expires_at}
    answers = [
        licensing.check_usage_limits(usage, license, CTX),
        licensing.check_feature_access(feature, license, CTX),
        licensing.check_compliance(license, CTX),
        licensing.resolve_license(license, CTX),
    ]

    for answer in answers:
        assert_plain_json(answer)


def test_expiry_is_iso_8601_when_the_license_gives_a_datetime(licensing):
    expires = NOW + timedelta(days=30)

    answer = licensing.check_compliance({"status": "active", "expires_at": expires}, CTX)

    assert answer["compliant"] is True
    assert answer["expires_at"] == expires.isoformat()


def test_resolved_license_keeps_evaluating_with_decimal_limits_when_given(licensing):
    license = {"tier": "basic", "max_users": Decimal("10")}

    over = licensing.check_usage_limits({"current_users": 11}, license, CTX)
    resolved = licensing.resolve_license(license, CTX)

    assert [v["limit"] for v in over["violations"] if not v["missing"]] == ["max_users"]
    assert over["violations"][0]["allowed_value"] == "10"
    assert resolved["max_users"] == "10" and resolved["max_storage_gb"] == 50


@SETTINGS
@given(customer=fields("customer_type", "credit_score", "outstanding_balance", "location"))
def test_eligibility_answer_is_plain_json_when_inputs_hold_any_values(customer):
    answer = PlanEligibilityEngine().check_plan_eligibility("residential_basic", customer, CTX)

    assert_plain_json(answer)


AMOUNTS = st.decimals(min_value=0, max_value=10**7, places=2, allow_nan=False)
TRANSACTIONS = st.lists(
    st.builds(
        CommissionTransaction,
        transaction_id=st.uuids().map(str),
        partner_id=st.sampled_from(["p1", "p2", "p3"]),
        tier=st.sampled_from(["silver", "gold"]),
        amount=AMOUNTS,
    ),
    max_size=20,
)
RATES = CommissionRates(
    {"silver": Decimal("0.10"), "gold": Decimal("0.125")},
    {("gold", "p1"): Decimal("0.2")},
)


@settings(max_examples=80, deadline=None)
@given(transactions=TRANSACTIONS, carried=st.dictionaries(st.just("p2"), AMOUNTS, max_size=1))
def test_batch_to_dict_is_plain_json_and_keeps_the_decimals_when_serialised(transactions, carried):
    batch = calculate_commissions(transactions, rates=RATES, carried_forward=carried)

    summary = batch.to_dict()
    lines = [line.to_dict() for line in batch.lines]

    for value in (summary, lines, RATES.to_dict(), [tx.to_dict() for tx in transactions]):
        assert_plain_json(value)
    assert Decimal(summary["total_payout"]) == batch.total_payout
    assert isinstance(batch.total_payout, Decimal)
    for partner, payout in batch.payouts.items():
        assert isinstance(payout.payout, Decimal)
        assert Decimal(summary["payouts"][partner]["payout"]) == payout.payout
    for line, shown in zip(batch.lines, lines, strict=True):
        assert isinstance(line.commission, Decimal)
        assert Decimal(shown["commission"]) == line.commission
        assert Decimal(shown["amount"]) == line.amount


def test_rates_to_dict_lists_partner_overrides_when_serialised():
    assert RATES.to_dict() == {
        "currency": "USD",
        "tier_rates": {"silver": "0.10", "gold": "0.125"},
        "partner_rates": [{"tier": "gold", "partner_id": "p1", "rate": "0.2"}],
    }


def test_retry_after_is_null_when_a_call_can_never_fit():
    from dotmac_shared.business_logic.ratelimit import RateLimitResult

    result = RateLimitResult(
        False, "t:api", "max_api_calls_per_hour", 1, 0, 1, 3600.0, float("inf")
    )

    assert result.to_dict()["retry_after"] is None
    assert_plain_json(result.to_dict())


def test_date_values_are_iso_when_echoed_in_a_violation(licensing):
    answer = licensing.check_usage_limits({"current_users": NOW.date()}, {"tier": "basic"}, CTX)

    assert_plain_json(answer)
