"""Policy documents: Pydantic models, validation and JSON Schema.

A policy document (dict, JSON or YAML) is validated here before anything is compiled.
Every problem becomes a :class:`PolicyDefinitionError` naming the policy, the rule, the
location in the document and the problem::

    policy 'plan_eligibility.residential_basic': rule 'min_credit' (rules[1].operator):
    unknown operator 'greater'; known operators: between, contains, ...

Before Pydantic sees a raw document, a cheap walk bounds what it may cost (rule count,
nesting, number of values, amount of text) and refuses what has no JSON/YAML form (sets,
bytes, objects, non-string keys, lone surrogates, NaN outside test cases): a document given
as a dict meets the same limits as one read from a file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from dotmac_shared.business_logic.exceptions import PolicyDefinitionError
from dotmac_shared.business_logic.policies.core._operators import (
    OPERATORS,
    VALUE_FROM_OPERATORS,
    VALUELESS_OPERATORS,
    Operator,
    check_value,
)
from dotmac_shared.business_logic.policies.core._paths import (
    MISSING,
    compile_getter,
    lookup,
    parse_path,
)
from dotmac_shared.business_logic.policies.core._results import PolicyDecision

__all__ = [
    "MAX_DOCUMENT_DEPTH",
    "MAX_DOCUMENT_TEXT",
    "MAX_DOCUMENT_VALUES",
    "MAX_NESTING_DEPTH",
    "MAX_RULES",
    "POLICY_NAME_PATTERN",
    "PolicyDocument",
    "PolicyTestCase",
    "RuleDocument",
    "TestCaseContext",
    "iter_rules",
    "parse_policy_document",
    "policy_json_schema",
    "semver_key",
]

POLICY_NAME_PATTERN: Final = r"^[a-z0-9_.-]+$"
RULE_NAME_PATTERN: Final = r"^[A-Za-z0-9_.:-]+$"
MAX_NESTING_DEPTH: Final = 8
"""Top-level rules are at depth 1; a group's rules one deeper."""
MAX_RULES: Final = 2000
MAX_DOCUMENT_DEPTH: Final = 64
"""Lists and mappings nest at most this deep in a document (the document is level 1)."""
MAX_DOCUMENT_VALUES: Final = 100_000
"""Values (list items and mapping entries, at any depth) one document may hold."""
MAX_DOCUMENT_TEXT: Final = 1_048_576
"""Characters of text (strings and keys) one document may hold: a file's byte limit."""
_MAX_INT_BITS: Final = 3_322  # 1,000 decimal digits: int <-> text conversions stay cheap
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_SEMVER_RE: Final = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
_GROUP_KEYS: Final = ("all", "any", "not")


def semver_key(version: str) -> tuple[Any, ...]:
    """Sort key giving semantic-version precedence (build metadata ignored).

    Raises:
        ValueError: ``version`` is not a semantic version.

    Example:
        >>> sorted(["1.10.0", "1.2.0", "1.2.0-rc.1"], key=semver_key)
        ['1.2.0-rc.1', '1.2.0', '1.10.0']
    """
    match = _SEMVER_RE.fullmatch(version) if isinstance(version, str) else None
    if match is None:
        raise ValueError(f"must be a semantic version like 1.0.0, got {version!r}")
    major, minor, patch, prerelease = match.group(1, 2, 3, 4)
    if prerelease is None:
        pre: tuple[Any, ...] = (1,)  # a release sorts after all its pre-releases
    else:
        pre = (
            0,
            tuple(
                (0, int(part), "") if part.isdigit() else (1, 0, part)
                for part in prerelease.split(".")
            ),
        )
    return (int(major), int(minor), int(patch), pre)


def _problem(
    message: str, *, rule: str | None = None, location: str | None = None
) -> PydanticCustomError:
    return PydanticCustomError(
        "policy_definition",
        "{problem}",
        {"problem": message, "rule": rule, "location": location},
    )


def _aware(value: Any) -> Any:
    """Dates become midnight UTC; naive datetimes are rejected."""
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value)  # a plain date means midnight UTC
        except ValueError:
            try:
                value = datetime.fromisoformat(value)
            except ValueError as exc:
                raise ValueError(f"must be an ISO date or datetime, got {value!r}") from exc
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise ValueError("must include a timezone, e.g. 2026-01-01T00:00:00Z")
        return value
    if isinstance(value, date):
        return datetime.combine(value, time(0), tzinfo=UTC)
    return value


