"""Policy-as-code: the generic engine and the ISP rule sets built on it.

A policy is a document (dict, JSON or YAML) validated by Pydantic, compiled once on
registration and evaluated in microseconds::

    engine = PolicyEngine()
    engine.register_policy(document)
    result = engine.evaluate("plan_eligibility.residential_basic", customer)
    result.decision  # PolicyDecision.ALLOW

Layout:

* :mod:`~dotmac_shared.business_logic.policies.core` — the engine itself (documents,
  operators, compiler, registry, results, checks, coverage, impact, decision log); no
  business rules and no I/O library.
* This package adds the ISP rule sets (:class:`PlanEligibilityEngine`,
  :class:`CommissionRulesEngine` and :func:`calculate_commissions`,
  :class:`LicensingEngine`) and re-exports the engine's names.
* The names that need a database or Redis (:class:`SqlDecisionRecorder`,
  :func:`load_commission_rates`, :func:`save_commission_rate`, :class:`RedisRateLimiter`)
  are loaded on first use, so importing this package loads no database or Redis library.
  Rate limiting lives in :mod:`dotmac_shared.business_logic.ratelimit`; its names are
  re-exported here for compatibility.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dotmac_shared.business_logic._lazy import lazy_exports
from dotmac_shared.business_logic.policies._commission_math import calculate_commissions
from dotmac_shared.business_logic.policies._commission_types import (
    CommissionBatchResult,
    CommissionLine,
    CommissionRates,
    CommissionTransaction,
    PartnerPayout,
)
from dotmac_shared.business_logic.policies._commissions import CommissionRulesEngine
from dotmac_shared.business_logic.policies._eligibility import PlanEligibilityEngine
from dotmac_shared.business_logic.policies._licensing import LicensingEngine
from dotmac_shared.business_logic.policies.core import (
    OPERATORS,
    REDACTED,
    BufferedDecisionRecorder,
    CoverageReport,
    DecisionRecord,
    DecisionRecorder,
    FieldPath,
    Finding,
    ImpactReport,
    InputProblem,
    JsonLinesDecisionRecorder,
    Policy,
    PolicyContext,
    PolicyCoverage,
    PolicyDecision,
    PolicyDocument,
    PolicyEngine,
    PolicyRegistry,
    PolicyResult,
    PolicyTestCase,
    ReplayInput,
    RuleCoverage,
    RuleDocument,
    RuleImpact,
    RuleResult,
    RuleSeen,
    Severity,
    TestCaseOutcome,
    analyze_impact,
    assert_policy_test_cases,
    check_policy,
    compile_policy,
    compile_redaction,
    load_policy_directory,
    load_policy_file,
    parse_input_lines,
    parse_path,
    parse_policy_document,
    policy_coverage,
    policy_json_schema,
    run_policy_coverage,
    run_policy_test_cases,
)

if TYPE_CHECKING:
    from dotmac_shared.business_logic.policies._commission_store import (
        load_commission_rates,
        save_commission_rate,
    )
    from dotmac_shared.business_logic.policies._sql_decision_log import SqlDecisionRecorder
    from dotmac_shared.business_logic.ratelimit import (
        InMemoryRateLimiter,
        RateLimiter,
        RateLimitResult,
        RedisRateLimiter,
    )

__all__ = [
    "BufferedDecisionRecorder",
    "CommissionBatchResult",
    "CommissionLine",
    "CommissionRates",
    "CommissionRulesEngine",
    "CommissionTransaction",
    "CoverageReport",
    "DecisionRecord",
    "DecisionRecorder",
    "FieldPath",
    "Finding",
    "ImpactReport",
    "InMemoryRateLimiter",
    "InputProblem",
    "JsonLinesDecisionRecorder",
    "LicensingEngine",
    "OPERATORS",
    "PartnerPayout",
    "PlanEligibilityEngine",
    "Policy",
    "PolicyContext",
    "PolicyCoverage",
    "PolicyDecision",
    "PolicyDocument",
    "PolicyEngine",
    "PolicyRegistry",
    "PolicyResult",
    "PolicyTestCase",
    "REDACTED",
    "RateLimitResult",
    "RateLimiter",
    "RedisRateLimiter",
    "ReplayInput",
    "RuleCoverage",
    "RuleDocument",
    "RuleImpact",
    "RuleResult",
    "RuleSeen",
    "Severity",
    "SqlDecisionRecorder",
    "TestCaseOutcome",
    "analyze_impact",
    "assert_policy_test_cases",
    "calculate_commissions",
    "check_policy",
    "compile_policy",
    "compile_redaction",
    "load_commission_rates",
    "load_policy_directory",
    "load_policy_file",
    "parse_input_lines",
    "parse_path",
    "parse_policy_document",
    "policy_coverage",
    "policy_json_schema",
    "run_policy_coverage",
    "run_policy_test_cases",
    "save_commission_rate",
]

# Names loaded on first access (PEP 562): their modules import SQLAlchemy or a Redis client,
# or (rate limiting) now live in their own package.
_LAZY: dict[str, str] = {
    "InMemoryRateLimiter": "dotmac_shared.business_logic.ratelimit",
    "RateLimitResult": "dotmac_shared.business_logic.ratelimit",
    "RateLimiter": "dotmac_shared.business_logic.ratelimit",
    "RedisRateLimiter": "dotmac_shared.business_logic.ratelimit",
    "SqlDecisionRecorder": "dotmac_shared.business_logic.policies._sql_decision_log",
    "load_commission_rates": "dotmac_shared.business_logic.policies._commission_store",
    "save_commission_rate": "dotmac_shared.business_logic.policies._commission_store",
}

__getattr__, __dir__ = lazy_exports(_LAZY, globals())
