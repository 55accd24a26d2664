"""Partner commissions: batch arithmetic, persisted rates and the commission rule policies.

Three parts, from pure to I/O:

* :func:`calculate_commissions` turns a batch of transactions into per-partner payouts.
  Money is ``Decimal`` throughout; every commission is rounded once, explicitly, to the
  currency's minor unit with ``ROUND_HALF_UP``, then capped per transaction. A partner whose
  total (this batch plus what was carried forward) stays under the minimum payout is paid
  nothing *now*: the amount is carried forward to the next run, never lost.
* :class:`CommissionRates` holds rates per tier and per partner (a partner's own rate beats
  the tier's); :mod:`._commission_store` loads and saves them in the database, and is
  imported only when used, so this module needs no database library.
* :class:`CommissionRulesEngine` evaluates the commission policies shipped in
  ``definitions/`` (partner eligibility, rate validation, tier advancement, clawback, bonus).

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

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from typing import Any, Final, NamedTuple

from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.policies._eligibility import (
    failed_rule_is_missing,
    register_shipped_policies,
    require_mapping,
    summarize,
)
from dotmac_shared.business_logic.policies.core import PolicyContext, PolicyEngine, PolicyResult
from dotmac_shared.business_logic.policies.core._results import jsonable

__all__ = [
    "COMMISSION_POLICIES",
    "DEFAULT_MAX_PER_TRANSACTION",
    "DEFAULT_MINIMUM_PAYOUT",
    "MAX_COMMISSION_RATE",
    "CommissionBatchResult",
    "CommissionLine",
    "CommissionRates",
    "CommissionRulesEngine",
    "CommissionTransaction",
    "PartnerPayout",
    "calculate_commissions",
    "currency_quantum",
    "validated_rate",
]

#: Payouts below this (per partner and run) are carried forward, not paid.
DEFAULT_MINIMUM_PAYOUT: Final = Decimal("50")
#: No single transaction earns more commission than this.
DEFAULT_MAX_PER_TRANSACTION: Final = Decimal("10000")
#: Commission rates are fractions: 0.10 is 10 %. The business caps them at 50 %.
MAX_COMMISSION_RATE: Final = Decimal("0.5")

_ZERO: Final = Decimal(0)
# Above 10**25 an amount rounded to cents needs more than the context's 28 digits.
_CENTS_DIGITS_LIMIT: Final = 25
# ISO 4217 currencies whose minor unit is not the cent; everything else rounds to 0.01.
_MINOR_UNIT_DIGITS: Final = {
    "BHD": 3,
    "CLP": 0,
    "ISK": 0,
    "JOD": 3,
    "JPY": 0,
    "KRW": 0,
    "KWD": 3,
    "OMR": 3,
    "TND": 3,
    "VND": 0,
}


def currency_quantum(currency: str) -> Decimal:
    """Return the smallest amount of ``currency`` (``Decimal("0.01")`` for USD, ``1`` for JPY).

    Example:
        >>> currency_quantum("USD"), currency_quantum("JPY")
        (Decimal('0.01'), Decimal('1'))
    """
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        raise InvalidInputError(
            f"currency must be a three-letter ISO 4217 code, got {currency!r}", field="currency"
        )
    return Decimal(1).scaleb(-_MINOR_UNIT_DIGITS.get(currency.upper(), 2))


def _to_decimal(value: Any, *, field_name: str) -> Decimal:
    """Convert ``value`` to a finite Decimal; floats are refused (money is never binary)."""
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, bool | float):
        raise InvalidInputError(
            f"{field_name} must be a Decimal, int or numeric string, not {type(value).__name__}",
            field=field_name,
        )
    elif isinstance(value, int | str):
        try:
            result = Decimal(value)
        except InvalidOperation as exc:
            raise InvalidInputError(
                f"{field_name} is not a number: {value!r}", field=field_name
            ) from exc
    else:
        raise InvalidInputError(
            f"{field_name} must be a Decimal, int or numeric string, not {type(value).__name__}",
            field=field_name,
        )
    if not result.is_finite():
        raise InvalidInputError(f"{field_name} must be finite, got {value!r}", field=field_name)
    return result


def _check_rate(rate: Decimal, *, where: str) -> Decimal:
    if not _ZERO <= rate <= MAX_COMMISSION_RATE:
        raise InvalidInputError(
            f"commission rate {rate} for {where} is outside 0..{MAX_COMMISSION_RATE}"
            " (rates are fractions: 0.10 is 10%)",
            field="rate",
        )
    return rate


@dataclass(frozen=True, slots=True)
class CommissionTransaction:
    """One commissionable sale.

    Attributes:
        transaction_id: Unique id of the sale (reported back on its commission line).
        partner_id: The partner who earns the commission.
        tier: The partner's tier when the sale happened (bronze, silver, gold, platinum).
        amount: The commissionable revenue, ``Decimal``, in the batch's currency.
    """

    transaction_id: str
    partner_id: str
    tier: str
    amount: Decimal

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict (the amount as a string)."""
        return {
            "transaction_id": self.transaction_id,
            "partner_id": self.partner_id,
            "tier": self.tier,
            "amount": str(self.amount),
        }

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> CommissionTransaction:
        """Build a transaction from a dict.

        The dict has ``transaction_id`` (or ``id``), ``partner_id``, ``tier`` and ``amount``.

        Raises:
            InvalidInputError: A key is missing or the amount is not a number.
        """
        transaction_id = data.get("transaction_id", data.get("id"))
        for name, value in (
            ("transaction_id", transaction_id),
            ("partner_id", data.get("partner_id")),
            ("tier", data.get("tier")),
        ):
            if not isinstance(value, str) or not value:
                raise InvalidInputError(
                    f"transaction {transaction_id!r}: {name} must be a non-empty string",
                    field=name,
                )
        if "amount" not in data:
            raise InvalidInputError(
                f"transaction {transaction_id!r}: amount is missing", field="amount"
            )
        return cls(
            str(transaction_id),
            str(data["partner_id"]),
            str(data["tier"]),
            _to_decimal(data["amount"], field_name="amount"),
        )


