from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dotmac_shared.business_logic import InvalidInputError
from dotmac_shared.business_logic.operations._billing_math import (
    BillingPeriod,
    ServiceCharge,
    draft_invoice,
    round_money,
)

UTC = dt.UTC
OCT = BillingPeriod(2026, 10)


def charge(price: str, start=None, end=None, sid="s1") -> ServiceCharge:
    return ServiceCharge(sid, "Internet standard", Decimal(price), start, end)


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "26-01", "", None, 202610, "2026-00"])
def test_malformed_period_is_refused_with_the_field_named(text):
    with pytest.raises(InvalidInputError) as info:
        BillingPeriod.parse(text)
    assert info.value.field == "billing_period"


def test_period_bounds_and_days_when_december_and_february():
    dec = BillingPeriod.parse("2026-12")
    assert (dec.start, dec.end, dec.days) == (
        dt.datetime(2026, 12, 1, tzinfo=UTC),
        dt.datetime(2027, 1, 1, tzinfo=UTC),
        31,
    )
    assert BillingPeriod.parse("2028-02").days == 29
    assert str(dec) == "2026-12"


def test_future_period_is_refused_and_current_one_allowed():
    now = dt.datetime(2026, 11, 24, tzinfo=UTC)
    BillingPeriod.parse("2026-11").ensure_not_future(now)
    with pytest.raises(InvalidInputError, match="future"):
        BillingPeriod.parse("2026-12").ensure_not_future(now)


def test_full_month_service_is_billed_in_full_plus_tax():
    draft = draft_invoice(
        OCT, [charge("49.99", dt.datetime(2026, 1, 1, tzinfo=UTC))], Decimal("0.0875")
    )
    assert draft is not None
    assert (draft.subtotal, draft.tax, draft.total) == (
        Decimal("49.99"),
        Decimal("4.37"),  # 4.374125 rounds half up to 4.37
        Decimal("54.36"),
    )
    assert draft.lines[0].days == 31


def test_service_started_mid_month_is_prorated_by_active_days():
    draft = draft_invoice(
        OCT, [charge("49.99", dt.datetime(2026, 10, 16, 13, 0, tzinfo=UTC))], Decimal(0)
    )
    assert draft is not None
    # Active 16..31 October = 16 days of 31: 49.99 * 16 / 31 = 25.8012... -> 25.80
    assert draft.lines[0].days == 16 and draft.subtotal == Decimal("25.80")


def test_service_ended_mid_month_is_prorated_and_inactive_ones_are_skipped():
    services = [
        charge("31.00", dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2026, 10, 11, tzinfo=UTC)),
        charge("10.00", dt.datetime(2026, 11, 2, tzinfo=UTC), sid="future"),
        charge(
            "10.00",
            dt.datetime(2026, 1, 1, tzinfo=UTC),
            dt.datetime(2026, 9, 30, tzinfo=UTC),
            "old",
        ),
    ]
    draft = draft_invoice(OCT, services, Decimal(0))
    assert draft is not None and [line.service_id for line in draft.lines] == ["s1"]
    assert draft.lines[0].days == 10 and draft.total == Decimal("10.00")


def test_no_active_service_means_no_invoice():
    assert draft_invoice(OCT, [], Decimal("0.1")) is None


def test_round_money_rounds_half_up():
    assert round_money(Decimal("0.005")) == Decimal("0.01")
    assert round_money(Decimal("2.345")) == Decimal("2.35")
    assert round_money(Decimal("-2.345")) == Decimal("-2.35")


prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("10000"), places=2)
days = st.integers(min_value=0, max_value=40)


@given(prices, days, days, st.decimals(min_value=0, max_value=Decimal("0.3"), places=4))
def test_prorated_total_never_exceeds_full_price_plus_tax(price, start_day, length, rate):
    start = OCT.start + dt.timedelta(days=start_day - 5)
    end = start + dt.timedelta(days=length)
    draft = draft_invoice(OCT, [charge(str(price), start, end)], rate)
    if draft is None:
        assert OCT.active_days(start, end) == 0
        return
    assert Decimal(0) <= draft.subtotal <= price
    assert draft.total == draft.subtotal + draft.tax
    assert draft.tax == round_money(draft.subtotal * rate)
    assert 1 <= draft.lines[0].days <= OCT.days
