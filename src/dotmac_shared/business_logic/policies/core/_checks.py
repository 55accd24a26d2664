"""Static checks of a validated policy document: what no input could change.

:func:`check_policy` reads a document (no evaluation, no I/O) and returns
:class:`Finding` objects, each with a severity, a stable code, the policy, the rule and
where it is. Registration refuses a document with any error
(:func:`raise_for_errors`, called by the registry); warnings stay available as
``Policy.warnings`` and ``dotmac-bl policy check`` prints both.

=========================  ========  ====================================================
code                       severity  meaning
=========================  ========  ====================================================
``never-passes``           error     a required rule (or the required rules together)
                                     can never pass: the policy never decides ``on_pass``
``threshold-unreachable``  error     the scored rules that can pass weigh too little to
                                     reach ``threshold``
``type-mismatch``          error     the operator cannot pass for the type the
                                     ``input_schema`` declares for the field
``unknown-field``          error     the field (or ``value_from``) path is not in the
                                     ``input_schema``
``invalid-input-schema``   error     the ``input_schema`` is not one this checker reads
``dead-rule``              warning   a rule that can never pass where the policy can still
                                     pass without it (an ``any`` branch, a scored rule)
``always-passes``          warning   a rule that passes for every input
``duplicate-rule``         warning   a rule repeats a sibling (same field, operator, value)
``shadowed-rule``          warning   a sibling implies the rule in an ``all`` group (or the
                                     rule implies a sibling in an ``any`` group)
``threshold-ignored``      warning   ``threshold`` is set but no scored rule weighs anything
=========================  ========  ====================================================

How it reasons. Each rule is abstracted as two sets of inputs, one inside and one around
the inputs it passes (an under- and an over-approximation), each a *box*: for some field
paths, the set of values the field may take (missing, null, true, false, NaN, numbers as
unions of intervals, strings as finite or co-finite sets, and "any other value"). Boxes
meet exactly (``all``), join per field (``any``) and complement per field (``not``);
anything a box cannot say exactly (``regex``, ``value_from`` another field, values that are
lists) widens the outer set and narrows the inner one. So a rule is reported as never
passing only when its outer set is empty, and as always passing only when its inner set
is everything: the claims are sound for inputs of JSON types (plus ``Decimal``, dates and
the non-finite floats), checked against the evaluator by a property test.

A ``field`` and its sub-fields (``a`` and ``a.b``) are treated as independent, so some
contradictions across them go unreported; an ``exists`` rule next to a comparison of the
same field is not reported as shadowed (it is there to give the missing case its own
message); shadowing is looked for within a budget of :data:`MAX_SHADOW_WORK` comparisons.

``input_schema`` is a JSON Schema object for the input. This checker reads ``type``,
``properties``, ``additionalProperties``, ``items``, ``prefixItems``, local ``$ref``
(``#/...``) and ``anyOf``/``oneOf``/``allOf``; a key not listed in ``properties`` is
absent unless ``additionalProperties`` allows it. Only input paths are checked
(``context.*`` and ``params.*`` are not part of the input).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from dotmac_shared.business_logic.exceptions import PolicyDefinitionError
from dotmac_shared.business_logic.policies.core._check_domain import (
    ANY_INPUT,
    MAX_SET_PARTS,
    MISSING_VALUE,
    Box,
    PathKey,
    ValueSet,
    box_le,
    box_size,
    describe_values,
    dynamic_pair,
    exact_number,
    field_box,
    invert_around,
    invert_inside,
    join_around,
    join_inside,
    may_imply,
    meet,
    static_pair,
)
from dotmac_shared.business_logic.policies.core._check_schema import InputSchema, InputSchemaError
from dotmac_shared.business_logic.policies.core._document import (
    PolicyDocument,
    RuleDocument,
    parse_policy_document,
)
from dotmac_shared.business_logic.policies.core._paths import (
    CONTEXT_FIELDS,
    MISSING,
    lookup,
    parse_path,
)

if TYPE_CHECKING:
    from dotmac_shared.business_logic.policies.core._compiler import Policy

__all__ = [
    "CHECK_CODES",
    "MAX_SET_PARTS",
    "MAX_SHADOW_WORK",
    "Finding",
    "Severity",
    "check_policy",
    "raise_for_errors",
]

MAX_SHADOW_WORK: Final = 100_000
"""Intervals and strings compared while looking for shadowed rules in one policy; when
they are spent, the remaining pairs of rules are not compared (a bound on hostile input)."""
_SCORE_EPSILON: Final = 1e-9  # the compiler's tolerance for weighted scores
_MAX_SEARCH_STEPS: Final = 10_000
_MAX_SEARCH_RULES: Final = 32


class Severity(enum.StrEnum):
    """How bad a finding is."""

    ERROR = "error"  # registration refuses the document
    WARNING = "warning"  # reported; the document is registered


CHECK_CODES: Final[Mapping[str, Severity]] = {
    "never-passes": Severity.ERROR,
    "threshold-unreachable": Severity.ERROR,
    "type-mismatch": Severity.ERROR,
    "unknown-field": Severity.ERROR,
    "invalid-input-schema": Severity.ERROR,
    "dead-rule": Severity.WARNING,
    "always-passes": Severity.WARNING,
    "duplicate-rule": Severity.WARNING,
    "shadowed-rule": Severity.WARNING,
    "threshold-ignored": Severity.WARNING,
}
"""Every finding code and its severity."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem a static check found in a policy document.

    Attributes:
        severity: ``error`` (registration refuses the document) or ``warning``.
        code: A stable code from :data:`CHECK_CODES`, e.g. ``never-passes``.
        policy: The policy's name.
        version: The policy's version.
        rule: The rule the finding is about (``None`` for the whole policy).
        location: Where in the document, e.g. ``rules[2].all[0]`` or ``threshold``.
        message: What is wrong, in words.
    """

    severity: Severity
    code: str
    policy: str
    version: str
    rule: str | None
    location: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        """The finding as a JSON-friendly mapping."""
        return {
            "severity": self.severity.value,
            "code": self.code,
            "policy": self.policy,
            "version": self.version,
            "rule": self.rule,
            "location": self.location,
            "message": self.message,
        }

    def __str__(self) -> str:
        where = f"rule {self.rule!r} ({self.location})" if self.rule else self.location
        return f"{self.severity.value} {self.code}: policy {self.policy!r}: {where}: {self.message}"


# --- the checker ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Node:
    """One rule with what the checker worked out about it."""

    rule: RuleDocument
    location: str
    parent: _Node | None
    top: _Node | None  # the top-level rule this one is under (itself at the top)
    inside: Box = None
    around: Box = None
    children: list[_Node] = field(default_factory=list)
    key: PathKey | None = None  # the field path of a leaf
    field_values: ValueSet | None = None  # what a leaf may pass on its field

    @property
    def never(self) -> bool:
        return self.around is None

    @property
    def always(self) -> bool:
        return self.inside == ANY_INPUT


def _path_key(text: str) -> PathKey:
    path = parse_path(text)
    if path.root == "context":
        keys = path.keys
        if keys[0] not in CONTEXT_FIELDS and keys[0] not in ("now", "attributes"):
            keys = ("attributes", *keys)  # context.region is context.attributes.region
        return ("context", *keys)
    return ("input", *path.keys)


class _Checker:
    def __init__(self, document: PolicyDocument) -> None:
        self.document = document
        self.findings: list[Finding] = []
        self.field_names: dict[PathKey, str] = {}
        self.work_left = MAX_SHADOW_WORK

    def add(self, code: str, rule: RuleDocument | None, location: str, message: str) -> None:
        self.findings.append(
            Finding(
                CHECK_CODES[code],
                code,
                self.document.name,
                self.document.version,
                rule.name if rule is not None else None,
                location,
                message,
            )
        )

    # -- abstraction --

    def build(self, rule: RuleDocument, location: str, parent: _Node | None) -> _Node:
        node = _Node(rule, location, parent, parent.top if parent is not None else None)
        if node.top is None:
            node.top = node
        kind = rule.group_kind
        if kind is None:
            self.leaf(node)
            return node
        if kind == "not":
            assert rule.not_ is not None  # guaranteed by validation
            child = self.build(rule.not_, f"{location}.not", node)
            node.children = [child]
            node.inside = invert_inside(child.around)
            node.around = invert_around(child.inside)
            return node
        node.children = [
            self.build(child, f"{location}.{kind}[{index}]", node)
            for index, child in enumerate(rule.children)
        ]
        if kind == "all":
            inside: Box = {}
            around: Box = {}
            for child_node in node.children:
                inside = meet(inside, child_node.inside, outward=False)
                around = meet(around, child_node.around, outward=True)
        else:
            inside = around = None
            for child_node in node.children:
                inside = join_inside(inside, child_node.inside)
                around = join_around(around, child_node.around)
        node.inside, node.around = inside, around
        return node

    def leaf(self, node: _Node) -> None:
        rule = node.rule
        assert rule.field is not None and rule.operator is not None
        operator = rule.operator.value
        key = _path_key(rule.field)
        self.field_names.setdefault(key, rule.field)
        source = parse_path(rule.value_from, allow_params=True) if rule.value_from else None
        value = rule.value
        if source is not None and source.root == "params":
            value = lookup(self.document.parameters, source.keys)
        if source is not None and (source.root != "params" or value is MISSING):
            inside, around = dynamic_pair(operator)  # (a missing parameter is refused earlier)
        else:
            inside, around = static_pair(operator, value)
        node.key = key
        node.field_values = around
        node.inside = field_box(key, inside, outward=False)
        node.around = field_box(key, around, outward=True)

    # -- reports --

    def field_name(self, key: PathKey) -> str:
        return self.field_names.get(key, ".".join(str(part) for part in key[1:]))

    def conflict(self, nodes: list[_Node]) -> tuple[_Node, list[_Node], str] | None:
        """The first rule that cannot pass together with the ones before it."""
        around: Box = {}
        for index, node in enumerate(nodes):
            met = meet(around, node.around, outward=True)
            if met is None and around is not None and node.around is not None:
                keys = [
                    key
                    for key, values in node.around.items()
                    if key in around and (around[key] & values).empty
                ]
                earlier = [
                    other
                    for other in nodes[:index]
                    if other.around is not None and any(key in other.around for key in keys)
                ]
                name = self.field_name(keys[0]) if keys else "the input"
                return node, earlier, name
            around = met
        return None

    def report_never(self, node: _Node, fatal: bool) -> None:
        rule = node.rule
        kind = rule.group_kind
        if kind == "not":
            detail = f"its rule {node.children[0].rule.name!r} passes for every input"
        elif kind == "all":
            found = self.conflict(node.children)
            if found is not None:
                culprit, earlier, name = found
                names = ", ".join(repr(other.rule.name) for other in [*earlier, culprit])
                detail = f"no value of {name} satisfies its rules {names} together"
            else:
                detail = "its rules cannot all pass together"
        elif kind == "any":
            detail = "none of its rules can pass"
        else:
            detail = f"no value of {rule.field} satisfies {self.describe_leaf(rule)}"
        if fatal:
            self.add("never-passes", rule, node.location, f"never passes: {detail}")
        else:
            self.add(
                "dead-rule",
                rule,
                node.location,
                f"never passes ({detail}); the policy can still pass without it",
            )

    @staticmethod
    def describe_leaf(rule: RuleDocument) -> str:
        assert rule.operator is not None
        if rule.value_from is not None:
            return f"{rule.operator.value} {rule.value_from}"
        if rule.has_value:
            return f"{rule.operator.value} {rule.value!r:.60}"
        return rule.operator.value

    def fatal(self, node: _Node) -> bool:
        """Whether a never-passing rule makes a required top-level rule never pass."""
        top = node.top
        assert top is not None
        return top.never and top.rule.required

    def walk(self, node: _Node) -> Iterator[_Node]:
        yield node
        for child in node.children:
            yield from self.walk(child)

    def report_statuses(self, tops: list[_Node]) -> None:
        for top in tops:
            for node in self.walk(top):
                parent_is_not = node.parent is not None and node.parent.rule.group_kind == "not"
                if parent_is_not:
                    continue  # the `not` reports it (its status is the opposite)
                if node.never and not any(child.never for child in node.children):
                    self.report_never(node, self.fatal(node))
                elif node.always and not any(child.always for child in node.children):
                    self.add(
                        "always-passes",
                        node.rule,
                        node.location,
                        f"passes for every input: {self.always_detail(node)}",
                    )

    def always_detail(self, node: _Node) -> str:
        kind = node.rule.group_kind
        if kind == "not":
            return f"its rule {node.children[0].rule.name!r} never passes"
        if kind == "any":
            return "its rules together cover every value"
        return "no value fails it"

    def report_siblings(self, nodes: list[_Node], kind: str) -> None:
        """Duplicates among siblings; shadowed rules in an all/any group."""
        seen: dict[Any, _Node] = {}
        duplicates: set[int] = set()
        for node in nodes:
            identity = _rule_identity(node.rule)
            first = seen.get(identity)
            if first is None:
                seen[identity] = node
                continue
            duplicates.add(id(node))
            self.add(
                "duplicate-rule",
                node.rule,
                node.location,
                f"repeats rule {first.rule.name!r} ({first.location}): same test",
            )
        live = [
            node
            for node in nodes
            if not node.never and not node.always and id(node) not in duplicates
        ]
        if len(live) < 2:
            return
        for index, node in enumerate(live):
            if node.rule.operator is not None and node.rule.operator.value == "exists":
                continue
            for other_index, other in enumerate(live):
                if other is node:
                    continue
                # all: `node` adds nothing if `other` implies it; any: if it implies `other`.
                small, large = (other, node) if kind == "all" else (node, other)
                if not may_imply(small.around, large.inside):
                    continue
                self.work_left -= box_size(small.around) + box_size(large.inside) + 1
                if self.work_left < 0:
                    return
                redundant = box_le(small.around, large.inside)
                mutual = redundant and box_le(large.around, small.inside)
                if redundant and not (mutual and index < other_index):
                    verb = "implies" if kind == "all" else "is implied by"
                    why = "it adds nothing to the all" if kind == "all" else "it adds nothing"
                    self.add(
                        "shadowed-rule",
                        node.rule,
                        node.location,
                        f"rule {other.rule.name!r} ({other.location}) {verb} it: {why}",
                    )
                    break

    def report_groups(self, tops: list[_Node]) -> None:
        required = [node for node in tops if node.rule.required]
        self.report_siblings(required, "all")
        scored = [node for node in tops if not node.rule.required]
        if scored:
            self.report_siblings_duplicates_only(tops)
        for top in tops:
            for node in self.walk(top):
                kind = node.rule.group_kind
                if kind in ("all", "any"):
                    self.report_siblings(node.children, kind)

    def report_siblings_duplicates_only(self, tops: list[_Node]) -> None:
        """Duplicates between scored rules and the others at the top level."""
        required = {id(node) for node in tops if node.rule.required}
        seen: dict[Any, _Node] = {}
        for node in tops:
            identity = _rule_identity(node.rule)
            first = seen.get(identity)
            if first is None:
                seen[identity] = node
            elif id(node) not in required or id(first) not in required:
                self.add(
                    "duplicate-rule",
                    node.rule,
                    node.location,
                    f"repeats rule {first.rule.name!r} ({first.location}): same test",
                )

    def report_required_together(self, tops: list[_Node]) -> Box:
        """The required top-level rules must be able to pass together."""
        required = [node for node in tops if node.rule.required]
        if any(node.never for node in required):
            return None
        found = self.conflict(required)
        if found is None:
            around: Box = {}
            for node in required:
                around = meet(around, node.around, outward=True)
            return around
        culprit, earlier, name = found
        names = ", ".join(repr(other.rule.name) for other in earlier)
        self.add(
            "never-passes",
            culprit.rule,
            culprit.location,
            f"never passes together with the required rule(s) {names}: "
            f"no value of {name} satisfies them all, so the policy never decides "
            f"{self.document.on_pass.value}",
        )
        return None

    def report_threshold(self, tops: list[_Node], required: Box) -> None:
        document = self.document
        scored = [node for node in tops if not node.rule.required]
        total = sum(node.rule.weight for node in scored)
        if document.threshold <= 0:
            return
        if total <= 0:
            why = "no scored rules (required: false)" if not scored else "scored rules of weight 0"
            self.add(
                "threshold-ignored",
                None,
                "threshold",
                f"threshold {document.threshold} has no effect: the policy has {why}",
            )
            return
        if required is None and any(node.rule.required for node in tops):
            return  # the policy never passes; reported already
        reachable = self.best_score(required, scored)
        # The smaller of the compiler's two tolerances (evaluate and is_allowed).
        needed = document.threshold * total - _SCORE_EPSILON * max(total, 1.0)
        if reachable < needed:
            self.add(
                "threshold-unreachable",
                None,
                "threshold",
                f"threshold {document.threshold} needs a weighted score of "
                f"{document.threshold * total:g} of {total:g}, but the scored rules that can "
                f"pass with the required ones weigh at most {reachable:g}",
            )

    @staticmethod
    def best_score(required: Box, scored: list[_Node]) -> float:
        """At most the weight of scored rules that can pass together with the required ones.

        A bounded branch and bound over subsets of the scored rules; with too many rules, or
        when the bound on the search is spent, the sum of the weights of those that can each
        pass alone.
        """
        live = sorted(
            (node for node in scored if meet(required, node.around, outward=True) is not None),
            key=lambda node: -node.rule.weight,
        )
        alone = sum(node.rule.weight for node in live)
        steps_left = _MAX_SEARCH_STEPS
        best = 0.0

        def search(index: int, box: Box, gained: float, rest: float) -> bool:
            nonlocal best, steps_left
            steps_left -= 1
            if steps_left < 0:
                return False
            best = max(best, gained)
            if index == len(live) or gained + rest <= best:
                return True
            node = live[index]
            weight = node.rule.weight
            met = meet(box, node.around, outward=True)
            if met is not None and not search(index + 1, met, gained + weight, rest - weight):
                return False
            return search(index + 1, box, gained, rest - weight)

        if len(live) > _MAX_SEARCH_RULES:
            return alone
        return best if search(0, required, 0.0, alone) else alone

    def report_schema(self, tops: list[_Node]) -> None:
        schema_document = self.document.input_schema
        if schema_document is None:
            return
        schema = InputSchema(schema_document)
        try:
            schema.alternatives(schema_document)
        except InputSchemaError as exc:
            self.add("invalid-input-schema", None, "input_schema", str(exc))
            return
        for top in tops:
            for node in self.walk(top):
                rule = node.rule
                if rule.field is None or rule.operator is None:
                    continue
                paths = [("field", rule.field)]
                if rule.value_from is not None and not rule.value_from.startswith("params."):
                    paths.append(("value_from", rule.value_from))
                for what, text in paths:
                    key = _path_key(text)
                    if key[0] != "input":
                        continue
                    try:
                        found = schema.lookup(key[1:])
                    except InputSchemaError as exc:
                        self.add("invalid-input-schema", rule, node.location, f"{text}: {exc}")
                        return
                    if found.absent_at is not None:
                        missing = _path_text(key[1 : found.absent_at + 2])
                        self.add(
                            "unknown-field",
                            rule,
                            node.location,
                            f"{what} {text!r}: input_schema has no {missing!r}",
                        )
                    elif what == "field" and found.types is not None:
                        assert node.field_values is not None
                        if (node.field_values & (found.types | MISSING_VALUE)).empty:
                            self.add(
                                "type-mismatch",
                                rule,
                                node.location,
                                f"{self.describe_leaf(rule)} can pass only for a "
                                f"{describe_values(node.field_values)}, but input_schema "
                                f"declares {text} as {describe_values(found.types)}",
                            )

    def run(self) -> list[Finding]:
        tops = [
            self.build(rule, f"rules[{index}]", None)
            for index, rule in enumerate(self.document.rules)
        ]
        self.report_statuses(tops)
        required = self.report_required_together(tops)
        self.report_threshold(tops, required)
        self.report_groups(tops)
        self.report_schema(tops)
        order = {Severity.ERROR: 0, Severity.WARNING: 1}
        return sorted(self.findings, key=lambda finding: order[finding.severity])


def _path_text(keys: PathKey) -> str:
    text = ""
    for key in keys:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else key)
    return text


def _value_identity(value: Any) -> Any:
    """A hashable stand-in for a value such that equal values (1 == 1.0) share it."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    if isinstance(value, int | float | Decimal):
        number = exact_number(value)
        return ("number", _digits(number) if number is not None else repr(value))
    if isinstance(value, list | tuple):
        return ("list", tuple(_value_identity(item) for item in value))
    if isinstance(value, Mapping):
        return ("map", tuple(sorted((str(k), _value_identity(v)) for k, v in value.items())))
    return (type(value).__name__, repr(value))


