"""Decisions, evaluation context and results.

Results are immutable. They are built on every evaluation, so they are small ``__slots__``
objects whose static parts (rule name, operator, expected value, weight, ...) live in one
shared :class:`RuleSpec` per rule; only what varies per evaluation (passed, actual value,
message) is stored per result. Attributes are read-only properties.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final, Protocol

from dotmac_shared.business_logic.exceptions import InvalidInputError

__all__ = [
    "PolicyContext",
    "PolicyDecision",
    "PolicyInfo",
    "PolicyResult",
    "ResultSource",
    "RuleResult",
    "RuleSpec",
    "jsonable",
    "passed_rule",
]


class PolicyDecision(enum.StrEnum):
    """What a policy decides."""

    ALLOW = "ALLOW"  # the operation may go ahead
    DENY = "DENY"  # the operation must not go ahead
    REQUIRE_APPROVAL = "REQUIRE_APPROVAL"  # a person must approve before it goes ahead


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """Who evaluates a policy, for what, and when.

    ``context.<name>`` paths in rules resolve ``tenant_id``, ``user_id``, ``operation``,
    ``correlation_id``, ``now`` and otherwise keys of ``attributes``.

    Args:
        tenant_id: The tenant on whose behalf the policy is evaluated; selects tenant overrides.
        user_id: The user asking.
        operation: The operation being checked, e.g. ``"plan_eligibility_check"``.
        correlation_id: Ties the evaluation to a request.
        attributes: Anything else rules may refer to as ``context.<key>``.
        now: The instant to evaluate at (effective windows, ``context.now``); must be
            timezone-aware; defaults to the current time.

    Raises:
        InvalidInputError: ``now`` is a naive datetime or ``attributes`` is not a mapping.

    Example:
        >>> PolicyContext(tenant_id="tenant123", user_id="user456").tenant_id
        'tenant123'
    """

    tenant_id: str
    user_id: str | None = None
    operation: str | None = None
    correlation_id: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    now: datetime | None = None

    def __post_init__(self) -> None:
        if self.now is not None and (
            not isinstance(self.now, datetime) or self.now.utcoffset() is None
        ):
            raise InvalidInputError(
                "PolicyContext.now must be a timezone-aware datetime", field="context.now"
            )
        if not isinstance(self.attributes, Mapping):
            raise InvalidInputError(
                "PolicyContext.attributes must be a mapping", field="context.attributes"
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> PolicyContext:
        """Build a context from a mapping such as a policy test case's ``context``.

        Raises:
            InvalidInputError: Unknown keys or a missing ``tenant_id``.
        """
        known = {"tenant_id", "user_id", "operation", "correlation_id", "attributes", "now"}
        unknown = sorted(str(key) for key in values if key not in known)
        if unknown:
            raise InvalidInputError(f"unknown context keys: {unknown}", field="context")
        tenant_id = values.get("tenant_id")
        if not isinstance(tenant_id, str):
            raise InvalidInputError("context.tenant_id must be a string", field="context.tenant_id")
        now = values.get("now")
        if isinstance(now, str):
            try:
                now = datetime.fromisoformat(now)
            except ValueError as exc:
                raise InvalidInputError(
                    f"context.now is not an ISO datetime: {now!r}", field="context.now"
                ) from exc
        return cls(
            tenant_id=tenant_id,
            user_id=values.get("user_id"),
            operation=values.get("operation"),
            correlation_id=values.get("correlation_id"),
            attributes=dict(values.get("attributes") or {}),
            now=now,
        )


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """The static description of one compiled rule, shared by all its results."""

    name: str
    field: str | None  # None for groups
    operator: str  # an operator name, or "all" / "any" / "not" for groups
    expected: Any
    message: str | None
    required: bool
    weight: float
    priority: int
    value_from: str | None = None
    on_fail: PolicyDecision | None = None


_FROM_SPEC: Final[Any] = object()
_REPR_LIMIT: Final = 120


def jsonable(value: Any) -> Any:
    """Convert a value to something ``json.dumps`` accepts (for ``to_dict``)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return (
            value if value == value and value not in (float("inf"), float("-inf")) else str(value)
        )
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item) for item in value]
    text = repr(value)
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 3] + "..."


