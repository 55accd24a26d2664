"""Commission arithmetic: per-transaction commissions and per-partner payouts (pure).

:func:`calculate_commissions` turns a batch of transactions into per-partner payouts. Money is
``Decimal`` throughout; every commission is rounded once, explicitly, to the currency's minor
unit with ``ROUND_HALF_UP``, then capped per transaction. A partner whose total (this batch
plus what was carried forward) stays under the minimum payout is paid nothing *now*: the
amount is carried forward to the next run, never lost. The helpers below derive the amounts
the commission rule policies check (a payout in cents, a performance percentage).

Example:
    >>> from decimal import Decimal
    >>> batch = calculate_commissions(
    ...     [CommissionTransaction("t1", "p1", "silver", Decimal("1000.00"))],
    ...     rates=CommissionRates.from_tiers({"silver": Decimal("0.10")}),
    ... )
    >>> batch.payouts["p1"].payout
    Decimal('100.00')
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from typing import Any, Final

from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.policies._commission_types import (
    BatchColumns,
    CommissionBatchResult,
    CommissionRates,
    CommissionTransaction,
    PartnerPayout,
    as_rates,
    currency_quantum,
    to_decimal,
)

__all__ = [
    "DEFAULT_MAX_PER_TRANSACTION",
    "DEFAULT_MINIMUM_PAYOUT",
    "calculate_commissions",
    "cents",
    "decimal_or_none",
    "derived",
]

#: Payouts below this (per partner and run) are carried forward, not paid.
DEFAULT_MINIMUM_PAYOUT: Final = Decimal("50")
#: No single transaction earns more commission than this.
DEFAULT_MAX_PER_TRANSACTION: Final = Decimal("10000")

_ZERO: Final = Decimal(0)
# Above 10**25 an amount rounded to cents needs more than the context's 28 digits.
_CENTS_DIGITS_LIMIT: Final = 25


def calculate_commissions(
    transactions: Iterable[CommissionTransaction | Mapping[str, Any]],
    *,
    rates: CommissionRates | Mapping[str, Any],
    minimum_payout: Decimal = DEFAULT_MINIMUM_PAYOUT,
    max_per_transaction: Decimal = DEFAULT_MAX_PER_TRANSACTION,
    carried_forward: Mapping[str, Decimal] | None = None,
    currency: str | None = None,
) -> CommissionBatchResult:
    """Compute the commission of every transaction and each partner's payout for one run.

    For each transaction: ``commission = round_half_up(amount * rate, currency unit)``, then
    ``min(commission, max_per_transaction)``. Per partner: ``total = carried_forward + sum``;
    a total at or above ``minimum_payout`` is paid, a smaller one is carried forward whole.

    Args:
        transactions: :class:`CommissionTransaction` objects or dicts with the same keys.
        rates: :class:`CommissionRates` (e.g. from :func:`load_commission_rates`) or a plain
            tier -> rate mapping.
        minimum_payout: Smallest total paid out; smaller totals are carried forward.
        max_per_transaction: Cap on the commission of a single transaction.
        carried_forward: Partner id -> amount carried forward by the previous run.
        currency: Currency of the batch; defaults to the rates' currency.

    Returns:
        A :class:`CommissionBatchResult`; its ``carried_forward`` feeds the next run.

    Raises:
        InvalidInputError: A negative or non-numeric amount (floats included), a rate outside
            0..50 %, a tier without a rate, or a negative minimum or cap. Nothing is computed
            partially: the whole batch is refused.
    """
    rate_table = as_rates(rates)
    unit = currency_quantum(currency or rate_table.currency)
    minimum = to_decimal(minimum_payout, field_name="minimum_payout")
    cap = to_decimal(max_per_transaction, field_name="max_per_transaction")
    if minimum < _ZERO:
        raise InvalidInputError("minimum_payout must not be negative", field="minimum_payout")
    if cap < _ZERO:
        raise InvalidInputError(
            "max_per_transaction must not be negative", field="max_per_transaction"
        )
    cap = cap.quantize(unit, rounding=ROUND_HALF_UP)

    tier_rates = {tier: Decimal(rate) for tier, rate in rate_table.tier_rates.items()}
    overrides = {key: Decimal(rate) for key, rate in rate_table.partner_rates.items()}
    # partner -> [earned, transactions, capped transactions]
    totals: dict[str, list[Any]] = {}
    columns = BatchColumns([], [], [], [])
    add_transaction = columns.transactions.append
    add_rate = columns.rates.append
    add_commission = columns.commissions.append
    add_capped = columns.capped.append
    quantize = Decimal.quantize
    zero = _ZERO
    # Hot loop (100,000s of transactions): local names, one dict lookup per partner. The
    # product is computed exactly (60 digits) so the one rounding is the explicit quantize.
    with localcontext() as exact:
        exact.prec = 60
        for item in transactions:
            tx = item if isinstance(item, CommissionTransaction) else _from_any(item)
            amount = tx.amount
            if type(amount) is not Decimal:
                tx = CommissionTransaction(
                    tx.transaction_id,
                    tx.partner_id,
                    tx.tier,
                    to_decimal(amount, field_name="amount"),
                )
                amount = tx.amount
            if not amount.is_finite() or amount < zero:
                raise InvalidInputError(
                    f"transaction {tx.transaction_id!r}: amount must be a non-negative finite"
                    f" number, got {amount}",
                    field="amount",
                )
            partner = tx.partner_id
            tier = tx.tier
            rate = overrides.get((tier, partner)) if overrides else None
            if rate is None:
                rate = tier_rates.get(tier)
                if rate is None:
                    rate = rate_table.rate_for(tier, partner)  # raises, naming known tiers
            commission = quantize(amount * rate, unit, rounding=ROUND_HALF_UP)
            acc = totals.get(partner)
            if acc is None:
                acc = totals[partner] = [zero, 0, 0]
            capped = commission > cap
            if capped:
                commission = cap
                acc[2] += 1
            acc[0] += commission
            acc[1] += 1
            add_transaction(tx)
            add_rate(rate)
            add_commission(commission)
            add_capped(capped)

    brought = {
        partner: to_decimal(value, field_name="carried_forward")
        for partner, value in (carried_forward or {}).items()
    }
    for partner, value in brought.items():
        if value < _ZERO:
            raise InvalidInputError(
                f"carried_forward for partner {partner!r} is negative ({value})",
                field="carried_forward",
            )

    payouts: dict[str, PartnerPayout] = {}
    total_earned = total_payout = total_carried = _ZERO
    for partner in sorted(totals.keys() | brought.keys()):
        this_run, count, capped_count = totals.get(partner, (_ZERO, 0, 0))
        before = brought.get(partner, _ZERO)
        total = this_run + before
        pays = total >= minimum and total > _ZERO
        payouts[partner] = PartnerPayout(
            partner_id=partner,
            transaction_count=count,
            earned=this_run,
            brought_forward=before,
            total=total,
            payout=total if pays else _ZERO,
            carried_forward=_ZERO if pays else total,
            capped_transactions=capped_count,
        )
        total_earned += this_run
        if pays:
            total_payout += total
        else:
            total_carried += total
    return CommissionBatchResult(
        currency=(currency or rate_table.currency).upper(),
        minimum_payout=minimum,
        max_per_transaction=cap,
        payouts=payouts,
        total_earned=total_earned,
        total_payout=total_payout,
        total_carried_forward=total_carried,
        _columns=columns,
    )


def _from_any(item: Any) -> CommissionTransaction:
    if isinstance(item, Mapping):
        return CommissionTransaction.from_mapping(item)
    raise InvalidInputError(
        f"a transaction must be a CommissionTransaction or a mapping, not {type(item).__name__}",
        field="transactions",
    )


# --- amounts derived for the commission rule policies -----------------------------------------


def decimal_or_none(value: Any) -> Decimal | None:
    """``value`` as a Decimal for derived fields, or ``None`` when it is not a usable number."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        result = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        return None
    return result if result.is_finite() else None


def cents(amount: Decimal) -> Decimal:
    """``amount`` rounded half-up to cents; amounts too large to hold cents stay as they are.

    Such amounts are far above any payout limit, and quantizing them would exceed the
    decimal context's precision (an ``InvalidOperation``).
    """
    if amount.adjusted() >= _CENTS_DIGITS_LIMIT:
        return amount
    return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def derived(compute: Callable[[], Decimal], what: str) -> Decimal:
    """Compute a derived field, refusing inputs beyond the decimal context's exponent range.

    Raises:
        InvalidInputError: The computation overflowed (``Decimal("1e999999")`` inputs).
    """
    try:
        return compute()
    except ArithmeticError as exc:  # decimal.Overflow / InvalidOperation
        raise InvalidInputError(
            f"{what} is out of the range of decimal arithmetic ({type(exc).__name__})",
            field=what.split(" ", 1)[0],
        ) from exc
