"""Commission rates in the database (SQLite and PostgreSQL) and the commission rule engine."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.operations.models import CommissionConfiguration
from dotmac_shared.business_logic.policies import (
    CommissionRates,
    CommissionRulesEngine,
    CommissionTransaction,
    PolicyContext,
    calculate_commissions,
    load_commission_rates,
    save_commission_rate,
)

Factory = async_sessionmaker[AsyncSession]


async def test_loaded_rates_keep_tier_defaults_and_partner_overrides_when_saved(
    session_factory: Factory,
) -> None:
    await save_commission_rate(session_factory, "t1", "silver", Decimal("0.10"))
    await save_commission_rate(session_factory, "t1", "gold", Decimal("0.125"))
    await save_commission_rate(session_factory, "t1", "silver", Decimal("0.20"), partner_id="vip")
    await save_commission_rate(session_factory, "other", "silver", Decimal("0.40"))

    rates = await load_commission_rates(session_factory, "t1")

    assert dict(rates.tier_rates) == {"silver": Decimal("0.1000"), "gold": Decimal("0.1250")}
    assert dict(rates.partner_rates) == {("silver", "vip"): Decimal("0.2000")}
    assert rates.rate_for("silver", "vip") == Decimal("0.2")
    assert rates.rate_for("silver", "anyone") == Decimal("0.1")
    assert rates.currency == "USD"


async def test_saving_again_replaces_the_rate_when_tier_and_partner_match(
    session_factory: Factory,
) -> None:
    await save_commission_rate(session_factory, "t1", "silver", Decimal("0.10"))
    await save_commission_rate(session_factory, "t1", "silver", Decimal("0.12"))

    rates = await load_commission_rates(session_factory, "t1")
    async with session_factory() as session:
        rows = await session.scalar(select(func.count()).select_from(CommissionConfiguration))

    assert rates.tier_rates["silver"] == Decimal("0.12")
    assert rows == 1


async def test_batch_uses_database_rates_when_loaded_for_the_tenant(
    session_factory: Factory,
) -> None:
    await save_commission_rate(session_factory, "t1", "silver", Decimal("0.10"))
    await save_commission_rate(session_factory, "t1", "silver", Decimal("0.15"), partner_id="vip")
    rates = await load_commission_rates(session_factory, "t1")

    batch = calculate_commissions(
        [
            CommissionTransaction("a", "vip", "silver", Decimal("1000.00")),
            CommissionTransaction("b", "std", "silver", Decimal("1000.00")),
        ],
        rates=rates,
    )

    assert batch.paid == {"vip": Decimal("150.00"), "std": Decimal("100.00")}


async def test_tenant_without_configuration_gets_empty_rates_when_nothing_saved(
    session_factory: Factory,
) -> None:
    rates = await load_commission_rates(session_factory, "nobody")
    assert dict(rates.tier_rates) == {} and dict(rates.partner_rates) == {}
    with pytest.raises(InvalidInputError, match="tiers with a rate: none"):
        rates.rate_for("silver", "p")


@pytest.mark.parametrize(
    ("rate", "match"),
    [(Decimal("0.6"), "outside"), (Decimal("0.12345"), "four decimal places")],
)
async def test_invalid_rate_is_not_stored_when_saving(
    session_factory: Factory, rate: Decimal, match: str
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        await save_commission_rate(session_factory, "t1", "silver", rate)
    async with session_factory() as session:
        assert await session.scalar(select(func.count()).select_from(CommissionConfiguration)) == 0


# --- CommissionRulesEngine ------------------------------------------------------------------

CTX = PolicyContext(tenant_id="tenant123", operation="commission_check")
PARTNER: dict[str, Any] = {
    "status": "active",
    "agreement_signed": True,
    "compliance_status": "compliant",
    "performance_score": 70,
    "active_disputes": 0,
    "tax_information_complete": True,
}
RATE: dict[str, Any] = {
    "commission_rate": 0.1,
    "calculated_payout": 500,
    "customer_monthly_revenue": 199.99,
    "service_active_days": 30,
    "pending_refunds": 0,
}
TIER: dict[str, Any] = {
    "current_tier": "bronze",
    "quarterly_revenue": 25000,
    "active_customers": 10,
    "performance_score": 70,
    "certifications_current": True,
    "violations_last_6_months": 0,
}
CLEAN: dict[str, Any] = {
    "customer_cancelled": False,
    "service_quality_score": 60,
    "chargeback_count": 0,
    "fraud_score": 75,
    "partner_policy_violations": 0,
}
BONUS: dict[str, Any] = {
    "quarterly_performance_pct": 120,
    "customer_satisfaction": 4.5,
    "new_customers": 10,
    "customer_retention_rate": 0.95,
    "upsell_revenue": 0,
    "certifications_current": False,
}


@pytest.fixture(scope="module")
def rules() -> CommissionRulesEngine:
    return CommissionRulesEngine(rates={"silver": Decimal("0.10")})


@pytest.mark.parametrize(
    ("change", "eligible", "failed"),
    [
        ({}, True, []),
        ({"performance_score": 69.99}, False, ["minimum_performance_score"]),
        ({"performance_score": 70.01}, True, []),
        ({"performance_score": None}, False, ["minimum_performance_score"]),
        ({"status": "terminated"}, False, ["partner_active"]),
        ({"agreement_signed": False}, False, ["agreement_signed"]),
        ({"compliance_status": "under_review"}, False, ["compliant"]),
        ({"active_disputes": 1}, False, ["no_active_disputes"]),
        ({"tax_information_complete": False}, False, ["tax_information_complete"]),
        ({"status": None, "active_disputes": 2}, False, ["partner_active", "no_active_disputes"]),
    ],
)
def test_partner_eligibility_follows_each_rule_when_one_field_changes(
    rules: CommissionRulesEngine, change: dict[str, Any], eligible: bool, failed: list[str]
) -> None:
    partner = {k: v for k, v in {**PARTNER, **change}.items() if v is not None}
    result = rules.check_partner_eligibility(partner, CTX)
    assert result["eligible"] is eligible
    assert result["failed_rules"] == failed
    assert result["decision"] == ("ALLOW" if eligible else "DENY")
    assert len(result["reasons"]) == len(failed)


@pytest.mark.parametrize(
    ("change", "valid", "failed"),
    [
        ({}, True, []),
        ({"commission_rate": 0.5}, True, []),
        ({"commission_rate": 0.5001}, False, ["rate_in_range"]),
        ({"commission_rate": -0.0001}, False, ["rate_in_range"]),
        ({"calculated_payout": 49.99}, False, ["minimum_payout"]),
        ({"calculated_payout": 10000.01}, False, ["maximum_payout"]),
        ({"customer_monthly_revenue": 0}, False, ["positive_customer_revenue"]),
        ({"service_active_days": 29}, False, ["minimum_service_age"]),
        ({"pending_refunds": 1}, False, ["no_pending_refunds"]),
    ],
)
def test_rate_validation_follows_each_bound_when_one_field_changes(
    rules: CommissionRulesEngine, change: dict[str, Any], valid: bool, failed: list[str]
) -> None:
    result = rules.validate_rate({**RATE, **change}, CTX)
    assert (result["valid"], result["failed_rules"]) == (valid, failed)


@pytest.mark.parametrize(
    ("amount", "rate", "payout", "valid"),
    [
        ("499.99", "0.10", Decimal("50.00"), True),  # 49.999 rounds half up to 50.00
        ("499.94", "0.10", Decimal("49.99"), False),
        ("100000.00", "0.10", Decimal("10000.00"), True),
        ("100000.10", "0.10", Decimal("10000.01"), False),
    ],
)
def test_payout_is_computed_from_amount_and_rate_when_not_given(
    rules: CommissionRulesEngine, amount: str, rate: str, payout: Decimal, valid: bool
) -> None:
    data = {k: v for k, v in RATE.items() if k != "calculated_payout"}
    result = rules.validate_rate(
        {**data, "transaction_amount": Decimal(amount), "commission_rate": Decimal(rate)}, CTX
    )
    assert result["calculated_payout"] == str(payout)  # JSON-safe: money as a string
    assert result["valid"] is valid


def test_tiers_come_from_the_policy_data_when_asked(rules: CommissionRulesEngine) -> None:
    tiers = rules.tiers()
    assert list(tiers) == ["bronze", "silver", "gold", "platinum"]
    assert tiers["silver"] == {
        "min_quarterly_revenue": 25000,
        "min_active_customers": 10,
        "min_performance_score": 70,
    }


@pytest.mark.parametrize(
    ("field", "below", "at", "above"),
    [
        ("quarterly_revenue", 24999.99, 25000, 25000.01),
        ("active_customers", 9, 10, 11),
        ("performance_score", 69.9, 70, 70.1),
    ],
)
def test_tier_advancement_uses_next_tier_minimums_when_at_the_boundary(
    rules: CommissionRulesEngine, field: str, below: float, at: float, above: float
) -> None:
    for value, advance in ((below, False), (at, True), (above, True)):
        result = rules.check_tier_advancement({**TIER, field: value}, CTX)
        assert result["advance"] is advance, (field, value)
        assert result["next_tier"] == "silver"
    missing = rules.check_tier_advancement({k: v for k, v in TIER.items() if k != field}, CTX)
    assert missing["advance"] is False
    short = rules.check_tier_advancement({**TIER, field: below}, CTX)["shortfalls"]
    assert [(s["field"], s["required"], s["actual"]) for s in short] == [
        (
            field,
            {"quarterly_revenue": 25000, "active_customers": 10, "performance_score": 70}[field],
            below,
        )
    ]


def test_tier_advancement_compares_with_gold_numbers_when_partner_is_silver(
    rules: CommissionRulesEngine,
) -> None:
    silver = {**TIER, "current_tier": "silver"}
    result = rules.check_tier_advancement(silver, CTX)  # silver's numbers are not enough
    assert result["next_tier"] == "gold"
    assert result["advance"] is False
    assert result["failed_rules"] == [
        "revenue_meets_next_tier",
        "customers_meet_next_tier",
        "performance_meets_next_tier",
    ]
    gold_ready = {
        **silver,
        "quarterly_revenue": 100000,
        "active_customers": 25,
        "performance_score": 80,
    }
    assert rules.check_tier_advancement(gold_ready, CTX)["advance"] is True


def test_caller_cannot_lower_the_bar_when_passing_its_own_next_tier(
    rules: CommissionRulesEngine,
) -> None:
    sneaky = {
        **TIER,
        "quarterly_revenue": 1,
        "next_tier": {"name": "silver", "min_quarterly_revenue": 0},
    }
    assert rules.check_tier_advancement(sneaky, CTX)["advance"] is False


def test_top_tier_does_not_advance_when_partner_is_platinum(rules: CommissionRulesEngine) -> None:
    result = rules.check_tier_advancement({**TIER, "current_tier": "platinum"}, CTX)
    assert (result["advance"], result["next_tier"]) == (False, None)
    assert result["reasons"][0] == "The partner is already at the highest tier"


def test_unknown_tier_is_refused_when_checking_advancement(rules: CommissionRulesEngine) -> None:
    with pytest.raises(InvalidInputError, match="bronze, silver, gold, platinum"):
        rules.check_tier_advancement({**TIER, "current_tier": "diamond"}, CTX)


TRIGGER_CHANGES = {
    "early_cancellation": {"customer_cancelled": True, "days_to_cancellation": 90},
    "low_service_quality": {"service_quality_score": 59},
    "chargeback": {"chargeback_count": 1},
    "fraud_detected": {"fraud_score": 76},
    "partner_policy_violation": {"partner_policy_violations": 1},
}


def test_no_clawback_when_every_signal_is_at_its_safe_boundary(
    rules: CommissionRulesEngine,
) -> None:
    result = rules.check_clawback(
        {**CLEAN, "customer_cancelled": True, "days_to_cancellation": 91}, CTX
    )
    assert (result["clawback_required"], result["triggers"], result["missing"]) == (False, [], [])
    assert result["decision"] == "ALLOW"


@settings(max_examples=60, deadline=None)
@given(st.sets(st.sampled_from(sorted(TRIGGER_CHANGES))))
def test_clawback_lists_exactly_the_fired_triggers_when_any_combination_fires(
    rules: CommissionRulesEngine, fired: set[str]
) -> None:
    data = dict(CLEAN)
    for name in fired:
        data.update(TRIGGER_CHANGES[name])
    result = rules.check_clawback(data, CTX)
    assert set(result["triggers"]) == fired
    assert result["clawback_required"] is bool(fired)
    assert result["missing"] == []
    assert result["decision"] == ("DENY" if fired else "ALLOW")


def test_missing_signal_is_reported_apart_when_data_is_incomplete(
    rules: CommissionRulesEngine,
) -> None:
    data = {k: v for k, v in CLEAN.items() if k != "fraud_score"}
    data.update(customer_cancelled=True, chargeback_count=2)  # cancelled, but when?
    result = rules.check_clawback(data, CTX)
    assert result["triggers"] == ["chargeback"]
    assert result["missing"] == ["early_cancellation", "fraud_detected"]
    assert (result["clawback_required"], result["requires_review"]) == (True, True)


def test_bonus_is_paid_only_when_eligible(rules: CommissionRulesEngine) -> None:
    paid = rules.check_bonus_eligibility(BONUS, CTX, bonus_amount=Decimal("2500.00"))
    assert paid["eligible"] is True and paid["bonus_payable"] == "2500.00"
    assert paid["score"] == pytest.approx(0.5) and paid["threshold"] == 0.5

    short = {**BONUS, "customer_retention_rate": 0.89}  # score 0 of 4
    unpaid = rules.check_bonus_eligibility(short, CTX, bonus_amount=Decimal("2500.00"))
    assert unpaid["eligible"] is False and unpaid["bonus_payable"] == "0"


@pytest.mark.parametrize(
    ("revenue", "target", "eligible"),
    [("110000", "100000", False), ("110001", "100000", True), ("0", "0", False)],
)
def test_bonus_performance_is_derived_from_revenue_and_target_when_not_given(
    rules: CommissionRulesEngine, revenue: str, target: str, eligible: bool
) -> None:
    data = {k: v for k, v in BONUS.items() if k != "quarterly_performance_pct"}
    data.update(quarterly_revenue=Decimal(revenue), quarterly_target=Decimal(target))
    assert rules.check_bonus_eligibility(data, CTX)["eligible"] is eligible


def test_engine_batch_uses_its_default_rates_when_none_are_passed(
    rules: CommissionRulesEngine,
) -> None:
    batch = rules.calculate_commissions(
        [CommissionTransaction("t", "p", "silver", Decimal("1000"))]
    )
    assert batch.paid == {"p": Decimal("100.00")}
    with pytest.raises(InvalidInputError, match="no commission rates"):
        CommissionRulesEngine().calculate_commissions([])
    override = rules.calculate_commissions(
        [CommissionTransaction("t", "p", "silver", Decimal("1000"))],
        rates=CommissionRates.from_tiers({"silver": "0.2"}),
    )
    assert override.paid == {"p": Decimal("200.00")}