class RuleResult:
    """The outcome of one rule (or group) in one evaluation; immutable.

    Attributes:
        name: The rule's name.
        passed: Whether the rule passed.
        field: The field path it checked (``None`` for groups).
        operator: Its operator (``"all"``, ``"any"``, ``"not"`` for groups).
        expected: The expected value (for ``value_from`` rules, the value resolved).
        actual: The value found in the input (``None`` if missing).
        message: Why it failed, in business language (``None`` if it passed).
        required: Whether it is a hard rule (``False`` = scored).
        weight: Its weight in the score.
        priority: Lower numbers are reported first.
        missing: Whether it failed because a field was missing.
        children: The results of a group's rules.
        detail: The technical reason for a failure, e.g. ``credit_score is 550, expected >= 600``.
    """

    __slots__ = ("_actual", "_extra", "_passed", "_spec")
    _spec: RuleSpec
    _passed: bool
    _actual: Any
    _extra: tuple[bool, str | None, str | None, tuple[RuleResult, ...], Any] | None

    def __init__(
        self,
        spec: RuleSpec,
        passed: bool,
        actual: Any = None,
        missing: bool = False,
        message: str | None = None,
        detail: str | None = None,
        children: tuple[RuleResult, ...] = (),
        expected: Any = _FROM_SPEC,
    ) -> None:
        # This runs for every rule whose explanation is read: a plain passed leaf stores
        # three values; failures, groups and value_from rules add one tuple of extras.
        self._spec = spec
        self._passed = passed
        self._actual = actual
        plain = not missing and message is None and detail is None and not children
        if plain and expected is _FROM_SPEC:
            self._extra = None
        else:
            self._extra = (missing, message, detail, children, expected)

    @classmethod
    def of(
        cls,
        name: str,
        passed: bool,
        *,
        field: str | None = None,
        operator: str = "custom",
        expected: Any = None,
        actual: Any = None,
        message: str | None = None,
        required: bool = True,
        weight: float = 1.0,
        priority: int = 100,
        missing: bool = False,
        children: tuple[RuleResult, ...] = (),
        detail: str | None = None,
    ) -> RuleResult:
        """Build a result from keyword arguments (for checks written in Python)."""
        spec = RuleSpec(name, field, operator, expected, message, required, weight, priority)
        return cls(spec, passed, actual, missing, None if passed else message, detail, children)

    @property
    def spec(self) -> RuleSpec:
        """The static description of the rule."""
        return self._spec

    @property
    def name(self) -> str:
        """The rule's name."""
        return self._spec.name

    @property
    def passed(self) -> bool:
        """Whether the rule passed."""
        return self._passed

    @property
    def field(self) -> str | None:
        """The field path the rule checked (``None`` for groups)."""
        return self._spec.field

    @property
    def operator(self) -> str:
        """The operator, or ``all``/``any``/``not`` for groups."""
        return self._spec.operator

    @property
    def expected(self) -> Any:
        """The expected value (resolved for ``value_from`` rules)."""
        extra = self._extra
        if extra is None or extra[4] is _FROM_SPEC:
            return self._spec.expected
        return extra[4]

    @property
    def actual(self) -> Any:
        """The value found in the input (``None`` if missing)."""
        return self._actual

    @property
    def message(self) -> str | None:
        """Why the rule failed (``None`` if it passed)."""
        return None if self._extra is None else self._extra[1]

    @property
    def detail(self) -> str | None:
        """The technical reason for a failure."""
        return None if self._extra is None else self._extra[2]

    @property
    def required(self) -> bool:
        """Whether the rule is hard (``False`` = scored)."""
        return self._spec.required

    @property
    def weight(self) -> float:
        """The rule's weight in the score."""
        return self._spec.weight

    @property
    def priority(self) -> int:
        """Lower numbers are reported first."""
        return self._spec.priority

    @property
    def missing(self) -> bool:
        """Whether the rule failed because a field was missing."""
        return False if self._extra is None else self._extra[0]

    @property
    def children(self) -> tuple[RuleResult, ...]:
        """Results of a group's rules."""
        return () if self._extra is None else self._extra[3]

    def _key(self) -> tuple[Any, ...]:
        return (
            self.name,
            self._passed,
            self.field,
            self.operator,
            self.expected,
            self._actual,
            self.message,
            self.required,
            self.weight,
            self.priority,
            self.missing,
            self.children,
            self.detail,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RuleResult):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash((self.name, self._passed, self.field, self.operator, self.missing))

    def __repr__(self) -> str:
        state = "passed" if self._passed else f"failed: {self.message!r}"
        return f"RuleResult({self.name!r}, {state}, actual={self._actual!r})"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly description of this outcome."""
        return {
            "name": self.name,
            "passed": self._passed,
            "field": self.field,
            "operator": self.operator,
            "expected": jsonable(self.expected),
            "actual": jsonable(self._actual),
            "message": self.message,
            "detail": self.detail,
            "required": self.required,
            "weight": self.weight,
            "priority": self.priority,
            "missing": self.missing,
            "children": [child.to_dict() for child in self.children],
        }


def passed_rule(spec: RuleSpec, actual: Any) -> RuleResult:
    """A passed leaf's result (explanation hot path: positional, no extras)."""
    return RuleResult(spec, True, actual)