def _digits(number: Decimal) -> tuple[int, tuple[int, ...], int]:
    """Sign, digits and exponent of ``number`` without trailing zeros.

    Exact, unlike ``Decimal.normalize``, which rounds to the context's precision.
    """
    if not number:
        return (0, (), 0)
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite: exact_number returns finite numbers only
    end = len(digits)
    while digits[end - 1] == 0:
        end -= 1
    return (sign, digits[:end], exponent + len(digits) - end)


def _rule_identity(rule: RuleDocument) -> Any:
    """What a rule tests (not its name, message, weight or priority)."""
    kind = rule.group_kind
    if kind is not None:
        return (kind, tuple(_rule_identity(child) for child in rule.children))
    value = _value_identity(rule.value) if rule.has_value else None
    operator = rule.operator.value if rule.operator is not None else None
    return ("leaf", rule.field, operator, value, rule.value_from)


def check_policy(document: PolicyDocument | Mapping[str, Any] | Policy) -> list[Finding]:
    """Statically check a policy document; errors first, then warnings.

    Args:
        document: A :class:`PolicyDocument`, a raw mapping (validated first), or a compiled
            ``Policy`` (its document is checked).

    Returns:
        Every finding, errors before warnings; empty when nothing is wrong.

    Raises:
        PolicyDefinitionError: ``document`` is a raw mapping that does not validate, or
            not a document at all.

    Example:
        >>> findings = check_policy({
        ...     "name": "demo", "version": "1.0.0",
        ...     "rules": [
        ...         {"name": "high", "field": "score", "operator": "gte", "value": 600},
        ...         {"name": "low", "field": "score", "operator": "lt", "value": 500},
        ...     ],
        ... })
        >>> [(finding.severity.value, finding.code, finding.rule) for finding in findings]
        [('error', 'never-passes', 'low')]
    """
    inner = getattr(document, "document", None)
    if isinstance(inner, PolicyDocument):
        return _Checker(inner).run()
    if isinstance(document, PolicyDocument | Mapping):
        return _Checker(parse_policy_document(document)).run()
    raise PolicyDefinitionError(
        f"a policy document must be a mapping, got {type(document).__name__}",
        location="document",
    )


def raise_for_errors(findings: list[Finding] | tuple[Finding, ...]) -> None:
    """Raise a :class:`PolicyDefinitionError` if any finding is an error.

    The message names the policy, then each error's rule, location and problem; the
    exception's ``rule_name`` and ``location`` are the first error's, its metadata holds
    every error (``findings``) and the first one's ``code``.

    Raises:
        PolicyDefinitionError: At least one finding is an error.
    """
    errors = [finding for finding in findings if finding.severity is Severity.ERROR]
    if not errors:
        return
    first = errors[0]
    parts = []
    for finding in errors:
        where = f"rule {finding.rule!r} ({finding.location})" if finding.rule else finding.location
        parts.append(f"{where}: {finding.message} [{finding.code}]")
    raise PolicyDefinitionError(
        f"policy {first.policy!r} version {first.version}: " + "; ".join(parts),
        policy_name=first.policy,
        rule_name=first.rule,
        location=first.location,
        metadata={"code": first.code, "findings": [finding.to_dict() for finding in errors]},
    )