@dataclass(frozen=True, slots=True)
class CommissionRates:
    """Commission rates of one tenant: per tier, with per-partner overrides.

    A partner's own rate for a tier beats the tier's default rate.

    Attributes:
        tier_rates: Tier -> rate (a fraction, 0.10 = 10 %).
        partner_rates: ``(tier, partner_id)`` -> rate overriding the tier's rate for that partner.
        currency: The currency the rates and minimums are meant for.
    """

    tier_rates: Mapping[str, Decimal] = field(default_factory=dict)
    partner_rates: Mapping[tuple[str, str], Decimal] = field(default_factory=dict)
    currency: str = "USD"

    def __post_init__(self) -> None:
        for tier, rate in self.tier_rates.items():
            _check_rate(_to_decimal(rate, field_name="rate"), where=f"tier {tier!r}")
        for (tier, partner), rate in self.partner_rates.items():
            _check_rate(
                _to_decimal(rate, field_name="rate"), where=f"partner {partner!r} in tier {tier!r}"
            )

    @classmethod
    def from_tiers(
        cls, tier_rates: Mapping[str, Decimal | int | str], currency: str = "USD"
    ) -> CommissionRates:
        """Build rates from a plain tier -> rate mapping (no partner overrides)."""
        return cls(
            {tier: _to_decimal(rate, field_name="rate") for tier, rate in tier_rates.items()},
            {},
            currency,
        )

    def rate_for(self, tier: str, partner_id: str) -> Decimal:
        """Return the partner's rate in ``tier``: its own override, else the tier's default.

        Raises:
            InvalidInputError: Neither the partner nor the tier has a rate.
        """
        rate = self.partner_rates.get((tier, partner_id))
        if rate is None:
            rate = self.tier_rates.get(tier)
        if rate is None:
            known = ", ".join(sorted(self.tier_rates)) or "none"
            raise InvalidInputError(
                f"no commission rate for tier {tier!r} (partner {partner_id!r});"
                f" tiers with a rate: {known}",
                field="tier",
            )
        return Decimal(rate)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict: rates as strings, partner overrides as a list."""
        return {
            "currency": self.currency,
            "tier_rates": {tier: str(rate) for tier, rate in self.tier_rates.items()},
            "partner_rates": [
                {"tier": tier, "partner_id": partner, "rate": str(rate)}
                for (tier, partner), rate in self.partner_rates.items()
            ],
        }


class CommissionLine(NamedTuple):
    """The commission earned on one transaction (a named tuple: cheap to build by the 100,000).

    Attributes:
        transaction_id: The transaction.
        partner_id: Who earned it.
        amount: The commissionable amount.
        rate: The rate applied.
        commission: ``amount * rate`` rounded half-up to the currency unit, then capped.
        capped: Whether the per-transaction cap cut the commission.
    """

    transaction_id: str
    partner_id: str
    amount: Decimal
    rate: Decimal
    commission: Decimal
    capped: bool

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict (amounts and rate as strings)."""
        return {
            "transaction_id": self.transaction_id,
            "partner_id": self.partner_id,
            "amount": str(self.amount),
            "rate": str(self.rate),
            "commission": str(self.commission),
            "capped": self.capped,
        }