@dataclass(frozen=True, slots=True)
class PolicyInfo:
    """Identity of a compiled policy version, shared by all its results."""

    name: str
    version: str
    threshold: float
    content_hash: str
    owner_tenant_id: str | None = None  # set for a tenant's own version of a policy


class ResultSource(Protocol):
    """What a :class:`PolicyResult` needs from the policy that produced it."""

    info: PolicyInfo

    def materialize(self, values: Sequence[Any]) -> tuple[RuleResult, ...]:
        """Build the rule results, in priority order, from the values captured."""
        ...


class PolicyResult:
    """The outcome of one policy evaluation; immutable.

    The evaluation captures each rule's input value and the decision; the
    :class:`RuleResult` objects (and their messages) are built from those captured values
    the first time ``rule_results``, ``failed_rules``, ``reasons`` or ``to_dict()`` is
    read, then kept. Deciding therefore costs no explanation objects, and reading the
    explanation gives exactly what an eager build would.

    Attributes:
        policy_name: The policy's name.
        policy_version: The version evaluated.
        decision: ALLOW, DENY or REQUIRE_APPROVAL.
        passed: Every required rule passed and the score reached the threshold.
        score: Weighted share of scored rules that passed (1.0 without scored rules).
        threshold: The score the policy requires.
        rule_results: Top-level rule outcomes in priority order.
        in_effect: ``False`` when evaluated outside the policy's effective window.
        evaluated_at: When the evaluation started (UTC).
        duration_us: How long it took, in microseconds.
        content_hash: SHA-256 of the policy version's canonical document.
        tenant_id: The tenant of the evaluation context, if any.
        policy_tenant_id: The tenant owning the evaluated version (``None`` = global policy).

    Example:
        >>> str(result)  # doctest: +SKIP
        'ALLOW plan_eligibility.residential_basic@1.0.0 (4/4 rules passed)'
    """

    # One slot per outcome field, not an outcome object: building a second object (a
    # NamedTuple or dataclass) per evaluation would cost more than these assignments.
    __slots__ = (
        "_context",
        "_decision",
        "_duration_us",
        "_notes",
        "_passed",
        "_rule_results",
        "_score",
        "_source",
        "_started_ns",
        "_values",
    )
    _source: ResultSource
    _values: Sequence[Any]
    _passed: bool
    _score: float
    _decision: PolicyDecision
    _started_ns: int
    _duration_us: float
    _notes: tuple[str, ...]
    _context: PolicyContext | None
    _rule_results: tuple[RuleResult, ...] | None

    def __init__(
        self,
        source: ResultSource,
        values: Sequence[Any],
        passed: bool,
        score: float,
        decision: PolicyDecision,
        started_ns: int,
        duration_us: float,
        notes: tuple[str, ...],
        context: PolicyContext | None,
    ) -> None:
        """Record one evaluation's outcome (called by the compiled policy, once per evaluation).

        Args:
            source: The policy that produced it (explains ``values`` on demand).
            values: Each rule's captured input value, in the policy's evaluation order.
            passed: Every required rule passed and the score reached the threshold.
            score: Weighted share of scored rules that passed.
            decision: ALLOW, DENY or REQUIRE_APPROVAL.
            started_ns: When the evaluation started (``time.time_ns()``).
            duration_us: How long it took, in microseconds.
            notes: Policy-level reasons (only "not in force" today).
            context: The evaluation context.
        """
        # The explanation is built when first read (None until then: cheaper than
        # catching AttributeError).
        self._source = source
        self._values = values
        self._passed = passed
        self._score = score
        self._decision = decision
        self._started_ns = started_ns
        self._duration_us = duration_us
        self._notes = notes
        self._context = context
        self._rule_results = None

    @property
    def _info(self) -> PolicyInfo:
        return self._source.info

    @property
    def policy_name(self) -> str:
        """The policy's name."""
        return self._info.name

    @property
    def policy_version(self) -> str:
        """The version that was evaluated."""
        return self._info.version

    @property
    def decision(self) -> PolicyDecision:
        """ALLOW, DENY or REQUIRE_APPROVAL."""
        return self._decision

    @property
    def passed(self) -> bool:
        """Every required rule passed and the score reached the threshold."""
        return self._passed

    @property
    def allowed(self) -> bool:
        """Shorthand for ``decision is PolicyDecision.ALLOW``."""
        return self._decision is PolicyDecision.ALLOW

    @property
    def score(self) -> float:
        """Weighted share of scored rules that passed."""
        return self._score

    @property
    def threshold(self) -> float:
        """The score the policy requires."""
        return self._info.threshold

    @property
    def rule_results(self) -> tuple[RuleResult, ...]:
        """Top-level rule outcomes, in priority order."""
        results = self._rule_results
        if results is None:
            results = self._source.materialize(self._values)
            self._rule_results = results  # a cache of a pure function of captured values
        return results

    @property
    def failed_rules(self) -> tuple[RuleResult, ...]:
        """Top-level rules that failed, in priority order."""
        return tuple(rule for rule in self.rule_results if not rule.passed)

    @property
    def failed_rule_names(self) -> tuple[str, ...]:
        """Names of the top-level rules that failed, in priority order."""
        return tuple(rule.name for rule in self.rule_results if not rule.passed)

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why the policy did not simply pass: policy-level notes, then failed rules' messages."""
        messages = tuple(rule.message or rule.name for rule in self.rule_results if not rule.passed)
        return self._notes + messages

    @property
    def in_effect(self) -> bool:
        """``False`` when evaluated outside the policy's effective window."""
        return not self._notes

    @property
    def evaluated_at(self) -> datetime:
        """When the evaluation started (UTC)."""
        return datetime.fromtimestamp(self._started_ns / 1e9, UTC)

    @property
    def duration_us(self) -> float:
        """How long the evaluation took, in microseconds."""
        return self._duration_us

    @property
    def content_hash(self) -> str:
        """SHA-256 of the evaluated version's canonical document."""
        return self._info.content_hash

    @property
    def tenant_id(self) -> str | None:
        """The tenant of the evaluation context."""
        return self._context.tenant_id if self._context is not None else None

    @property
    def context(self) -> PolicyContext | None:
        """The evaluation context."""
        return self._context

    @property
    def policy_tenant_id(self) -> str | None:
        """The tenant owning the evaluated version (``None`` for the global policy)."""
        return self._info.owner_tenant_id

    def _outcome_key(self) -> tuple[Any, ...]:
        # Every outcome field but the captured values: __eq__ compares rule_results, what
        # those values mean, instead.
        return (
            self._passed,
            self._score,
            self._decision,
            self._started_ns,
            self._duration_us,
            self._notes,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PolicyResult):
            return NotImplemented
        return (
            self._info == other._info
            and self._outcome_key() == other._outcome_key()
            and self.rule_results == other.rule_results
            and self._context == other._context
        )

    def __hash__(self) -> int:
        return hash((self._info, self._decision, self._started_ns))

    def __str__(self) -> str:
        results = self.rule_results
        total = len(results)
        passed = sum(1 for rule in results if rule.passed)
        text = f"{self.decision.value} {self._info.name}@{self._info.version}"
        if self._notes:
            return f"{text} (not in force)"
        text = f"{text} ({passed}/{total} rules passed"
        names = self.failed_rule_names
        if names:
            text += f"; failed: {', '.join(names)}"
        return text + ")"

    def __repr__(self) -> str:
        return f"PolicyResult({self})"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly description for APIs and audit logs."""
        return {
            "policy_name": self.policy_name,
            "policy_version": self.policy_version,
            "decision": self.decision.value,
            "passed": self.passed,
            "score": self.score,
            "threshold": self.threshold,
            "in_effect": self.in_effect,
            "reasons": list(self.reasons),
            "failed_rules": list(self.failed_rule_names),
            "rule_results": [rule.to_dict() for rule in self.rule_results],
            "evaluated_at": self.evaluated_at.isoformat(),
            "duration_us": self.duration_us,
            "content_hash": self.content_hash,
            "tenant_id": self.tenant_id,
            "policy_tenant_id": self.policy_tenant_id,
        }
