"""Commission rates in the database: load and save rows of the commission configuration table.

This is the I/O half of the commission modules (whose values, arithmetic and rule policies
need no database library). :mod:`dotmac_shared.business_logic.policies` loads this module
only when :func:`load_commission_rates` or :func:`save_commission_rate` is first used. It is
the one place that imports the commission configuration model.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.operations.models._commissions import CommissionConfiguration
from dotmac_shared.business_logic.persistence._sql import insert_for
from dotmac_shared.business_logic.policies._commission_types import CommissionRates, validated_rate

__all__ = ["load_commission_rates", "save_commission_rate"]


async def load_commission_rates(
    session_factory: async_sessionmaker[AsyncSession], tenant_id: str
) -> CommissionRates:
    """Load a tenant's commission rates from ``dotmac_commission_configurations``.

    Rows with an empty ``partner_id`` are tier defaults; the others override the tier's rate
    for one partner.

    Raises:
        InvalidInputError: The tenant's rates mix currencies.
    """
    async with session_factory() as session:
        rows = (
            await session.execute(
                select(CommissionConfiguration).where(
                    CommissionConfiguration.tenant_id == tenant_id
                )
            )
        ).scalars()
        tier_rates: dict[str, Decimal] = {}
        partner_rates: dict[tuple[str, str], Decimal] = {}
        currencies: set[str] = set()
        for row in rows:
            currencies.add(row.currency)
            if row.partner_id:
                partner_rates[(row.tier, row.partner_id)] = row.rate
            else:
                tier_rates[row.tier] = row.rate
    if len(currencies) > 1:
        raise InvalidInputError(
            f"tenant {tenant_id!r} has commission rates in several currencies:"
            f" {', '.join(sorted(currencies))}",
            field="currency",
            tenant_id=tenant_id,
        )
    return CommissionRates(tier_rates, partner_rates, currencies.pop() if currencies else "USD")


async def save_commission_rate(
    session_factory: async_sessionmaker[AsyncSession],
    tenant_id: str,
    tier: str,
    rate: Decimal,
    *,
    partner_id: str = "",
    currency: str = "USD",
) -> None:
    """Insert or replace one commission rate (a tier default, or a partner's override).

    Args:
        session_factory: The spec's session factory.
        tenant_id: Owner of the configuration.
        tier: Partner tier the rate applies to.
        rate: A fraction between 0 and 0.5 (0.10 = 10 %), as ``Decimal``.
        partner_id: Empty for the tier default, else the partner whose rate this overrides.
        currency: ISO 4217 code.

    Raises:
        InvalidInputError: The rate is not a Decimal in 0..0.5, or tier/currency are malformed.
    """
    value = validated_rate(rate, tier=tier, partner_id=partner_id, currency=currency)
    async with session_factory() as session, session.begin():
        # One statement for both databases: insert, or replace the rate on the unique key.
        stmt = insert_for(session, CommissionConfiguration).values(
            tenant_id=tenant_id,
            tier=tier,
            partner_id=partner_id,
            rate=value,
            currency=currency.upper(),
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["tenant_id", "tier", "partner_id"],
            set_={"rate": stmt.excluded.rate, "currency": stmt.excluded.currency},
        )
        await session.execute(stmt)