class RuleDocument(BaseModel):
    """One rule: a leaf (``field`` + ``operator``) or a group (``all``/``any``/``not``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=200, pattern=RULE_NAME_PATTERN)
    description: str | None = None
    field: str | None = Field(default=None, description="Path into the input or context")
    operator: Operator | None = None
    value: Any = Field(default=None, description="Expected value (omit for exists, is_true, ...)")
    value_from: str | None = Field(
        default=None, description="Compare with another input path, context.<x> or params.<x>"
    )
    all_: list[RuleDocument] | None = Field(default=None, alias="all")
    any_: list[RuleDocument] | None = Field(default=None, alias="any")
    not_: RuleDocument | None = Field(default=None, alias="not")
    required: bool = Field(default=True, description="false = scored (soft) rule")
    weight: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    priority: int = Field(default=100, description="Lower numbers are evaluated/reported first")
    message: str | None = Field(default=None, description="Business-language failure message")
    on_fail: Literal[PolicyDecision.DENY, PolicyDecision.REQUIRE_APPROVAL] | None = Field(
        default=None, description="Escalation when this rule fails (REQUIRE_APPROVAL)"
    )

    @property
    def is_group(self) -> bool:
        """Whether this rule is an ``all``/``any``/``not`` group."""
        return self.all_ is not None or self.any_ is not None or self.not_ is not None

    @property
    def group_kind(self) -> str | None:
        """``"all"``, ``"any"``, ``"not"`` or ``None`` for a leaf rule."""
        if self.all_ is not None:
            return "all"
        if self.any_ is not None:
            return "any"
        if self.not_ is not None:
            return "not"
        return None

    @property
    def children(self) -> list[RuleDocument]:
        """A group's rules (empty for a leaf)."""
        if self.all_ is not None:
            return self.all_
        if self.any_ is not None:
            return self.any_
        return [self.not_] if self.not_ is not None else []

    @property
    def has_value(self) -> bool:
        """Whether the document gave ``value`` (``value: null`` counts)."""
        return "value" in self.model_fields_set

    @model_validator(mode="after")
    def _check_shape(self) -> RuleDocument:
        groups = [key for key in _GROUP_KEYS if getattr(self, f"{key}_") is not None]
        if len(groups) > 1:
            raise _problem(f"a rule has one of all/any/not, got {groups}", rule=self.name)
        if groups:
            self._check_group(groups[0])
        else:
            self._check_leaf()
        return self

    def _check_group(self, kind: str) -> None:
        leaf_keys = [
            key
            for key in ("field", "operator", "value", "value_from")
            if key in self.model_fields_set
        ]
        if leaf_keys:
            raise _problem(f"a {kind} group cannot also have {leaf_keys}", rule=self.name)
        if kind != "not" and not self.children:
            raise _problem(f"an {kind} group needs at least one rule", rule=self.name)

    def _check_leaf(self) -> None:
        if self.field is None or self.operator is None:
            raise _problem("a rule needs field and operator, or one of all/any/not", rule=self.name)
        try:
            compile_getter(parse_path(self.field))
        except ValueError as exc:
            raise _problem(f"field: {exc}", rule=self.name) from None
        operator = self.operator.value
        if operator in VALUELESS_OPERATORS:
            if self.has_value or self.value_from is not None:
                raise _problem(f"operator {operator} takes no value", rule=self.name)
            return
        if self.has_value and self.value_from is not None:
            raise _problem("give either value or value_from, not both", rule=self.name)
        if self.value_from is not None:
            try:
                source = parse_path(self.value_from, allow_params=True)
                if source.root != "params":
                    compile_getter(source)
            except ValueError as exc:
                raise _problem(f"value_from: {exc}", rule=self.name) from None
            if source.root != "params" and operator not in VALUE_FROM_OPERATORS:
                raise _problem(
                    f"operator {operator} cannot compare with another field; "
                    "use value or value_from: params.<name>",
                    rule=self.name,
                )
            return
        if not self.has_value:
            raise _problem(f"operator {operator} needs a value (or value_from)", rule=self.name)
        problem = check_value(operator, self.value)
        if problem is not None:
            raise _problem(problem, rule=self.name)

    @model_serializer(mode="wrap")
    def _canonical(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Drop unset optional keys so canonical YAML/JSON (hash, diff) reads like the source,
        # but keep an explicit `value: null` (eq null is a real rule).
        data: dict[str, Any] = handler(self)
        has_value = self.has_value
        return {
            key: item
            for key, item in data.items()
            if item is not None or (key == "value" and has_value)
        }


class TestCaseContext(BaseModel):
    """The evaluation context of a policy test case."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: str
    user_id: str | None = None
    operation: str | None = None
    correlation_id: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    now: datetime | None = None

    @field_validator("now", mode="before")
    @classmethod
    def _aware_now(cls, value: Any) -> Any:
        return _aware(value)


class PolicyTestCase(BaseModel):
    """A test case shipped with a policy: input, context and the decision it must give."""

    __test__ = False  # not a pytest test class

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str | None = None
    input: dict[str, Any]
    context: TestCaseContext | None = None
    expect: PolicyDecision
    failed_rules: list[str] | None = Field(
        default=None, description="Exact set of top-level failed rule names"
    )


class PolicyDocument(BaseModel):
    """A validated policy document (one version of one policy).

    Example:
        >>> doc = PolicyDocument.model_validate({
        ...     "name": "demo", "version": "1.0.0",
        ...     "rules": [{"name": "adult", "field": "age", "operator": "gte", "value": 18}],
        ... })
        >>> doc.rules[0].operator
        <Operator.GTE: 'gte'>
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=200, pattern=POLICY_NAME_PATTERN)
    version: str = Field(description="Semantic version, e.g. 1.0.0")
    category: str = "general"
    tags: list[str] = Field(default_factory=list)
    description: str = ""
    effective_from: datetime | None = None
    effective_until: datetime | None = None
    on_pass: PolicyDecision = PolicyDecision.ALLOW
    on_fail: PolicyDecision = PolicyDecision.DENY
    threshold: float = Field(default=0.0, ge=0.0, le=1.0)
    parameters: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    input_schema: dict[str, Any] | None = Field(
        default=None,
        description="JSON Schema of the input: rule fields and their types are checked against it",
    )
    rules: list[RuleDocument] = Field(min_length=1, max_length=MAX_RULES)
    test_cases: list[PolicyTestCase] = Field(default_factory=list)

    @field_validator("version", mode="before")
    @classmethod
    def _semver(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError(f"must be a semantic version like 1.0.0, got {value!r}")
        semver_key(value)
        return value

    @field_validator("effective_from", "effective_until", mode="before")
    @classmethod
    def _window(cls, value: Any) -> Any:
        return _aware(value)

    @model_validator(mode="after")
    def _check_policy(self) -> PolicyDocument:
        if (
            self.effective_from is not None
            and self.effective_until is not None
            and self.effective_from >= self.effective_until
        ):
            raise _problem("effective_from must be before effective_until")
        seen: dict[str, str] = {}
        count = 0
        for location, depth, rule in iter_rules(self.rules):
            count += 1
            if depth > MAX_NESTING_DEPTH:
                raise _problem(
                    f"rule nesting is deeper than {MAX_NESTING_DEPTH} levels",
                    rule=rule.name,
                    location=location,
                )
            if rule.name in seen:
                raise _problem(
                    f"duplicate rule name {rule.name!r} (also at {seen[rule.name]})",
                    rule=rule.name,
                    location=location,
                )
            seen[rule.name] = location
            self._check_params(rule, location)
        if count > MAX_RULES:
            raise _problem(f"a policy has at most {MAX_RULES} rules, got {count}")
        top_level = {rule.name for rule in self.rules}
        case_names: set[str] = set()
        for case in self.test_cases:
            if case.name in case_names:
                raise _problem(f"duplicate test case name {case.name!r}")
            case_names.add(case.name)
            unknown = sorted(set(case.failed_rules or ()) - top_level)
            if unknown:
                raise _problem(
                    f"test case {case.name!r} expects unknown top-level rules {unknown}",
                    location="test_cases",
                )
        return self

    def _check_params(self, rule: RuleDocument, location: str) -> None:
        if rule.value_from is None or rule.operator is None:
            return
        source = parse_path(rule.value_from, allow_params=True)
        if source.root != "params":
            return
        value = lookup(self.parameters, source.keys)
        if value is MISSING:
            raise _problem(
                f"value_from {rule.value_from!r}: no such parameter",
                rule=rule.name,
                location=location,
            )
        problem = check_value(rule.operator.value, value)
        if problem is not None:
            raise _problem(
                f"value_from {rule.value_from!r}: {problem}", rule=rule.name, location=location
            )

    def canonical(self) -> dict[str, Any]:
        """The JSON-friendly canonical form used for the content hash and diffs."""
        # Without a schema the form (and so the hash) is what it was before input_schema.
        unset = {"input_schema"} if self.input_schema is None else None
        return self.model_dump(mode="json", by_alias=True, exclude=unset)


def iter_rules(
    rules: list[RuleDocument], prefix: str = "rules", depth: int = 1
) -> Iterator[tuple[str, int, RuleDocument]]:
    """Yield ``(location, depth, rule)`` for every rule, depth-first, groups before children."""
    for index, rule in enumerate(rules):
        yield from _iter_rule(rule, f"{prefix}[{index}]", depth)


def _iter_rule(
    rule: RuleDocument, location: str, depth: int
) -> Iterator[tuple[str, int, RuleDocument]]:
    yield location, depth, rule
    kind = rule.group_kind
    if kind == "not" and rule.not_ is not None:
        yield from _iter_rule(rule.not_, f"{location}.not", depth + 1)
    elif kind is not None:
        yield from iter_rules(rule.children, f"{location}.{kind}", depth + 1)


def policy_json_schema() -> dict[str, Any]:
    """Return the JSON Schema of policy documents (for editors and CI checks).

    Example:
        >>> policy_json_schema()["title"]
        'PolicyDocument'
    """
    return PolicyDocument.model_json_schema(by_alias=True)


# --- raw pre-checks and error translation ----------------------------------------------------


def _label(value: Any) -> str | None:
    """``value`` if it can name a policy or rule in a message (short, valid text)."""
    if isinstance(value, str) and len(value) <= 200 and not _SURROGATE.search(value):
        return value
    return None


def _raw_error(
    policy_name: str | None, rule: str | None, location: str, problem: str
) -> PolicyDefinitionError:
    head = f"policy {policy_name!r}: " if policy_name else "policy document: "
    where = f"rule {rule!r} ({location})" if rule else location
    return PolicyDefinitionError(
        f"{head}{where}: {problem}",
        policy_name=policy_name,
        rule_name=rule,
        location=location,
    )


def _raw_depth_check(raw: Mapping[str, Any], policy_name: str | None) -> None:
    """Bound rule nesting and rule count before Pydantic recurses into a hostile document."""
    stack: list[tuple[Any, int, str]] = [(raw.get("rules"), 0, "rules")]
    count = 0
    while stack:
        node, depth, location = stack.pop()
        items: list[tuple[Any, str]] = []
        if isinstance(node, list):
            count += len(node)
            if count > MAX_RULES:
                raise _raw_error(
                    policy_name, None, location, f"a policy has at most {MAX_RULES} rules"
                )
            items = [(item, f"{location}[{index}]") for index, item in enumerate(node)]
        elif isinstance(node, Mapping):
            items = [(node, location)]
        for rule, rule_location in items:
            if not isinstance(rule, Mapping):
                continue
            if depth + 1 > MAX_NESTING_DEPTH:
                raise _raw_error(
                    policy_name,
                    _label(rule.get("name")),
                    rule_location,
                    f"rule nesting is deeper than {MAX_NESTING_DEPTH} levels",
                )
            for key in _GROUP_KEYS:
                if key in rule:
                    stack.append((rule[key], depth + 1, f"{rule_location}.{key}"))


# What a node is to the value walk: the document, a list of rules, a rule, rule data, or
# test-case data (where NaN and infinities are legitimate inputs to test a policy with).
_ROOT, _RULES, _RULE, _DATA, _TEST_DATA = range(5)
_Where = tuple[Any, str | int] | None  # (parent, key): a path built only when reporting
_CONTAINERS: Final = (Mapping, list, tuple)


def _where_text(where: _Where) -> str:
    parts: list[str | int] = []
    while where is not None:
        where, key = where
        parts.append(key)
    text = ""
    for part in reversed(parts):
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            shown = part if _label(part) is not None and part.isprintable() else repr(part[:50])
            text += f".{shown}" if text else shown
    return text or "document"


def _child_role(role: int, key: str) -> int:
    if role == _ROOT:
        return _RULES if key == "rules" else _TEST_DATA if key == "test_cases" else _DATA
    if role == _RULE:
        return _RULES if key in ("all", "any") else _RULE if key == "not" else _DATA
    return _TEST_DATA if role == _TEST_DATA else _DATA


def _scalar_problem(value: Any, role: int) -> str | None:
    """What is wrong with a value that is not a string, list or mapping, or ``None``."""
    if value is None or isinstance(value, bool | date):
        return None
    if isinstance(value, int):
        if value.bit_length() > _MAX_INT_BITS:
            return "integers have at most 1,000 digits"
        return None
    if isinstance(value, float | Decimal):
        finite = value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)
        if finite or role == _TEST_DATA:
            return None
        return f"needs a finite number (NaN and infinities only in test case inputs), got {value!r}"
    return f"a {type(value).__name__} is not a JSON or YAML value"


