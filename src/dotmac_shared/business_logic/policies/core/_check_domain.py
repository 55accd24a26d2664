"""The abstract domain of the static checks: sets of values and sets of inputs.

A rule is abstracted as two sets of inputs, one inside and one around the inputs it passes
(an under- and an over-approximation). Each is a :data:`Box`: for some field paths, the
:class:`ValueSet` the field may take (missing, null, true, false, NaN, numbers as unions of
intervals, strings as finite or co-finite sets, and "any other value"); a path the box does
not name may take any value, and ``None`` is the empty set. Boxes meet exactly, join per
field and complement per field; whatever a box cannot say exactly widens the outer set and
narrows the inner one. Pure functions and frozen values, no I/O; :mod:`._checks` reports
findings from them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import Any, Final

__all__ = [
    "ANY_INPUT",
    "ANY_NUMBER",
    "ANY_OTHER",
    "ANY_STRING",
    "MAX_SET_PARTS",
    "MISSING_VALUE",
    "NOTHING",
    "NULL",
    "Box",
    "Pair",
    "PathKey",
    "ValueSet",
    "box_le",
    "box_size",
    "describe_values",
    "dynamic_pair",
    "exact_number",
    "field_box",
    "invert_around",
    "invert_inside",
    "join_around",
    "join_inside",
    "may_imply",
    "meet",
    "static_pair",
]

MAX_SET_PARTS: Final = 256
"""Intervals (or strings) one field's value set keeps exactly; a larger one is widened."""
_EXACT_FLOAT_LIMIT: Final = 2**53


# --- numbers: unions of intervals over the extended reals ------------------------------------

_NEG_INF: Final = Decimal("-Infinity")
_POS_INF: Final = Decimal("Infinity")
_Interval = tuple[Decimal, bool, Decimal, bool]  # low, low included, high, high included
_Numbers = tuple[_Interval, ...]  # sorted, disjoint, none empty
_ALL_NUMBERS: Final[_Numbers] = ((_NEG_INF, True, _POS_INF, True),)