@dataclass(frozen=True, slots=True)
class PartnerPayout:
    """What one partner gets from one run.

    Attributes:
        partner_id: The partner.
        transaction_count: Transactions of this partner in the batch.
        earned: Commission earned by this batch (sum of its lines).
        brought_forward: Amount carried forward from earlier runs.
        total: ``earned + brought_forward``.
        payout: ``total`` when it reaches the minimum payout, else zero.
        carried_forward: ``total`` when under the minimum (to be paid later), else zero.
        capped_transactions: How many of its transactions hit the per-transaction cap.
    """

    partner_id: str
    transaction_count: int
    earned: Decimal
    brought_forward: Decimal
    total: Decimal
    payout: Decimal
    carried_forward: Decimal
    capped_transactions: int

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly dict (amounts as strings)."""
        return {
            "partner_id": self.partner_id,
            "transaction_count": self.transaction_count,
            "earned": str(self.earned),
            "brought_forward": str(self.brought_forward),
            "total": str(self.total),
            "payout": str(self.payout),
            "carried_forward": str(self.carried_forward),
            "capped_transactions": self.capped_transactions,
        }


class _Columns(NamedTuple):
    """Per-transaction outcomes as parallel lists.

    Building 100,000 line objects in the hot loop costs more than the arithmetic (and wakes
    the garbage collector over the whole batch); lists of Decimals do neither. Lines are
    assembled from these only when someone reads :attr:`CommissionBatchResult.lines`.
    """

    transactions: list[CommissionTransaction]
    rates: list[Decimal]
    commissions: list[Decimal]
    capped: list[bool]


@dataclass(frozen=True)
class CommissionBatchResult:
    """The outcome of :func:`calculate_commissions`.

    Attributes:
        currency: Currency of every amount.
        minimum_payout: The minimum payout that was applied.
        max_per_transaction: The per-transaction cap that was applied.
        payouts: Partner id -> :class:`PartnerPayout`, for every partner in the batch or
            in ``carried_forward``.
        total_earned: Sum of commissions earned by this batch.
        total_payout: Sum paid now.
        total_carried_forward: Sum carried forward to the next run.
        lines: One :class:`CommissionLine` per transaction, in input order (built on
            first access).
    """

    currency: str
    minimum_payout: Decimal
    max_per_transaction: Decimal
    payouts: Mapping[str, PartnerPayout]
    total_earned: Decimal
    total_payout: Decimal
    total_carried_forward: Decimal
    _columns: _Columns = field(repr=False, compare=False)

    @functools.cached_property
    def lines(self) -> tuple[CommissionLine, ...]:
        """One :class:`CommissionLine` per transaction, in input order."""
        columns = self._columns
        return tuple(
            CommissionLine(tx.transaction_id, tx.partner_id, tx.amount, rate, commission, capped)
            for tx, rate, commission, capped in zip(
                columns.transactions,
                columns.rates,
                columns.commissions,
                columns.capped,
                strict=True,
            )
        )

    @property
    def carried_forward(self) -> dict[str, Decimal]:
        """Partner id -> amount to pass as ``carried_forward`` to the next run (non-zero only)."""
        return {p: po.carried_forward for p, po in self.payouts.items() if po.carried_forward}

    @property
    def paid(self) -> dict[str, Decimal]:
        """Partner id -> amount paid now (non-zero only)."""
        return {p: po.payout for p, po in self.payouts.items() if po.payout}

    @property
    def transaction_count(self) -> int:
        """Number of transactions in the batch."""
        return len(self._columns.commissions)

    @property
    def capped_count(self) -> int:
        """Number of transactions whose commission the cap cut."""
        return sum(po.capped_transactions for po in self.payouts.values())

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly summary (without the per-transaction lines)."""
        return {
            "currency": self.currency,
            "minimum_payout": str(self.minimum_payout),
            "max_per_transaction": str(self.max_per_transaction),
            "transaction_count": self.transaction_count,
            "capped_count": self.capped_count,
            "total_earned": str(self.total_earned),
            "total_payout": str(self.total_payout),
            "total_carried_forward": str(self.total_carried_forward),
            "payouts": {p: po.to_dict() for p, po in self.payouts.items()},
        }


