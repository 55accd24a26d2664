"""Policy-as-code: declarative, versioned, weighted rules compiled into closures.

A policy is a document (dict, JSON or YAML) validated by Pydantic, compiled once on
registration and evaluated in microseconds::

    engine = PolicyEngine()
    engine.register_policy(document)
    result = engine.evaluate("plan_eligibility.residential_basic", customer)
    result.decision  # PolicyDecision.ALLOW
"""

from dotmac_shared.business_logic.policies.checks import Finding, Severity, check_policy
from dotmac_shared.business_logic.policies.commissions import (
    CommissionBatchResult,
    CommissionLine,
    CommissionRates,
    CommissionRulesEngine,
    CommissionTransaction,
    PartnerPayout,
    calculate_commissions,
    load_commission_rates,
    save_commission_rate,
)
from dotmac_shared.business_logic.policies.compiler import Policy, compile_policy
from dotmac_shared.business_logic.policies.coverage import (
    CoverageReport,
    PolicyCoverage,
    RuleCoverage,
    RuleSeen,
    policy_coverage,
    run_policy_coverage,
)
from dotmac_shared.business_logic.policies.decision_log import (
    REDACTED,
    BufferedDecisionRecorder,
    DecisionRecord,
    DecisionRecorder,
    JsonLinesDecisionRecorder,
    compile_redaction,
)
from dotmac_shared.business_logic.policies.decision_log_sql import SqlDecisionRecorder
from dotmac_shared.business_logic.policies.document import (
    PolicyDocument,
    PolicyTestCase,
    RuleDocument,
    parse_policy_document,
    policy_json_schema,
)
from dotmac_shared.business_logic.policies.eligibility import PlanEligibilityEngine
from dotmac_shared.business_logic.policies.engine import PolicyEngine
from dotmac_shared.business_logic.policies.impact import (
    ImpactReport,
    InputProblem,
    ReplayInput,
    RuleImpact,
    analyze_impact,
    parse_input_lines,
)
from dotmac_shared.business_logic.policies.licensing import LicensingEngine
from dotmac_shared.business_logic.policies.operators import OPERATORS
from dotmac_shared.business_logic.policies.paths import FieldPath, parse_path
from dotmac_shared.business_logic.policies.rate_limit import (
    InMemoryRateLimiter,
    RateLimiter,
    RateLimitResult,
    RedisRateLimiter,
)
from dotmac_shared.business_logic.policies.registry import (
    PolicyRegistry,
    load_policy_directory,
    load_policy_file,
)
from dotmac_shared.business_logic.policies.results import (
    PolicyContext,
    PolicyDecision,
    PolicyResult,
    RuleResult,
)
from dotmac_shared.business_logic.policies.testing import (
    TestCaseOutcome,
    assert_policy_test_cases,
    run_policy_test_cases,
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