def exact_number(value: Any) -> Decimal | None:
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
class ValueSet:
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

    def __and__(self, other: ValueSet) -> ValueSet:
        if self.cofinite and other.cofinite:
            strings, cofinite = self.strings | other.strings, True
        elif self.cofinite:
            strings, cofinite = other.strings - self.strings, False
        elif other.cofinite:
            strings, cofinite = self.strings - other.strings, False
        else:
            strings, cofinite = self.strings & other.strings, False
        return ValueSet(
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

    def __invert__(self) -> ValueSet:
        return ValueSet(
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

    def __or__(self, other: ValueSet) -> ValueSet:
        if self.cofinite and other.cofinite:
            strings, cofinite = self.strings & other.strings, True
        elif self.cofinite:
            strings, cofinite = self.strings - other.strings, True
        elif other.cofinite:
            strings, cofinite = other.strings - self.strings, True
        else:
            strings, cofinite = self.strings | other.strings, False
        return ValueSet(
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

    def __sub__(self, other: ValueSet) -> ValueSet:
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

    def __le__(self, other: ValueSet) -> bool:
        return (self - other).empty


def _bounded(values: ValueSet, *, outward: bool) -> ValueSet:
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
    return ValueSet(
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


NOTHING: Final = ValueSet()
_EVERYTHING: Final = ~NOTHING
MISSING_VALUE: Final = ValueSet(missing=True)
NULL: Final = ValueSet(null=True)
_PRESENT: Final = _EVERYTHING - MISSING_VALUE
_PRESENT_NOT_NULL: Final = _PRESENT - NULL
ANY_NUMBER: Final = ValueSet(numbers=_ALL_NUMBERS)
ANY_STRING: Final = ValueSet(cofinite=True)
ANY_OTHER: Final = ValueSet(other=True)
_CONTAINERS: Final = ANY_STRING | ANY_OTHER
_ORDERED: Final = ANY_NUMBER | ANY_STRING | ANY_OTHER


def describe_values(values: ValueSet) -> str:
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

Pair = tuple[ValueSet, ValueSet]  # under- and over-approximation of one field's passing values


def _equal_to(value: Any) -> Pair:
    """Values ``eq value`` passes (also one member of ``in``)."""
    if value is None:
        return NULL, NULL
    if isinstance(value, bool):
        exact = ValueSet(true=True) if value else ValueSet(false=True)
        return exact, exact
    if isinstance(value, int | float | Decimal):
        number = exact_number(value)
        if number is None:
            return NOTHING, ANY_NUMBER
        exact = ValueSet(numbers=((number, True, number, True),))
        return exact, exact
    if isinstance(value, str):
        exact = ValueSet(strings=frozenset((value,)))
        return exact, exact
    return NOTHING, ANY_OTHER


def _member_of(values: Any) -> Pair:
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
            number = exact_number(value)
            if number is None:
                inexact = True
            else:
                points.append((number, True, number, True))
        else:
            other = True
    numbers = _normalize(points)
    inside = ValueSet(
        null=null, true=true, false=false, numbers=numbers, strings=frozenset(strings)
    )
    around = ValueSet(
        null=null,
        true=true,
        false=false,
        other=other,
        numbers=_ALL_NUMBERS if inexact else numbers,
        strings=frozenset(strings),
    )
    return _bounded(inside, outward=False), _bounded(around, outward=True)


def _negated(pair: Pair) -> Pair:
    """``ne``/``not_in``: the complement of the positive test, minus a missing field."""
    inside, around = pair
    return ~around - MISSING_VALUE, ~inside - MISSING_VALUE


def _order_interval(operator: str, bound: Decimal) -> _Interval:
    """The numbers ``gt``/``gte``/``lt``/``lte`` ``bound`` passes."""
    if operator in ("gt", "gte"):
        return (bound, operator == "gte", _POS_INF, True)
    return (_NEG_INF, True, bound, operator == "lte")


_ORDER_OPERATORS: Final = frozenset({"gt", "gte", "lt", "lte"})


def static_pair(operator: str, value: Any) -> Pair:
    """The values a rule with this operator and expected value passes."""
    if operator == "exists":
        return _PRESENT_NOT_NULL, _PRESENT_NOT_NULL
    if operator == "not_exists":
        exact = MISSING_VALUE | NULL
        return exact, exact
    if operator in ("is_true", "is_false"):
        exact = ValueSet(true=True) if operator == "is_true" else ValueSet(false=True)
        return exact, exact
    if operator == "eq":
        return _equal_to(value)
    if operator == "ne":
        return _negated(_equal_to(value))
    if operator in ("in", "not_in"):
        members = _member_of(value) if isinstance(value, list | tuple) else (NOTHING, _PRESENT)
        return members if operator == "in" else _negated(members)
    if operator in _ORDER_OPERATORS:
        if isinstance(value, str | date):
            return NOTHING, ANY_STRING | ANY_OTHER
        bound = exact_number(value)
        if bound is None:
            return NOTHING, ANY_NUMBER
        exact = ValueSet(numbers=_normalize([_order_interval(operator, bound)]))
        return exact, exact
    if operator == "between":
        if isinstance(value, list | tuple) and len(value) == 2:
            low, high = exact_number(value[0]), exact_number(value[1])
            if low is not None and high is not None:
                exact = ValueSet(numbers=_normalize([(low, True, high, True)]))
                return exact, exact
        return NOTHING, ANY_NUMBER
    if operator == "contains" and not isinstance(value, str):
        return NOTHING, ANY_OTHER  # a string never contains a non-string
    if operator in ("contains", "not_contains", "len_gte", "len_lte"):
        return NOTHING, _CONTAINERS
    if operator in ("regex", "starts_with", "ends_with"):
        return NOTHING, ANY_STRING
    return NOTHING, _PRESENT  # an operator this checker does not know: assume little


def dynamic_pair(operator: str) -> Pair:
    """The values a rule comparing with another field (``value_from``) may pass."""
    if operator in _ORDER_OPERATORS:
        return NOTHING, _ORDERED
    if operator in ("contains", "not_contains", "len_gte", "len_lte"):
        return NOTHING, _CONTAINERS
    if operator in ("starts_with", "ends_with"):
        return NOTHING, ANY_STRING
    return NOTHING, _PRESENT  # eq, ne, in, not_in: any present value may pass


# --- boxes: a set of inputs as one value set per field path -------------------------------------

PathKey = tuple[str | int, ...]
Box = dict[PathKey, ValueSet] | None  # None: no input at all; a path not in the dict: any value
ANY_INPUT: Final[dict[PathKey, ValueSet]] = {}


def field_box(key: PathKey, values: ValueSet, *, outward: bool) -> Box:
    """The inputs whose field ``key`` takes a value in ``values`` (bounded outward or in)."""
    values = _bounded(values, outward=outward)
    if values.empty:
        return None
    if values == _EVERYTHING:
        return {}
    return {key: values}


def meet(left: Box, right: Box, *, outward: bool) -> Box:
    """The inputs in both boxes (exact, up to the bound on set sizes)."""
    if left is None or right is None:
        return None
    result = dict(left)
    for key, values in right.items():
        joined = _bounded(result[key] & values, outward=outward) if key in result else values
        if joined.empty:
            return None
        result[key] = joined
    return result


def _exact_join(left: dict[PathKey, ValueSet], right: dict[PathKey, ValueSet]) -> bool:
    """Whether the per-field join of two boxes is exactly their union."""
    return not left or not right or (len(left) == 1 and left.keys() == right.keys())


def join_around(left: Box, right: Box) -> Box:
    """A box holding both boxes (their union, widened to a box)."""
    if left is None:
        return right
    if right is None:
        return left
    result: dict[PathKey, ValueSet] = {}
    for key in left.keys() & right.keys():
        values = _bounded(left[key] | right[key], outward=True)
        if values != _EVERYTHING:
            result[key] = values
    return result


def join_inside(left: Box, right: Box) -> Box:
    """A box inside the union of both boxes."""
    if left is None:
        return right
    if right is None:
        return left
    if _exact_join(left, right):
        result: dict[PathKey, ValueSet] = {}
        for key in left.keys() & right.keys():
            values = left[key] | right[key]
            if len(values.numbers) > MAX_SET_PARTS or len(values.strings) > MAX_SET_PARTS:
                return left  # too large to keep exactly: one side is inside the union
            if values != _EVERYTHING:
                result[key] = values
        return result
    return left


def invert_around(inside: Box) -> Box:
    """A box holding every input outside ``inside``."""
    if inside is None:
        return {}
    if len(inside) == 1:
        ((key, values),) = inside.items()
        return field_box(key, ~values, outward=True)
    return None if not inside else {}


def invert_inside(around: Box) -> Box:
    """A box inside the inputs outside ``around``."""
    if around is None:
        return {}
    if len(around) == 1:
        ((key, values),) = around.items()
        return field_box(key, ~values, outward=False)
    return None


def may_imply(left: Box, right: Box) -> bool:
    """A cheap test that ``left`` may lie inside ``right`` (it must constrain its fields)."""
    return left is not None and right is not None and right.keys() <= left.keys()


def box_size(box: Box) -> int:
    """Intervals and strings in ``box``: the work of comparing it."""
    if box is None:
        return 0
    return sum(len(values.numbers) + len(values.strings) for values in box.values())


def box_le(left: Box, right: Box) -> bool:
    """Whether every input in ``left`` is in ``right``."""
    if left is None:
        return True
    if right is None:
        return False
    return all(left.get(key, _EVERYTHING) <= values for key, values in right.items())
