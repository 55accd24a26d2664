"""Commission values: transactions, rates, per-transaction lines, payouts and batch results.

Money is ``Decimal`` throughout; floats are refused. :class:`CommissionRates` holds rates per
tier and per partner (a partner's own rate beats the tier's); :func:`validated_rate` checks a
rate before :mod:`._commission_store` saves it. No arithmetic beyond validation lives here
(that is :mod:`._commission_math`) and no I/O.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Final, NamedTuple

from dotmac_shared.business_logic.exceptions import InvalidInputError

__all__ = [
    "MAX_COMMISSION_RATE",
    "BatchColumns",
    "CommissionBatchResult",
    "CommissionLine",
    "CommissionRates",
    "CommissionTransaction",
    "PartnerPayout",
    "as_rates",
    "check_rate",
    "currency_quantum",
    "to_decimal",
    "validated_rate",
]

#: Commission rates are fractions: 0.10 is 10 %. The business caps them at 50 %.
MAX_COMMISSION_RATE: Final = Decimal("0.5")

_ZERO: Final = Decimal(0)
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


def to_decimal(value: Any, *, field_name: str) -> Decimal:
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


def check_rate(rate: Decimal, *, where: str) -> Decimal:
    """Return ``rate`` if it lies in 0..:data:`MAX_COMMISSION_RATE`; ``where`` names it if not."""
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
            to_decimal(data["amount"], field_name="amount"),
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
            check_rate(to_decimal(rate, field_name="rate"), where=f"tier {tier!r}")
        for (tier, partner), rate in self.partner_rates.items():
            check_rate(
                to_decimal(rate, field_name="rate"), where=f"partner {partner!r} in tier {tier!r}"
            )

    @classmethod
    def from_tiers(
        cls, tier_rates: Mapping[str, Decimal | int | str], currency: str = "USD"
    ) -> CommissionRates:
        """Build rates from a plain tier -> rate mapping (no partner overrides)."""
        return cls(
            {tier: to_decimal(rate, field_name="rate") for tier, rate in tier_rates.items()},
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


class BatchColumns(NamedTuple):
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
    _columns: BatchColumns = field(repr=False, compare=False)

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


def as_rates(rates: CommissionRates | Mapping[str, Any]) -> CommissionRates:
    """Return ``rates`` as :class:`CommissionRates` (a plain mapping is read as tier -> rate)."""
    if isinstance(rates, CommissionRates):
        return rates
    if isinstance(rates, Mapping):
        return CommissionRates.from_tiers(rates)
    raise InvalidInputError(
        f"rates must be CommissionRates or a tier -> rate mapping, not {type(rates).__name__}",
        field="rates",
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
    value = check_rate(
        to_decimal(rate, field_name="rate"), where=f"tier {tier!r}, partner {partner_id!r}"
    )
    if value != value.quantize(Decimal("0.0001")):
        raise InvalidInputError(
            f"commission rate {value} has more than four decimal places", field="rate"
        )
    if not tier or len(tier) > 32:
        raise InvalidInputError("tier must be 1..32 characters", field="tier")
    currency_quantum(currency)
    return value