def _surrogate_problem(text: str) -> str | None:
    if _SURROGATE.search(text):
        shown = repr(text[:50]) + ("..." if len(text) > 50 else "")
        return f"{shown} holds a lone surrogate, which is not text"
    return None


def _raw_values_check(raw: Mapping[str, Any], policy_name: str | None) -> None:
    """Refuse what no JSON/YAML document holds and what would cost too much to validate.

    One iterative walk over the containers, before Pydantic; it stops at the first
    problem, so a hostile dict of millions of values (or a cyclic one) is refused after at
    most :data:`MAX_DOCUMENT_VALUES` steps. Plain ``str``/``int``/``dict``/``list`` nodes
    take the fast branches; anything else goes through the general checks.
    """
    values_left = MAX_DOCUMENT_VALUES
    text_left = MAX_DOCUMENT_TEXT
    too_much_text = f"the document holds more than {MAX_DOCUMENT_TEXT} characters of text"
    stack: list[tuple[Any, int, _Where, str | None, int]] = [(raw, 1, None, None, _ROOT)]
    while stack:
        node, depth, where, rule, role = stack.pop()
        problem: str | None = None
        if depth > MAX_DOCUMENT_DEPTH:
            problem = f"values are nested deeper than {MAX_DOCUMENT_DEPTH} levels"
            raise _raw_error(policy_name, rule, _where_text(where), problem)
        values_left -= len(node)
        if values_left < 0:
            problem = f"the document holds more than {MAX_DOCUMENT_VALUES} values"
            raise _raw_error(policy_name, rule, _where_text(where), problem)
        is_mapping = isinstance(node, Mapping)
        if is_mapping and role == _RULE:
            rule = _label(node.get("name")) or rule
        item_role = _RULE if role == _RULES else _DATA if role == _RULE else role
        containers: list[tuple[Any, int, _Where, str | None, int]] = []
        key: Any  # a str for a mapping (checked first), an int index for a list
        for key, child in node.items() if is_mapping else enumerate(node):
            if is_mapping:
                if not isinstance(key, str):
                    problem = f"keys must be strings, got a key of type {type(key).__name__}"
                    break
                text_left -= len(key)
                if not key.isascii():  # str.isascii() is O(1); the search is not
                    problem = too_much_text if text_left < 0 else _surrogate_problem(key)
                    if problem is not None:
                        break
            # Scalars are checked in place (most nodes); only containers go on the stack.
            kind = type(child)
            if kind is str:
                text_left -= len(child)
                if not child.isascii():
                    problem = too_much_text if text_left < 0 else _surrogate_problem(child)
            elif kind is int:
                if child.bit_length() > _MAX_INT_BITS:
                    problem = "integers have at most 1,000 digits"
            elif kind is dict or kind is list or isinstance(child, _CONTAINERS):
                child_role = _child_role(role, key) if is_mapping else item_role
                containers.append((child, depth + 1, (where, key), rule, child_role))
            elif isinstance(child, str):
                text_left -= len(child)
                problem = too_much_text if text_left < 0 else _surrogate_problem(child)
            elif kind is not bool and child is not None:
                child_role = _child_role(role, key) if is_mapping else item_role
                problem = _scalar_problem(child, child_role)
            if problem is not None:
                raise _raw_error(policy_name, rule, _where_text((where, key)), problem)
        if problem is None and text_left < 0:
            problem = too_much_text
        if problem is not None:  # a bad key, or the text budget spent in this container
            raise _raw_error(policy_name, rule, _where_text(where), problem)
        containers.reverse()  # depth-first in document order: report the first problem
        stack.extend(containers)