def _as_rates(rates: CommissionRates | Mapping[str, Any]) -> CommissionRates:
    if isinstance(rates, CommissionRates):
        return rates
    if isinstance(rates, Mapping):
        return CommissionRates.from_tiers(rates)
    raise InvalidInputError(
        f"rates must be CommissionRates or a tier -> rate mapping, not {type(rates).__name__}",
        field="rates",
    )


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
    rate_table = _as_rates(rates)
    unit = currency_quantum(currency or rate_table.currency)
    minimum = _to_decimal(minimum_payout, field_name="minimum_payout")
    cap = _to_decimal(max_per_transaction, field_name="max_per_transaction")
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
    columns = _Columns([], [], [], [])
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
                    _to_decimal(amount, field_name="amount"),
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
        partner: _to_decimal(value, field_name="carried_forward")
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


# --- persisted rates (validation only; the SQL lives in _commission_store) -------------------


def validated_rate(rate: Any, *, tier: str, partner_id: str = "", currency: str = "USD") -> Decimal:
    """Check one commission rate before it is stored, and return it as a Decimal.

    Args:
        rate: A fraction between 0 and 0.5 (0.10 = 10 %), as ``Decimal``.
        tier: Partner tier the rate applies to (1..32 characters).
        partner_id: Empty for the tier default, else the partner whose rate this overrides.
        currency: ISO 4217 code.

    Raises:
        InvalidInputError: The rate is not a Decimal in 0..0.5 with at most four decimal
            places, or tier/currency are malformed.
    """
    value = _check_rate(
        _to_decimal(rate, field_name="rate"), where=f"tier {tier!r}, partner {partner_id!r}"
    )
    if value != value.quantize(Decimal("0.0001")):
        raise InvalidInputError(
            f"commission rate {value} has more than four decimal places", field="rate"
        )
    if not tier or len(tier) > 32:
        raise InvalidInputError("tier must be 1..32 characters", field="tier")
    currency_quantum(currency)
    return value


# --- commission rule policies ---------------------------------------------------------------

#: The shipped commission policies, by check.
COMMISSION_POLICIES: Final[Mapping[str, str]] = {
    "partner_eligibility": "commission.partner_eligibility",
    "rate_validation": "commission.rate_validation",
    "tier_advancement": "commission.tier_advancement",
    "clawback": "commission.clawback",
    "bonus": "commission.bonus",
}


