"""Partner commission rules: :class:`CommissionRulesEngine` over the shipped commission policies.

The engine evaluates the commission policies in ``definitions/`` (partner eligibility, rate
validation, tier advancement, clawback, bonus) and runs the batch arithmetic of
:mod:`._commission_math` with its default rates and limits. The values it works on live in
:mod:`._commission_types`; the rates' storage in :mod:`._commission_store`, imported only when
used, so this module needs no database library.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, Final

from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.policies._commission_math import (
    DEFAULT_MAX_PER_TRANSACTION,
    DEFAULT_MINIMUM_PAYOUT,
    calculate_commissions,
    cents,
    decimal_or_none,
    derived,
)
from dotmac_shared.business_logic.policies._commission_types import (
    CommissionBatchResult,
    CommissionRates,
    CommissionTransaction,
    as_rates,
    to_decimal,
)
from dotmac_shared.business_logic.policies._eligibility import (
    failed_rule_is_missing,
    register_shipped_policies,
    require_mapping,
    summarize,
)
from dotmac_shared.business_logic.policies.core import PolicyContext, PolicyEngine, PolicyResult
from dotmac_shared.business_logic.policies.core._results import jsonable

__all__ = ["COMMISSION_POLICIES", "CommissionRulesEngine"]

#: The shipped commission policies, by check.
COMMISSION_POLICIES: Final[Mapping[str, str]] = {
    "partner_eligibility": "commission.partner_eligibility",
    "rate_validation": "commission.rate_validation",
    "tier_advancement": "commission.tier_advancement",
    "clawback": "commission.clawback",
    "bonus": "commission.bonus",
}

_ZERO: Final = Decimal(0)


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
        self._rates = None if rates is None else as_rates(rates)
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
            amount = decimal_or_none(data.get("transaction_amount"))
            rate = decimal_or_none(data.get("commission_rate"))
            if amount is not None and rate is not None:
                data["calculated_payout"] = derived(
                    lambda: cents(amount * rate), "transaction_amount * commission_rate"
                )
        result = self._evaluate("rate_validation", data, context)
        payout = decimal_or_none(data.get("calculated_payout"))
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
            revenue = decimal_or_none(data.get("quarterly_revenue"))
            target = decimal_or_none(data.get("quarterly_target"))
            if revenue is not None and target is not None and target > _ZERO:
                data["quarterly_performance_pct"] = derived(
                    lambda: revenue / target * 100, "quarterly_revenue / quarterly_target"
                )
        result = self._evaluate("bonus", data, context)
        eligible = result.passed and result.in_effect
        payable = _ZERO
        if eligible and bonus_amount is not None:
            payable = to_decimal(bonus_amount, field_name="bonus_amount")
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
