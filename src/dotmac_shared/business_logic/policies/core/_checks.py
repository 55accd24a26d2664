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
message); shadowing is looked for among at most :data:`MAX_PAIR_CHECKS` pairs of rules.

``input_schema`` is a JSON Schema object for the input. This checker reads ``type``,
``properties``, ``additionalProperties``, ``items``, ``prefixItems``, local ``$ref``
(``#/...``) and ``anyOf``/``oneOf``/``allOf``; a key not listed in ``properties`` is
absent unless ``additionalProperties`` allows it. Only input paths are checked
(``context.*`` and ``params.*`` are not part of the input).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Final

from dotmac_shared.business_logic.exceptions import PolicyDefinitionError
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
    "MAX_SHADOW_WORK",
    "MAX_SET_PARTS",
    "Finding",
    "Severity",
    "check_policy",
    "raise_for_errors",
]

MAX_SHADOW_WORK: Final = 100_000
"""Intervals and strings compared while looking for shadowed rules in one policy; when
they are spent, the remaining pairs of rules are not compared (a bound on hostile input)."""
MAX_SET_PARTS: Final = 256
"""Intervals (or strings) one field's value set keeps exactly; a larger one is widened."""
_SCORE_EPSILON: Final = 1e-9  # the compiler's tolerance for weighted scores
_MAX_REF_HOPS: Final = 32
_MAX_CANDIDATES: Final = 64
_MAX_SEARCH_STEPS: Final = 10_000
_MAX_SEARCH_RULES: Final = 32
_EXACT_FLOAT_LIMIT: Final = 2**53


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


# --- numbers: unions of intervals over the extended reals ------------------------------------

_NEG_INF: Final = Decimal("-Infinity")
_POS_INF: Final = Decimal("Infinity")
_Interval = tuple[Decimal, bool, Decimal, bool]  # low, low included, high, high included
_Numbers = tuple[_Interval, ...]  # sorted, disjoint, none empty
_ALL_NUMBERS: Final[_Numbers] = ((_NEG_INF, True, _POS_INF, True),)


