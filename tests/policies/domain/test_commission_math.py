"""Commission arithmetic against hand-computed expectations, plus conservation properties."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.policies import (
    CommissionRates,
    CommissionTransaction,
    calculate_commissions,
)
from dotmac_shared.business_logic.policies._commission_types import currency_quantum

RATES = CommissionRates.from_tiers(
    {"bronze": Decimal("0.05"), "silver": Decimal("0.10"), "gold": Decimal("0.15")}
)


def tx(tid: str, partner: str, tier: str, amount: str) -> CommissionTransaction:
    return CommissionTransaction(tid, partner, tier, Decimal(amount))


def test_commission_is_amount_times_rate_when_no_rounding_is_needed() -> None:
    batch = calculate_commissions([tx("t1", "p1", "silver", "1000.00")], rates=RATES)
    assert batch.lines[0].commission == Decimal("100.00")
    assert batch.payouts["p1"].payout == Decimal("100.00")
    assert batch.total_payout == Decimal("100.00")


@pytest.mark.parametrize(
    ("amount", "tier", "expected"),
    [
        ("10.10", "bronze", "0.51"),  # 0.505 -> half up 0.51 (half-even would give 0.50)
        ("0.25", "silver", "0.03"),  # 0.025 -> 0.03 (half-even: 0.02)
        ("10.05", "bronze", "0.50"),  # 0.5025 -> 0.50
        ("333.33", "gold", "50.00"),  # 49.9995 -> 50.00
        ("0.03", "gold", "0.00"),  # 0.0045 -> 0.00
    ],
)
def test_commission_rounds_half_up_to_cents_when_product_has_more_places(
    amount: str, tier: str, expected: str
) -> None:
    batch = calculate_commissions(
        [tx("t1", "p1", tier, amount)], rates=RATES, minimum_payout=Decimal("0")
    )
    assert batch.lines[0].commission == Decimal(expected)
    assert batch.lines[0].commission.as_tuple().exponent == -2


def test_commission_is_capped_per_transaction_when_it_exceeds_the_maximum() -> None:
    batch = calculate_commissions(
        [tx("big", "p1", "gold", "100000.00"), tx("small", "p1", "gold", "1000.00")],
        rates=RATES,
    )
    big, small = batch.lines
    assert (big.commission, big.capped) == (Decimal("10000.00"), True)
    assert (small.commission, small.capped) == (Decimal("150.00"), False)
    assert batch.payouts["p1"].payout == Decimal("10150.00")
    assert batch.payouts["p1"].capped_transactions == 1
    assert batch.capped_count == 1


def test_commission_equal_to_the_cap_is_not_marked_capped_when_exactly_at_it() -> None:
    batch = calculate_commissions([tx("t", "p1", "silver", "100000.00")], rates=RATES)
    assert (batch.lines[0].commission, batch.lines[0].capped) == (Decimal("10000.00"), False)


def test_payout_under_minimum_is_carried_forward_when_partner_total_is_below_50() -> None:
    batch = calculate_commissions(
        [tx("t1", "p1", "silver", "299.90"), tx("t2", "p2", "silver", "600.00")], rates=RATES
    )
    p1 = batch.payouts["p1"]
    assert (p1.earned, p1.payout, p1.carried_forward) == (
        Decimal("29.99"),
        Decimal("0"),
        Decimal("29.99"),
    )
    assert batch.payouts["p2"].payout == Decimal("60.00")
    assert batch.carried_forward == {"p1": Decimal("29.99")}
    assert batch.paid == {"p2": Decimal("60.00")}
    assert batch.total_carried_forward == Decimal("29.99")


def test_carried_forward_amount_is_paid_when_next_run_reaches_the_minimum() -> None:
    first = calculate_commissions([tx("t1", "p1", "silver", "300.00")], rates=RATES)
    assert first.carried_forward == {"p1": Decimal("30.00")}
    second = calculate_commissions(
        [tx("t2", "p1", "silver", "200.00")], rates=RATES, carried_forward=first.carried_forward
    )
    p1 = second.payouts["p1"]
    assert (p1.brought_forward, p1.earned, p1.total, p1.payout) == (
        Decimal("30.00"),
        Decimal("20.00"),
        Decimal("50.00"),
        Decimal("50.00"),
    )
    assert second.carried_forward == {}


@pytest.mark.parametrize(
    ("amount", "paid"),
    [("499.90", False), ("500.00", True), ("500.10", True)],  # 49.99 / 50.00 / 50.01
)
def test_minimum_payout_boundary_when_total_is_just_below_at_or_above(
    amount: str, paid: bool
) -> None:
    batch = calculate_commissions([tx("t", "p1", "silver", amount)], rates=RATES)
    assert (batch.payouts["p1"].payout > 0) is paid
    assert (batch.payouts["p1"].carried_forward > 0) is not paid


def test_partner_without_transactions_keeps_its_carry_when_batch_has_none_for_it() -> None:
    batch = calculate_commissions([], rates=RATES, carried_forward={"quiet": Decimal("12.34")})
    assert batch.carried_forward == {"quiet": Decimal("12.34")}
    assert batch.payouts["quiet"].transaction_count == 0


def test_partner_override_beats_tier_rate_when_both_exist() -> None:
    rates = CommissionRates(
        tier_rates={"silver": Decimal("0.10")},
        partner_rates={("silver", "vip"): Decimal("0.20")},
    )
    batch = calculate_commissions(
        [tx("a", "vip", "silver", "1000"), tx("b", "other", "silver", "1000")], rates=rates
    )
    assert batch.payouts["vip"].payout == Decimal("200.00")
    assert batch.payouts["other"].payout == Decimal("100.00")


def test_mapping_transactions_are_accepted_when_they_have_the_same_keys() -> None:
    batch = calculate_commissions(
        [{"id": "t1", "partner_id": "p1", "tier": "silver", "amount": "1000.00"}],
        rates={"silver": "0.10"},
    )
    assert batch.payouts["p1"].payout == Decimal("100.00")


def test_zero_decimal_currency_rounds_to_whole_units_when_currency_is_jpy() -> None:
    batch = calculate_commissions(
        [tx("t", "p1", "silver", "12345")],
        rates=RATES,
        currency="JPY",
        minimum_payout=Decimal("5000"),
        max_per_transaction=Decimal("1000000"),
    )
    assert batch.lines[0].commission == Decimal("1235")  # 1234.5 -> 1235
    assert batch.currency == "JPY"
    assert currency_quantum("USD") == Decimal("0.01")


@pytest.mark.parametrize(
    ("transaction", "field"),
    [
        ({"id": "t", "partner_id": "p", "tier": "silver", "amount": 10.5}, "amount"),
        ({"id": "t", "partner_id": "p", "tier": "silver", "amount": "-1"}, "amount"),
        ({"id": "t", "partner_id": "p", "tier": "silver", "amount": "NaN"}, "amount"),
        ({"id": "t", "partner_id": "p", "tier": "silver", "amount": "abc"}, "amount"),
        ({"id": "t", "partner_id": "p", "tier": "silver"}, "amount"),
        ({"id": "t", "tier": "silver", "amount": "1"}, "partner_id"),
        ({"id": "t", "partner_id": "p", "tier": "diamond", "amount": "1"}, "tier"),
    ],
)
def test_batch_is_refused_when_a_transaction_is_malformed(
    transaction: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidInputError) as info:
        calculate_commissions([transaction], rates=RATES)
    assert info.value.field == field


def test_unknown_tier_error_lists_the_tiers_with_rates_when_rate_is_missing() -> None:
    with pytest.raises(InvalidInputError, match="bronze, gold, silver"):
        calculate_commissions([tx("t", "p", "platinum", "1")], rates=RATES)


@pytest.mark.parametrize("rate", ["-0.01", "0.51", "1"])
def test_rate_is_refused_when_outside_zero_to_fifty_percent(rate: str) -> None:
    with pytest.raises(InvalidInputError, match="outside"):
        CommissionRates.from_tiers({"silver": rate})


def test_rates_at_the_bounds_are_accepted_when_exactly_zero_or_fifty_percent() -> None:
    rates = CommissionRates.from_tiers({"a": "0", "b": "0.5"})
    batch = calculate_commissions([tx("1", "p", "a", "100"), tx("2", "q", "b", "100")], rates=rates)
    assert batch.payouts["q"].payout == Decimal("50.00")
    assert batch.payouts["p"].payout == Decimal("0")


# --- properties ---------------------------------------------------------------------------

amounts = st.decimals(min_value=0, max_value=Decimal("200000"), places=2, allow_nan=False)
tiers = st.sampled_from(["bronze", "silver", "gold"])
partners = st.sampled_from(["p1", "p2", "p3", "p4"])
transactions = st.lists(
    st.builds(lambda p, t, a: (p, t, a), partners, tiers, amounts), max_size=40
).map(lambda rows: [CommissionTransaction(f"t{i}", p, t, a) for i, (p, t, a) in enumerate(rows)])


@settings(max_examples=200, deadline=None)
@given(transactions)
def test_every_line_is_rounded_and_capped_when_amounts_vary(
    batch_in: list[CommissionTransaction],
) -> None:
    batch = calculate_commissions(batch_in, rates=RATES)
    for line, source in zip(batch.lines, batch_in, strict=True):
        expected = (source.amount * RATES.rate_for(source.tier, source.partner_id)).quantize(
            Decimal("0.01"), rounding=ROUND_HALF_UP
        )
        assert line.commission == min(expected, Decimal("10000.00"))
        assert line.capped is (expected > Decimal("10000.00"))


@settings(max_examples=200, deadline=None)
@given(transactions, st.dictionaries(partners, st.decimals(0, 49, places=2)))
def test_money_is_conserved_when_payouts_are_split_into_paid_and_carried(
    batch_in: list[CommissionTransaction], brought: dict[str, Decimal]
) -> None:
    batch = calculate_commissions(batch_in, rates=RATES, carried_forward=brought)
    assert batch.total_earned == sum((line.commission for line in batch.lines), Decimal(0))
    assert sum(brought.values(), Decimal(0)) + batch.total_earned == (
        batch.total_payout + batch.total_carried_forward
    )
    for payout in batch.payouts.values():
        assert payout.payout == 0 or payout.payout >= Decimal("50")
        assert payout.carried_forward < Decimal("50")
        assert (payout.payout == 0) or (payout.carried_forward == 0)


@settings(max_examples=100, deadline=None)
@given(transactions, st.integers(min_value=0, max_value=40))
def test_nothing_is_lost_when_a_batch_is_paid_in_two_runs(
    batch_in: list[CommissionTransaction], cut: int
) -> None:
    whole = calculate_commissions(batch_in, rates=RATES)
    first = calculate_commissions(batch_in[:cut], rates=RATES)
    second = calculate_commissions(
        batch_in[cut:], rates=RATES, carried_forward=first.carried_forward
    )
    assert first.total_payout + second.total_payout + second.total_carried_forward == (
        whole.total_payout + whole.total_carried_forward
    )