def _decimal_or_none(value: Any) -> Decimal | None:
    """``value`` as a Decimal for derived fields, or ``None`` when it is not a usable number."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        result = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        return None
    return result if result.is_finite() else None


def _cents(amount: Decimal) -> Decimal:
    """``amount`` rounded half-up to cents; amounts too large to hold cents stay as they are.

    Such amounts are far above any payout limit, and quantizing them would exceed the
    decimal context's precision (an ``InvalidOperation``).
    """
    if amount.adjusted() >= _CENTS_DIGITS_LIMIT:
        return amount
    return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _derived(compute: Callable[[], Decimal], what: str) -> Decimal:
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


class CommissionRulesEngine:
    """Partner commission rules: eligibility, rates, tiers, clawbacks, bonuses and payouts.

    Args:
        engine: The policy engine to evaluate with; a new one when omitted. The shipped
            commission policies are registered unless the engine already has them.
        rates: Default rates for :meth:`calculate_commissions` (e.g. from
            :func:`load_commission_rates`).
        minimum_payout: Default minimum payout for :meth:`calculate_commissions`.
        max_per_transaction: Default per-transaction cap for :meth:`calculate_commissions`.

    Every ``check_*`` method returns a JSON-safe dict (money as decimal strings) with at least
    ``decision``, ``reasons``, ``failed_rules``, ``policy_name``, ``policy_version`` and
    ``policy_result``.
    """

    def __init__(
        self,
        engine: PolicyEngine | None = None,
        *,
        rates: CommissionRates | Mapping[str, Any] | None = None,
        minimum_payout: Decimal = DEFAULT_MINIMUM_PAYOUT,
        max_per_transaction: Decimal = DEFAULT_MAX_PER_TRANSACTION,
    ) -> None:
        self._engine = register_shipped_policies(
            engine if engine is not None else PolicyEngine(), COMMISSION_POLICIES.values()
        )
        self._rates = None if rates is None else _as_rates(rates)
        self._minimum_payout = minimum_payout
        self._max_per_transaction = max_per_transaction

    @property
    def engine(self) -> PolicyEngine:
        """The underlying policy engine."""
        return self._engine

    def _evaluate(
        self, check: str, data: Mapping[str, Any], context: PolicyContext | None
    ) -> PolicyResult:
        return self._engine.evaluate(COMMISSION_POLICIES[check], data, context)

    def check_partner_eligibility(
        self, partner_data: Mapping[str, Any], context: PolicyContext | None = None
    ) -> dict[str, Any]:
        """Whether a partner may earn commissions.

        Fields: ``status`` (``active``), ``agreement_signed``, ``compliance_status``
        (``compliant``), ``performance_score`` (>= 70), ``active_disputes`` (0) and
        ``tax_information_complete``.

        Returns:
            ``eligible`` plus the common fields.
        """
        result = self._evaluate(
            "partner_eligibility", require_mapping(partner_data, "partner_data"), context
        )
        return {"eligible": result.passed and result.in_effect, **summarize(result)}

    def validate_rate(
        self, commission_data: Mapping[str, Any], context: PolicyContext | None = None
    ) -> dict[str, Any]:
        """Whether one commission may be paid at its rate and amount.

        Fields: ``commission_rate`` (a fraction, 0..0.5), ``calculated_payout`` (50..10,000;
        computed as ``transaction_amount * commission_rate`` rounded half-up to cents when
        absent), ``customer_monthly_revenue`` (> 0), ``service_active_days`` (>= 30) and
        ``pending_refunds`` (0).

        Returns:
            ``valid``, ``calculated_payout`` (the amount as a decimal string, or ``None``)
            plus the common fields; every value is JSON-safe.

        Raises:
            InvalidInputError: The payout to compute is beyond the range of decimal arithmetic.
        """
        data = dict(require_mapping(commission_data, "commission_data"))
        if "calculated_payout" not in data:
            amount = _decimal_or_none(data.get("transaction_amount"))
            rate = _decimal_or_none(data.get("commission_rate"))
            if amount is not None and rate is not None:
                data["calculated_payout"] = _derived(
                    lambda: _cents(amount * rate), "transaction_amount * commission_rate"
                )
        result = self._evaluate("rate_validation", data, context)
        payout = _decimal_or_none(data.get("calculated_payout"))
        return {
            "valid": result.passed and result.in_effect,
            "calculated_payout": None if payout is None else str(payout),
            **summarize(result),
        }

    def tiers(self, context: PolicyContext | None = None) -> dict[str, dict[str, Any]]:
        """Partner tiers in order (lowest first) with their minimums, from the policy's data."""
        parameters = self._policy_parameters("tier_advancement", context)
        return {name: dict(parameters["tiers"][name]) for name in parameters["tier_order"]}

    def _policy_parameters(self, check: str, context: PolicyContext | None) -> dict[str, Any]:
        policy = self._engine.registry.get(
            COMMISSION_POLICIES[check], tenant_id=context.tenant_id if context else None
        )
        return dict(policy.parameters)

    def check_tier_advancement(
        self, partner_data: Mapping[str, Any], context: PolicyContext | None = None
    ) -> dict[str, Any]:
        """Whether a partner advances from ``current_tier`` to the next tier.

        Fields: ``current_tier`` (bronze, silver, gold or platinum), ``quarterly_revenue``,
        ``active_customers``, ``performance_score`` (each at or above the next tier's
        minimum), ``certifications_current`` and ``violations_last_6_months`` (0). The next
        tier's minimums are taken from the policy's ``parameters.tiers`` and put under
        ``next_tier`` in the evaluated data.

        Returns:
            ``advance``, ``current_tier``, ``next_tier`` (name or ``None`` at the top),
            ``next_tier_minimums``, ``shortfalls`` (per failed minimum: rule, field,
            required and actual value) plus the common fields; every value is JSON-safe
            (Decimals as strings).

        Raises:
            InvalidInputError: ``current_tier`` is missing or not a known tier.
        """
        data = dict(require_mapping(partner_data, "partner_data"))
        tiers = self.tiers(context)
        order = list(tiers)
        current = data.get("current_tier")
        if current not in tiers:
            raise InvalidInputError(
                f"current_tier must be one of {', '.join(order)}; got {current!r}",
                field="current_tier",
                metadata={"known_tiers": order},
            )
        position = order.index(str(current))
        next_name = order[position + 1] if position + 1 < len(order) else None
        data.pop("next_tier", None)  # the tier's numbers come from the policy, not the caller
        minimums: dict[str, Any] = {}
        if next_name is not None:
            minimums = dict(tiers[next_name])
            data["next_tier"] = {"name": next_name, **minimums}
        result = self._evaluate("tier_advancement", data, context)
        shortfalls = [
            {
                "rule": rule.name,
                "field": rule.field,
                "required": jsonable(rule.expected),
                "actual": jsonable(rule.actual),
                "message": rule.message,
            }
            for rule in result.failed_rules
            if rule.spec.value_from is not None and rule.spec.value_from.startswith("next_tier.")
        ]
        return {
            "advance": result.passed and result.in_effect,
            "current_tier": current,
            "next_tier": next_name,
            "next_tier_minimums": jsonable(minimums),
            "shortfalls": shortfalls,
            **summarize(result),
        }

    def check_clawback(
        self, commission_data: Mapping[str, Any], context: PolicyContext | None = None
    ) -> dict[str, Any]:
        """Whether a paid commission must be clawed back, and which triggers fired.

        Triggers: ``early_cancellation`` (``customer_cancelled`` with
        ``days_to_cancellation`` <= 90), ``low_service_quality`` (``service_quality_score``
        < 60), ``chargeback`` (``chargeback_count`` > 0), ``fraud_detected``
        (``fraud_score`` > 75) and ``partner_policy_violation``
        (``partner_policy_violations`` > 0).

        Returns:
            ``clawback_required`` (a trigger fired), ``triggers`` (exactly the fired ones, in
            priority order), ``missing`` (triggers that could not be evaluated for lack of
            data), ``requires_review`` (some were missing) plus the common fields. The policy's
            ``decision`` fails closed: it is DENY when data is missing too.
        """
        result = self._evaluate(
            "clawback", require_mapping(commission_data, "commission_data"), context
        )
        failed = result.failed_rules
        triggers = [rule.name for rule in failed if not failed_rule_is_missing(rule)]
        missing = [rule.name for rule in failed if failed_rule_is_missing(rule)]
        return {
            "clawback_required": bool(triggers),
            "triggers": triggers,
            "missing": missing,
            "requires_review": bool(missing),
            **summarize(result),
        }

    def check_bonus_eligibility(
        self,
        performance_data: Mapping[str, Any],
        context: PolicyContext | None = None,
        *,
        bonus_amount: Decimal | None = None,
    ) -> dict[str, Any]:
        """Whether a partner earns the quarterly bonus; no bonus is payable unless eligible.

        Required: ``quarterly_performance_pct`` > 110 (computed from ``quarterly_revenue``
        and ``quarterly_target`` when absent), ``customer_satisfaction`` >= 4.5 and
        ``new_customers`` >= 10. Weighted extras (score >= 0.5): ``customer_retention_rate``
        >= 0.9 (weight 2), ``upsell_revenue`` >= 5,000 and ``certifications_current``.

        Args:
            performance_data: The partner's quarter.
            context: Evaluation context.
            bonus_amount: The bonus at stake; paid only if eligible.

        Returns:
            ``eligible``, ``score``, ``threshold``, ``bonus_payable`` (``bonus_amount`` if
            eligible, else ``"0"``, as a decimal string) plus the common fields; every value
            is JSON-safe.

        Raises:
            InvalidInputError: The performance to compute is beyond the range of decimal
                arithmetic.
        """
        data = dict(require_mapping(performance_data, "performance_data"))
        if "quarterly_performance_pct" not in data:
            revenue = _decimal_or_none(data.get("quarterly_revenue"))
            target = _decimal_or_none(data.get("quarterly_target"))
            if revenue is not None and target is not None and target > _ZERO:
                data["quarterly_performance_pct"] = _derived(
                    lambda: revenue / target * 100, "quarterly_revenue / quarterly_target"
                )
        result = self._evaluate("bonus", data, context)
        eligible = result.passed and result.in_effect
        payable = _ZERO
        if eligible and bonus_amount is not None:
            payable = _to_decimal(bonus_amount, field_name="bonus_amount")
        return {
            "eligible": eligible,
            "score": result.score,
            "threshold": result.threshold,
            "bonus_payable": str(payable),
            **summarize(result),
        }

    def calculate_commissions(
        self,
        transactions: Iterable[CommissionTransaction | Mapping[str, Any]],
        *,
        rates: CommissionRates | Mapping[str, Any] | None = None,
        carried_forward: Mapping[str, Decimal] | None = None,
        minimum_payout: Decimal | None = None,
        max_per_transaction: Decimal | None = None,
        currency: str | None = None,
    ) -> CommissionBatchResult:
        """Run :func:`calculate_commissions` with this engine's default rates and limits.

        Raises:
            InvalidInputError: No rates given here or to the constructor, or a bad batch.
        """
        chosen = rates if rates is not None else self._rates
        if chosen is None:
            raise InvalidInputError(
                "no commission rates: pass rates= here or to CommissionRulesEngine(rates=...)",
                field="rates",
            )
        return calculate_commissions(
            transactions,
            rates=chosen,
            minimum_payout=self._minimum_payout if minimum_payout is None else minimum_payout,
            max_per_transaction=(
                self._max_per_transaction if max_per_transaction is None else max_per_transaction
            ),
            carried_forward=carried_forward,
            currency=currency,
        )
