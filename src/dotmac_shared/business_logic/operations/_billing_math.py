"""Pure billing arithmetic: periods, proration and tax. No I/O, so it is tested exhaustively."""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import re
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal

from dotmac_shared.business_logic.exceptions import InvalidInputError

__all__ = [
    "BillingPeriod",
    "InvoiceDraft",
    "LineDraft",
    "ServiceCharge",
    "draft_invoice",
    "round_money",
]

CENT = Decimal("0.01")
_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])\Z")


def round_money(amount: Decimal) -> Decimal:
    """Round to cents, half up (the convention invoices and receipts use)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclasses.dataclass(frozen=True, slots=True)
class BillingPeriod:
    """A calendar month ``YYYY-MM``: from its first instant to the next month's first."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: object) -> BillingPeriod:
        """Parse ``YYYY-MM``.

        Raises:
            InvalidInputError: Not a string of that form (field ``billing_period``).
        """
        match = _PERIOD.match(text) if isinstance(text, str) else None
        if match is None:
            raise InvalidInputError(
                f"billing_period must look like YYYY-MM, got {text!r}", field="billing_period"
            )
        return cls(int(match.group(1)), int(match.group(2)))

    @property
    def start(self) -> dt.datetime:
        """First instant of the period (UTC)."""
        return dt.datetime(self.year, self.month, 1, tzinfo=dt.UTC)

    @property
    def end(self) -> dt.datetime:
        """First instant after the period (UTC)."""
        year, month = (self.year + 1, 1) if self.month == 12 else (self.year, self.month + 1)
        return dt.datetime(year, month, 1, tzinfo=dt.UTC)

    @property
    def days(self) -> int:
        """Number of days in the period."""
        return calendar.monthrange(self.year, self.month)[1]

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def ensure_not_future(self, now: dt.datetime) -> None:
        """Refuse a period that has not started yet at ``now``.

        Raises:
            InvalidInputError: The period starts after ``now``.
        """
        if self.start > now:
            raise InvalidInputError(
                f"billing period {self} is in the future", field="billing_period"
            )

    def active_days(self, started_at: dt.datetime | None, ended_at: dt.datetime | None) -> int:
        """Days of this period a service was active (a started day counts, an end day does not)."""
        first = max(self.start, _day(started_at)) if started_at else self.start
        last = min(self.end, _day(ended_at)) if ended_at else self.end
        return max(0, (last - first).days)


def _day(moment: dt.datetime) -> dt.datetime:
    moment = moment.astimezone(dt.UTC)
    return dt.datetime(moment.year, moment.month, moment.day, tzinfo=dt.UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceCharge:
    """What invoicing needs of one service."""

    service_id: str
    description: str
    monthly_price: Decimal
    started_at: dt.datetime | None
    ended_at: dt.datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class LineDraft:
    """An invoice line before it is stored."""

    service_id: str
    description: str
    days: int
    amount: Decimal


@dataclasses.dataclass(frozen=True, slots=True)
class InvoiceDraft:
    """An invoice before it is stored; ``None`` from :func:`draft_invoice` if nothing is due."""

    lines: tuple[LineDraft, ...]
    subtotal: Decimal
    tax: Decimal
    total: Decimal


def draft_invoice(
    period: BillingPeriod, services: Iterable[ServiceCharge], tax_rate: Decimal
) -> InvoiceDraft | None:
    """Prorate each service by its active days in ``period`` and add tax on the subtotal.

    A line is ``round_money(price * active_days / days_in_period)``; tax is
    ``round_money(subtotal * tax_rate)``. Returns ``None`` when no service was active.
    """
    lines = []
    for service in services:
        days = period.active_days(service.started_at, service.ended_at)
        if days == 0:
            continue
        amount = round_money(service.monthly_price * days / period.days)
        lines.append(LineDraft(service.service_id, service.description, days, amount))
    if not lines:
        return None
    subtotal = sum((line.amount for line in lines), Decimal("0.00"))
    tax = round_money(subtotal * tax_rate)
    return InvoiceDraft(tuple(lines), subtotal, tax, subtotal + tax)
