"""Domain policies: plan eligibility per call, commission batches per second.

Run: ``.venv/bin/python -m benchmarks domain_policies``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from benchmarks.support import print_table, sync_per_call_us
from dotmac_shared.business_logic.policies import (
    CommissionRates,
    CommissionTransaction,
    LicensingEngine,
    PlanEligibilityEngine,
    PolicyContext,
    calculate_commissions,
)

CONTEXT = PolicyContext(tenant_id="tenant123", user_id="user456", operation="plan_eligibility")
ELIGIBLE = {
    "id": "cust789",
    "customer_type": "residential",
    "credit_score": 650,
    "outstanding_balance": 0.0,
    "location": {"service_coverage": True},
}
INELIGIBLE = {**ELIGIBLE, "credit_score": 550, "outstanding_balance": 10.0}
ENTERPRISE = {
    "customer_type": "enterprise",
    "business_details": {"employee_count": 250, "annual_revenue": 5_000_000, "location_count": 3},
    "agreements": {"sla_signed": True},
    "account_manager_assigned": True,
}


def eligibility_rows() -> list[list[str]]:
    engine = PlanEligibilityEngine()
    policy_engine = engine.engine
    n = 20_000
    cases: list[tuple[str, Callable[[], Any]]] = [
        (
            "check_plan_eligibility residential, eligible",
            lambda: engine.check_plan_eligibility("residential_basic", ELIGIBLE, CONTEXT),
        ),
        (
            "check_plan_eligibility residential, 2 rules fail",
            lambda: engine.check_plan_eligibility("residential_basic", INELIGIBLE, CONTEXT),
        ),
        (
            "check_plan_eligibility enterprise (6 rules)",
            lambda: engine.check_plan_eligibility("enterprise", ENTERPRISE, CONTEXT),
        ),
        ("eligible_plans (3 policies)", lambda: engine.eligible_plans(ELIGIBLE, CONTEXT)),
        (
            "PolicyEngine.evaluate (no wrapper)",
            lambda: policy_engine.evaluate("plan_eligibility.residential_basic", ELIGIBLE, CONTEXT),
        ),
        (
            "PolicyEngine.is_allowed (fast path)",
            lambda: policy_engine.is_allowed(
                "plan_eligibility.residential_basic", ELIGIBLE, CONTEXT
            ),
        ),
    ]
    rows = []
    for label, fn in cases:
        fn()  # warm up
        us = sync_per_call_us(fn, n)
        rows.append([label, f"{us:.1f}", f"{1e6 / us:,.0f}"])
    return rows


def make_transactions(n: int, partners: int = 20_000) -> list[CommissionTransaction]:
    """Mostly small sales (up to $2,000), 1% large ones ($50,000-$200,000) that hit the cap."""
    rng = random.Random(42)
    tiers = ("bronze", "silver", "gold", "platinum")
    transactions = []
    for i in range(n):
        if rng.random() < 0.01:
            cents = rng.randrange(5_000_000, 20_000_000)
        else:
            cents = rng.randrange(1, 200_000)
        transactions.append(
            CommissionTransaction(
                f"tx{i}",
                f"partner{rng.randrange(partners)}",
                tiers[rng.randrange(4)],
                Decimal(cents) / 100,
            )
        )
    return transactions


def commission_rows() -> list[list[str]]:
    rates = CommissionRates(
        tier_rates={
            "bronze": Decimal("0.05"),
            "silver": Decimal("0.10"),
            "gold": Decimal("0.125"),
            "platinum": Decimal("0.15"),
        },
        partner_rates={("gold", f"partner{i}"): Decimal("0.2") for i in range(0, 20_000, 10)},
    )
    n = 100_000
    objects = make_transactions(n)
    mappings = [
        {
            "id": t.transaction_id,
            "partner_id": t.partner_id,
            "tier": t.tier,
            "amount": str(t.amount),
        }
        for t in objects
    ]
    rows = []
    for label, batch in (
        ("CommissionTransaction objects", objects),
        ("dicts with string amounts", mappings),
    ):
        best = float("inf")
        result = None
        for _ in range(3):
            start = time.perf_counter()
            result = calculate_commissions(batch, rates=rates)
            best = min(best, time.perf_counter() - start)
        assert result is not None
        rows.append(
            [
                f"calculate_commissions, {n:,} {label}",
                f"{best * 1000:.0f}",
                f"{n / best:,.0f}",
                f"{result.capped_count:,}",
                f"{len(result.carried_forward):,}",
            ]
        )
    return rows


def licensing_rows() -> list[list[str]]:
    engine = LicensingEngine()
    usage = {
        "current_users": 40,
        "current_bandwidth_mbps": 60,
        "current_storage_gb": 20,
        "current_integrations": 2,
    }
    fn = lambda: engine.check_usage_limits(usage, "basic", CONTEXT)  # noqa: E731
    fn()
    us = sync_per_call_us(fn, 20_000)
    return [["check_usage_limits (4 limits, tier defaults)", f"{us:.1f}", f"{1e6 / us:,.0f}"]]


def main() -> None:
    print_table(
        "Plan eligibility and licensing checks (per call, best of 5 x 20,000)",
        ["operation", "us/call", "calls/s"],
        eligibility_rows() + licensing_rows(),
    )
    print_table(
        "Commission batches (best of 3; 20,000 partners, 10% with a gold override)",
        ["operation", "ms", "transactions/s", "capped", "partners carried"],
        commission_rows(),
    )


if __name__ == "__main__":
    main()
