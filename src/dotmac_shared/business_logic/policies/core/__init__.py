"""The policy engine: documents, operators, compiler, registry, results, checks and tools.

Generic policy-as-code with no business rules and no I/O libraries: importing this package
loads neither a database nor a Redis client. A policy is a document (dict, JSON or YAML)
validated by Pydantic, compiled once on registration into closures, and evaluated::

    engine = PolicyEngine()
    engine.register_policy(document)
    result = engine.evaluate("plan_eligibility.residential_basic", customer)
    result.decision  # PolicyDecision.ALLOW

The ISP rule sets built on it (plan eligibility, commissions, licensing) and the SQL
decision log live one level up, in :mod:`dotmac_shared.business_logic.policies`.

Example:
    >>> from dotmac_shared.business_logic.policies.core import PolicyEngine
    >>> engine = PolicyEngine()
    >>> _ = engine.register_policy({
    ...     "name": "demo", "version": "1.0.0",
    ...     "rules": [{"name": "adult", "field": "age", "operator": "gte", "value": 18}],
    ... })
    >>> engine.is_allowed("demo", {"age": 30})
    True
"""

from dotmac_shared.business_logic.policies.core._checks import Finding, Severity, check_policy
from dotmac_shared.business_logic.policies.core._compiler import Policy, compile_policy
from dotmac_shared.business_logic.policies.core._coverage import (
    CoverageReport,
    PolicyCoverage,
    RuleCoverage,
    RuleSeen,
    policy_coverage,
    run_policy_coverage,
)
from dotmac_shared.business_logic.policies.core._decision_log import (
    REDACTED,
    BufferedDecisionRecorder,
    DecisionRecord,
    DecisionRecorder,
    JsonLinesDecisionRecorder,
    compile_redaction,
)
from dotmac_shared.business_logic.policies.core._document import (
    PolicyDocument,
    PolicyTestCase,
    RuleDocument,
    parse_policy_document,
    policy_json_schema,
)
from dotmac_shared.business_logic.policies.core._engine import PolicyEngine
from dotmac_shared.business_logic.policies.core._impact import (
    ImpactReport,
    InputProblem,
    ReplayInput,
    RuleImpact,
    analyze_impact,
    parse_input_lines,
)
from dotmac_shared.business_logic.policies.core._operators import OPERATORS
from dotmac_shared.business_logic.policies.core._paths import FieldPath, parse_path
from dotmac_shared.business_logic.policies.core._registry import (
    PolicyRegistry,
    load_policy_directory,
    load_policy_file,
)
from dotmac_shared.business_logic.policies.core._results import (
    PolicyContext,
    PolicyDecision,
    PolicyResult,
    RuleResult,
)
from dotmac_shared.business_logic.policies.core._testing import (
    TestCaseOutcome,
    assert_policy_test_cases,
    run_policy_test_cases,
)

__all__ = [
    "BufferedDecisionRecorder",
    "CoverageReport",
    "DecisionRecord",
    "DecisionRecorder",
    "FieldPath",
    "Finding",
    "ImpactReport",
    "InputProblem",
    "JsonLinesDecisionRecorder",
    "OPERATORS",
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
    "ReplayInput",
    "RuleCoverage",
    "RuleDocument",
    "RuleImpact",
    "RuleResult",
    "RuleSeen",
    "Severity",
    "TestCaseOutcome",
    "analyze_impact",
    "assert_policy_test_cases",
    "check_policy",
    "compile_policy",
    "compile_redaction",
    "load_policy_directory",
    "load_policy_file",
    "parse_input_lines",
    "parse_path",
    "parse_policy_document",
    "policy_coverage",
    "policy_json_schema",
    "run_policy_coverage",
    "run_policy_test_cases",
]
