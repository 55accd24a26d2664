"""The service catalog: service types, plan levels, prices and billing cycles, as data."""

from __future__ import annotations

from decimal import Decimal
from typing import Final

__all__ = [
    "BILLING_CYCLES",
    "DEFAULT_TAX_RATE",
    "PLAN_ELIGIBILITY",
    "PLAN_LEVELS",
    "SERVICE_PRICES",
    "SERVICE_TYPES",
]

SERVICE_TYPES: Final = ("internet", "hosting", "voip", "security")
PLAN_LEVELS: Final = ("basic", "standard", "premium", "enterprise")
#: Billing cycle -> months per invoice.
BILLING_CYCLES: Final = {"monthly": 1, "quarterly": 3, "annual": 12}

#: Monthly list price per service type and plan level.
SERVICE_PRICES: Final[dict[str, dict[str, Decimal]]] = {
    "internet": {
        "basic": Decimal("29.99"),
        "standard": Decimal("49.99"),
        "premium": Decimal("79.99"),
        "enterprise": Decimal("199.99"),
    },
    "hosting": {
        "basic": Decimal("9.99"),
        "standard": Decimal("19.99"),
        "premium": Decimal("39.99"),
        "enterprise": Decimal("149.99"),
    },
    "voip": {
        "basic": Decimal("14.99"),
        "standard": Decimal("24.99"),
        "premium": Decimal("34.99"),
        "enterprise": Decimal("99.99"),
    },
    "security": {
        "basic": Decimal("4.99"),
        "standard": Decimal("9.99"),
        "premium": Decimal("19.99"),
        "enterprise": Decimal("59.99"),
    },
}

#: Which eligibility policy a plan level requires (see the plan eligibility policies).
PLAN_ELIGIBILITY: Final = {
    "basic": "residential_basic",
    "standard": "residential_basic",
    "premium": "business_pro",
    "enterprise": "enterprise",
}

#: Bandwidth per internet plan level, in Mbps.
INTERNET_BANDWIDTH_MBPS: Final = {
    "basic": 100,
    "standard": 300,
    "premium": 1000,
    "enterprise": 10000,
}

#: Tax applied to invoices unless the tenant's ``tax_rate`` setting says otherwise.
DEFAULT_TAX_RATE: Final = Decimal("0.0875")