def _location_text(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _rule_at(raw: Any, loc: tuple[int | str, ...]) -> str | None:
    """The name of the innermost rule on ``loc`` in the raw document."""
    name: str | None = None
    node = raw
    in_rules = False
    for part in loc:
        if isinstance(node, Mapping) and isinstance(part, str) and part in node:
            node = node[part]
            in_rules = part in ("rules", *_GROUP_KEYS)
            if part == "not" and isinstance(node, Mapping) and isinstance(node.get("name"), str):
                name = node["name"]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
            if in_rules and isinstance(node, Mapping) and isinstance(node.get("name"), str):
                name = node["name"]
        else:
            break
    return name


def _describe_error(error: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
    """A readable problem for one Pydantic error, the rule and location it names if any."""
    kind = error.get("type")
    loc = tuple(error.get("loc", ()))
    context = error.get("ctx") or {}
    if kind == "policy_definition":
        return str(context.get("problem")), context.get("rule"), context.get("location")
    last = loc[-1] if loc else None
    if kind == "enum" and last == "operator":
        known = ", ".join(sorted(OPERATORS))
        return f"unknown operator {error.get('input')!r}; known operators: {known}", None, None
    if kind == "extra_forbidden":
        return f"unknown key {last!r}", None, None
    if kind == "missing":
        return f"missing required key {last!r}", None, None
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return message, None, None


def definition_error(raw: Any, exc: ValidationError) -> PolicyDefinitionError:
    """Translate a Pydantic ``ValidationError`` into one :class:`PolicyDefinitionError`."""
    policy_name = raw.get("name") if isinstance(raw, Mapping) else None
    policy_label = policy_name if isinstance(policy_name, str) else None
    lines: list[str] = []
    first_rule: str | None = None
    first_location: str | None = None
    for error in exc.errors():
        loc = tuple(error.get("loc", ()))
        problem, rule, location = _describe_error(error)
        rule = rule or _rule_at(raw, loc)
        location = location or _location_text(loc) or "document"
        where = f"rule {rule!r} ({location})" if rule else location
        lines.append(f"{where}: {problem}")
        if first_location is None:
            first_rule, first_location = rule, location
    head = f"policy {policy_label!r}: " if policy_label else "policy document: "
    message = head + "; ".join(lines)
    return PolicyDefinitionError(
        message,
        policy_name=policy_label,
        rule_name=first_rule,
        location=first_location,
        metadata={"problems": lines},
    )


def parse_policy_document(document: Mapping[str, Any] | PolicyDocument) -> PolicyDocument:
    """Validate a raw document (dict from YAML/JSON) into a :class:`PolicyDocument`.

    Args:
        document: The raw mapping, or an already validated document (returned as is).

    Returns:
        The validated document.

    Raises:
        PolicyDefinitionError: Anything wrong with the document; the message names the
            policy, the rule, where in the document, and the problem.
    """
    if isinstance(document, PolicyDocument):
        return document
    if not isinstance(document, Mapping):
        raise PolicyDefinitionError(
            f"a policy document must be a mapping, got {type(document).__name__}",
            location="document",
        )
    policy_name = _label(document.get("name"))
    _raw_depth_check(document, policy_name)
    _raw_values_check(document, policy_name)
    try:
        return PolicyDocument.model_validate(dict(document))
    except ValidationError as exc:
        raise definition_error(document, exc) from None