def _exact(value: Any) -> Decimal | None:
    """``value`` as the Decimal the evaluator compares with, or ``None`` if that is unsure.

    The evaluator compares a float bound through its shortest repr (with Decimal inputs)
    and exactly (with int inputs); the two agree except for huge floats, left unknown.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if not math.isfinite(value):
        return None
    shown = Decimal(repr(value))
    if abs(value) >= _EXACT_FLOAT_LIMIT and Fraction(value) != Fraction(shown):
        return None
    return shown


def _empty_interval(interval: _Interval) -> bool:
    low, low_in, high, high_in = interval
    return low > high or (low == high and not (low_in and high_in))


def _normalize(intervals: list[_Interval]) -> _Numbers:
    ordered = sorted(
        (item for item in intervals if not _empty_interval(item)),
        key=lambda item: (item[0], not item[1]),
    )
    merged: list[_Interval] = []
    for low, low_in, high, high_in in ordered:
        if merged:
            last_low, last_low_in, last_high, last_high_in = merged[-1]
            touches = low < last_high or (low == last_high and (low_in or last_high_in))
            if touches:
                if high > last_high:
                    merged[-1] = (last_low, last_low_in, high, high_in)
                elif high == last_high:
                    merged[-1] = (last_low, last_low_in, high, high_in or last_high_in)
                continue
        merged.append((low, low_in, high, high_in))
    return tuple(merged)


def _intersect(left: _Numbers, right: _Numbers) -> _Numbers:
    result: list[_Interval] = []
    i = j = 0
    while i < len(left) and j < len(right):
        a_low, a_low_in, a_high, a_high_in = left[i]
        b_low, b_low_in, b_high, b_high_in = right[j]
        if a_low > b_low:
            low, low_in = a_low, a_low_in
        elif b_low > a_low:
            low, low_in = b_low, b_low_in
        else:
            low, low_in = a_low, a_low_in and b_low_in
        if a_high < b_high:
            high, high_in = a_high, a_high_in
            i += 1
        elif b_high < a_high:
            high, high_in = b_high, b_high_in
            j += 1
        else:
            high, high_in = a_high, a_high_in and b_high_in
            i += 1
            j += 1
        if not _empty_interval((low, low_in, high, high_in)):
            result.append((low, low_in, high, high_in))
    return tuple(result)


def _complement(numbers: _Numbers) -> _Numbers:
    result: list[_Interval] = []
    low, low_in = _NEG_INF, True
    for item_low, item_low_in, item_high, item_high_in in numbers:
        result.append((low, low_in, item_low, not item_low_in))
        low, low_in = item_high, not item_high_in
    result.append((low, low_in, _POS_INF, True))
    return tuple(item for item in result if not _empty_interval(item))  # already in order


# --- the values one field may take -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Values:
    """A set of values of one field: flags per kind, numbers, strings, everything else."""

    missing: bool = False
    null: bool = False
    true: bool = False
    false: bool = False
    nan: bool = False
    other: bool = False  # lists, objects, dates: all of them or none
    numbers: _Numbers = ()
    strings: frozenset[str] = frozenset()
    cofinite: bool = False  # strings = every string except ``strings``

    def __and__(self, other: _Values) -> _Values:
        if self.cofinite and other.cofinite:
            strings, cofinite = self.strings | other.strings, True
        elif self.cofinite:
            strings, cofinite = other.strings - self.strings, False
        elif other.cofinite:
            strings, cofinite = self.strings - other.strings, False
        else:
            strings, cofinite = self.strings & other.strings, False
        return _Values(
            self.missing and other.missing,
            self.null and other.null,
            self.true and other.true,
            self.false and other.false,
            self.nan and other.nan,
            self.other and other.other,
            _intersect(self.numbers, other.numbers),
            strings,
            cofinite,
        )

    def __invert__(self) -> _Values:
        return _Values(
            not self.missing,
            not self.null,
            not self.true,
            not self.false,
            not self.nan,
            not self.other,
            _complement(self.numbers),
            self.strings,
            not self.cofinite,
        )

    def __or__(self, other: _Values) -> _Values:
        if self.cofinite and other.cofinite:
            strings, cofinite = self.strings & other.strings, True
        elif self.cofinite:
            strings, cofinite = self.strings - other.strings, True
        elif other.cofinite:
            strings, cofinite = other.strings - self.strings, True
        else:
            strings, cofinite = self.strings | other.strings, False
        return _Values(
            self.missing or other.missing,
            self.null or other.null,
            self.true or other.true,
            self.false or other.false,
            self.nan or other.nan,
            self.other or other.other,
            _normalize([*self.numbers, *other.numbers]),
            strings,
            cofinite,
        )

    def __sub__(self, other: _Values) -> _Values:
        return self & ~other

    @property
    def empty(self) -> bool:
        """Whether no value is in the set."""
        return not (
            self.missing
            or self.null
            or self.true
            or self.false
            or self.nan
            or self.other
            or self.numbers
            or self.strings
            or self.cofinite
        )

    def __le__(self, other: _Values) -> bool:
        return (self - other).empty


def _bounded(values: _Values, *, outward: bool) -> _Values:
    """``values`` with at most :data:`MAX_SET_PARTS` intervals and strings.

    A larger set is widened (``outward``: to every number or every string) or narrowed
    (to none): the analysis stays sound and each set operation stays cheap.
    """
    numbers, strings, cofinite = values.numbers, values.strings, values.cofinite
    if len(numbers) > MAX_SET_PARTS:
        numbers = _ALL_NUMBERS if outward else ()
    if len(strings) > MAX_SET_PARTS:
        strings, cofinite = frozenset(), outward
    if numbers is values.numbers and strings is values.strings:
        return values
    return _Values(
        values.missing,
        values.null,
        values.true,
        values.false,
        values.nan,
        values.other,
        numbers,
        strings,
        cofinite,
    )


_NOTHING: Final = _Values()
_EVERYTHING: Final = ~_NOTHING
_MISSING_VALUE: Final = _Values(missing=True)
_NULL: Final = _Values(null=True)
_PRESENT: Final = _EVERYTHING - _MISSING_VALUE
_PRESENT_NOT_NULL: Final = _PRESENT - _NULL
_ANY_NUMBER: Final = _Values(numbers=_ALL_NUMBERS)
_ANY_STRING: Final = _Values(cofinite=True)
_ANY_OTHER: Final = _Values(other=True)
_CONTAINERS: Final = _ANY_STRING | _ANY_OTHER
_ORDERED: Final = _ANY_NUMBER | _ANY_STRING | _ANY_OTHER


def _describe_values(values: _Values) -> str:
    """A short description of a value set, for messages about declared types."""
    kinds = []
    if values.numbers or values.nan:
        kinds.append("number")
    if values.strings or values.cofinite:
        kinds.append("string")
    if values.true or values.false:
        kinds.append("boolean")
    if values.null:
        kinds.append("null")
    if values.other:
        kinds.append("list, object or date")
    return " or ".join(kinds) or "nothing"


# --- what one rule passes: (inside, around) ------------------------------------------------------

_Pair = tuple[_Values, _Values]  # under- and over-approximation of one field's passing values


def _equal_to(value: Any) -> _Pair:
    """Values ``eq value`` passes (also one member of ``in``)."""
    if value is None:
        return _NULL, _NULL
    if isinstance(value, bool):
        exact = _Values(true=True) if value else _Values(false=True)
        return exact, exact
    if isinstance(value, int | float | Decimal):
        number = _exact(value)
        if number is None:
            return _NOTHING, _ANY_NUMBER
        exact = _Values(numbers=((number, True, number, True),))
        return exact, exact
    if isinstance(value, str):
        exact = _Values(strings=frozenset((value,)))
        return exact, exact
    return _NOTHING, _ANY_OTHER


def _member_of(values: Any) -> _Pair:
    """Values ``in values`` passes, built in one pass (lists may be long)."""
    null = true = false = other = inexact = False
    points: list[_Interval] = []
    strings: set[str] = set()
    for value in values:
        if value is None:
            null = True
        elif value is True:
            true = True
        elif value is False:
            false = True
        elif isinstance(value, str):
            strings.add(value)
        elif isinstance(value, int | float | Decimal):
            number = _exact(value)
            if number is None:
                inexact = True
            else:
                points.append((number, True, number, True))
        else:
            other = True
    numbers = _normalize(points)
    inside = _Values(null=null, true=true, false=false, numbers=numbers, strings=frozenset(strings))
    around = _Values(
        null=null,
        true=true,
        false=false,
        other=other,
        numbers=_ALL_NUMBERS if inexact else numbers,
        strings=frozenset(strings),
    )
    return _bounded(inside, outward=False), _bounded(around, outward=True)


def _negated(pair: _Pair) -> _Pair:
    """``ne``/``not_in``: the complement of the positive test, minus a missing field."""
    inside, around = pair
    return ~around - _MISSING_VALUE, ~inside - _MISSING_VALUE


def _order_interval(operator: str, bound: Decimal) -> _Interval:
    """The numbers ``gt``/``gte``/``lt``/``lte`` ``bound`` passes."""
    if operator in ("gt", "gte"):
        return (bound, operator == "gte", _POS_INF, True)
    return (_NEG_INF, True, bound, operator == "lte")


_ORDER_OPERATORS: Final = frozenset({"gt", "gte", "lt", "lte"})


def _static_pair(operator: str, value: Any) -> _Pair:
    """The values a rule with this operator and expected value passes."""
    if operator == "exists":
        return _PRESENT_NOT_NULL, _PRESENT_NOT_NULL
    if operator == "not_exists":
        exact = _MISSING_VALUE | _NULL
        return exact, exact
    if operator in ("is_true", "is_false"):
        exact = _Values(true=True) if operator == "is_true" else _Values(false=True)
        return exact, exact
    if operator == "eq":
        return _equal_to(value)
    if operator == "ne":
        return _negated(_equal_to(value))
    if operator in ("in", "not_in"):
        members = _member_of(value) if isinstance(value, list | tuple) else (_NOTHING, _PRESENT)
        return members if operator == "in" else _negated(members)
    if operator in _ORDER_OPERATORS:
        if isinstance(value, str | date):
            return _NOTHING, _ANY_STRING | _ANY_OTHER
        bound = _exact(value)
        if bound is None:
            return _NOTHING, _ANY_NUMBER
        exact = _Values(numbers=_normalize([_order_interval(operator, bound)]))
        return exact, exact
    if operator == "between":
        if isinstance(value, list | tuple) and len(value) == 2:
            low, high = _exact(value[0]), _exact(value[1])
            if low is not None and high is not None:
                exact = _Values(numbers=_normalize([(low, True, high, True)]))
                return exact, exact
        return _NOTHING, _ANY_NUMBER
    if operator == "contains" and not isinstance(value, str):
        return _NOTHING, _ANY_OTHER  # a string never contains a non-string
    if operator in ("contains", "not_contains", "len_gte", "len_lte"):
        return _NOTHING, _CONTAINERS
    if operator in ("regex", "starts_with", "ends_with"):
        return _NOTHING, _ANY_STRING
    return _NOTHING, _PRESENT  # an operator this checker does not know: assume little


def _dynamic_pair(operator: str) -> _Pair:
    """The values a rule comparing with another field (``value_from``) may pass."""
    if operator in _ORDER_OPERATORS:
        return _NOTHING, _ORDERED
    if operator in ("contains", "not_contains", "len_gte", "len_lte"):
        return _NOTHING, _CONTAINERS
    if operator in ("starts_with", "ends_with"):
        return _NOTHING, _ANY_STRING
    return _NOTHING, _PRESENT  # eq, ne, in, not_in: any present value may pass


# --- boxes: a set of inputs as one value set per field path -------------------------------------

_Key = tuple[str | int, ...]
_Box = dict[_Key, _Values] | None  # None: no input at all; a path not in the dict: any value
_TOP: Final[dict[_Key, _Values]] = {}


def _box(key: _Key, values: _Values, *, outward: bool) -> _Box:
    values = _bounded(values, outward=outward)
    if values.empty:
        return None
    if values == _EVERYTHING:
        return {}
    return {key: values}


def _meet(left: _Box, right: _Box, *, outward: bool) -> _Box:
    if left is None or right is None:
        return None
    result = dict(left)
    for key, values in right.items():
        joined = _bounded(result[key] & values, outward=outward) if key in result else values
        if joined.empty:
            return None
        result[key] = joined
    return result


def _exact_join(left: dict[_Key, _Values], right: dict[_Key, _Values]) -> bool:
    """Whether the per-field join of two boxes is exactly their union."""
    return not left or not right or (len(left) == 1 and left.keys() == right.keys())


def _join_around(left: _Box, right: _Box) -> _Box:
    """A box holding both boxes (their union, widened to a box)."""
    if left is None:
        return right
    if right is None:
        return left
    result: dict[_Key, _Values] = {}
    for key in left.keys() & right.keys():
        values = _bounded(left[key] | right[key], outward=True)
        if values != _EVERYTHING:
            result[key] = values
    return result


def _join_inside(left: _Box, right: _Box) -> _Box:
    """A box inside the union of both boxes."""
    if left is None:
        return right
    if right is None:
        return left
    if _exact_join(left, right):
        result: dict[_Key, _Values] = {}
        for key in left.keys() & right.keys():
            values = left[key] | right[key]
            if len(values.numbers) > MAX_SET_PARTS or len(values.strings) > MAX_SET_PARTS:
                return left  # too large to keep exactly: one side is inside the union
            if values != _EVERYTHING:
                result[key] = values
        return result
    return left


def _invert_around(inside: _Box) -> _Box:
    """A box holding every input outside ``inside``."""
    if inside is None:
        return {}
    if len(inside) == 1:
        ((key, values),) = inside.items()
        return _box(key, ~values, outward=True)
    return None if not inside else {}


def _invert_inside(around: _Box) -> _Box:
    """A box inside the inputs outside ``around``."""
    if around is None:
        return {}
    if len(around) == 1:
        ((key, values),) = around.items()
        return _box(key, ~values, outward=False)
    return None


def _may_imply(left: _Box, right: _Box) -> bool:
    """A cheap test that ``left`` may lie inside ``right`` (it must constrain its fields)."""
    return left is not None and right is not None and right.keys() <= left.keys()


def _size(box: _Box) -> int:
    if box is None:
        return 0
    return sum(len(values.numbers) + len(values.strings) for values in box.values())


def _box_le(left: _Box, right: _Box) -> bool:
    """Whether every input in ``left`` is in ``right``."""
    if left is None:
        return True
    if right is None:
        return False
    return all(left.get(key, _EVERYTHING) <= values for key, values in right.items())


# --- input schema -----------------------------------------------------------------------------

_SCHEMA_TYPES: Final = {
    "string": _ANY_STRING,
    "number": _ANY_NUMBER | _Values(nan=True),
    "integer": _ANY_NUMBER,
    "boolean": _Values(true=True, false=True),
    "null": _NULL,
    "object": _ANY_OTHER,
    "array": _ANY_OTHER,
}


class _SchemaError(Exception):
    """The input schema cannot be read at some place."""


@dataclass(frozen=True, slots=True)
class _Lookup:
    """Where a path leads in the schema: absent, unknown (any) or declared types."""

    absent_at: int | None = None  # index of the first key the schema does not allow
    types: _Values | None = None  # None: the schema does not say


class _Schema:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root

    def resolve(self, node: Any) -> Any:
        for _ in range(_MAX_REF_HOPS):
            if not isinstance(node, Mapping) or "$ref" not in node:
                return node
            ref = node["$ref"]
            if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
                raise _SchemaError(f"$ref {ref!r}: only local references (#/...) are read")
            target: Any = self.root
            for part in ref[2:].split("/") if ref != "#" else []:
                part = part.replace("~1", "/").replace("~0", "~")
                if isinstance(target, Mapping) and part in target:
                    target = target[part]
                elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                    target = target[int(part)]
                else:
                    raise _SchemaError(f"$ref {ref!r} does not resolve")
            node = target
        raise _SchemaError(f"$ref chain longer than {_MAX_REF_HOPS} references")

    def alternatives(self, node: Any, depth: int = 0) -> list[Any]:
        """``node`` and the branches of its anyOf/oneOf/allOf, references resolved."""
        if depth > _MAX_REF_HOPS:
            raise _SchemaError(f"anyOf/oneOf/allOf nested deeper than {_MAX_REF_HOPS} levels")
        node = self.resolve(node)
        found = [node]
        if isinstance(node, Mapping):
            for keyword in ("anyOf", "oneOf", "allOf"):
                branches = node.get(keyword)
                if branches is None:
                    continue
                if not isinstance(branches, list):
                    raise _SchemaError(f"{keyword} must be a list of schemas")
                for branch in branches:
                    found.extend(self.alternatives(branch, depth + 1))
                    if len(found) > _MAX_CANDIDATES:
                        raise _SchemaError(f"more than {_MAX_CANDIDATES} alternatives to follow")
        return found

    @staticmethod
    def declared(node: Mapping[str, Any]) -> _Values | None:
        kind = node.get("type")
        if kind is None:
            return None
        names = kind if isinstance(kind, list) else [kind]
        values = _NOTHING
        for name in names:
            if not isinstance(name, str) or name not in _SCHEMA_TYPES:
                known = ", ".join(sorted(_SCHEMA_TYPES))
                raise _SchemaError(f"type {name!r} is not a JSON Schema type ({known})")
            values = values | _SCHEMA_TYPES[name]
        return values

    def child(self, node: Any, key: str | int) -> tuple[list[Any], bool]:
        """The schemas of ``node[key]`` and whether the schema cannot say (any value)."""
        if node is True:
            return [], True
        if node is False:
            return [], False
        if not isinstance(node, Mapping):
            raise _SchemaError(f"a schema must be an object or a boolean, got {node!r:.40}")
        declared = self.declared(node)
        if isinstance(key, str):
            properties = node.get("properties")
            if properties is not None and not isinstance(properties, Mapping):
                raise _SchemaError("properties must be an object")
            if properties is not None and key in properties:
                return [properties[key]], False
            extra = node.get("additionalProperties")
            if isinstance(extra, Mapping):
                return [extra], False
            if extra is True or "patternProperties" in node:
                return [], True
            if properties is not None or extra is False:
                return [], False
            if declared is not None and not declared.other:
                return [], False  # not an object: no keys
            return [], True
        prefix = node.get("prefixItems")
        if isinstance(prefix, list) and key < len(prefix):
            return [prefix[key]], False
        items = node.get("items")
        if isinstance(items, Mapping) or items is False:
            return ([items] if items is not False else []), False
        if items is True:
            return [], True
        if declared is not None and not declared.other:
            return [], False  # not an array: no items
        return [], True

    def lookup(self, keys: _Key) -> _Lookup:
        candidates = self.alternatives(self.root)
        for index, key in enumerate(keys):
            found: list[Any] = []
            for candidate in candidates:
                children, unknown = self.child(candidate, key)
                if unknown:
                    return _Lookup()
                for child in children:
                    found.extend(self.alternatives(child))
            if len(found) > _MAX_CANDIDATES:
                return _Lookup()
            if not found:
                return _Lookup(absent_at=index)
            candidates = found
        types = _NOTHING
        for candidate in candidates:
            if candidate is True or not isinstance(candidate, Mapping):
                return _Lookup()
            declared = self.declared(candidate)
            if declared is None:
                return _Lookup()
            types = types | declared
        return _Lookup(types=types)


# --- the checker ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Node:
    """One rule with what the checker worked out about it."""

    rule: RuleDocument
    location: str
    parent: _Node | None
    top: _Node | None  # the top-level rule this one is under (itself at the top)
    inside: _Box = None
    around: _Box = None
    children: list[_Node] = field(default_factory=list)
    key: _Key | None = None  # the field path of a leaf
    field_values: _Values | None = None  # what a leaf may pass on its field

    @property
    def never(self) -> bool:
        return self.around is None

    @property
    def always(self) -> bool:
        return self.inside == _TOP


def _path_key(text: str) -> _Key:
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
        self.field_names: dict[_Key, str] = {}
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
            node.inside = _invert_inside(child.around)
            node.around = _invert_around(child.inside)
            return node
        node.children = [
            self.build(child, f"{location}.{kind}[{index}]", node)
            for index, child in enumerate(rule.children)
        ]
        if kind == "all":
            inside: _Box = {}
            around: _Box = {}
            for child_node in node.children:
                inside = _meet(inside, child_node.inside, outward=False)
                around = _meet(around, child_node.around, outward=True)
        else:
            inside = around = None
            for child_node in node.children:
                inside = _join_inside(inside, child_node.inside)
                around = _join_around(around, child_node.around)
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
            inside, around = _dynamic_pair(operator)  # (a missing parameter is refused earlier)
        else:
            inside, around = _static_pair(operator, value)
        node.key = key
        node.field_values = around
        node.inside = _box(key, inside, outward=False)
        node.around = _box(key, around, outward=True)

    # -- reports --

    def field_name(self, key: _Key) -> str:
        return self.field_names.get(key, ".".join(str(part) for part in key[1:]))

    def conflict(self, nodes: list[_Node]) -> tuple[_Node, list[_Node], str] | None:
        """The first rule that cannot pass together with the ones before it."""
        around: _Box = {}
        for index, node in enumerate(nodes):
            met = _meet(around, node.around, outward=True)
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
                if not _may_imply(small.around, large.inside):
                    continue
                self.work_left -= _size(small.around) + _size(large.inside) + 1
                if self.work_left < 0:
                    return
                redundant = _box_le(small.around, large.inside)
                mutual = redundant and _box_le(large.around, small.inside)
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

    def report_required_together(self, tops: list[_Node]) -> _Box:
        """The required top-level rules must be able to pass together."""
        required = [node for node in tops if node.rule.required]
        if any(node.never for node in required):
            return None
        found = self.conflict(required)
        if found is None:
            around: _Box = {}
            for node in required:
                around = _meet(around, node.around, outward=True)
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

    def report_threshold(self, tops: list[_Node], required: _Box) -> None:
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
    def best_score(required: _Box, scored: list[_Node]) -> float:
        """At most the weight of scored rules that can pass together with the required ones.

        A bounded branch and bound over subsets of the scored rules; with too many rules, or
        when the bound on the search is spent, the sum of the weights of those that can each
        pass alone.
        """
        live = sorted(
            (node for node in scored if _meet(required, node.around, outward=True) is not None),
            key=lambda node: -node.rule.weight,
        )
        alone = sum(node.rule.weight for node in live)
        steps_left = _MAX_SEARCH_STEPS
        best = 0.0

        def search(index: int, box: _Box, gained: float, rest: float) -> bool:
            nonlocal best, steps_left
            steps_left -= 1
            if steps_left < 0:
                return False
            best = max(best, gained)
            if index == len(live) or gained + rest <= best:
                return True
            node = live[index]
            weight = node.rule.weight
            met = _meet(box, node.around, outward=True)
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
        schema = _Schema(schema_document)
        try:
            schema.alternatives(schema_document)
        except _SchemaError as exc:
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
                    except _SchemaError as exc:
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
                        if (node.field_values & (found.types | _MISSING_VALUE)).empty:
                            self.add(
                                "type-mismatch",
                                rule,
                                node.location,
                                f"{self.describe_leaf(rule)} can pass only for a "
                                f"{_describe_values(node.field_values)}, but input_schema "
                                f"declares {text} as {_describe_values(found.types)}",
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


def _path_text(keys: _Key) -> str:
    text = ""
    for key in keys:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else key)
    return text


def _value_identity(value: Any) -> Any:
    """A hashable stand-in for a value such that equal values (1 == 1.0) share it."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return (type(value).__name__, value)
    if isinstance(value, int | float | Decimal):
        number = _exact(value)
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
    assert isinstance(exponent, int)  # finite: _exact returns finite numbers only
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
