r"""Operators: validated and specialised once per rule, then called as plain closures.

For every rule the compiler asks this module, by operator name and only at compile time,
for a :class:`StaticTest` (expected value known when the policy is loaded) or a
:class:`DynamicTest` (expected value read from another field with ``value_from``).
A test is ``test(actual) -> bool``; its ``describe(actual) -> str`` explains a failure.

Semantics shared by all operators:

* Numbers are ``int``, ``float`` and ``Decimal`` (never ``bool``). A ``Decimal`` input
  compares with a float expected value through the float's shortest repr, so
  ``Decimal("0.1") == 0.1`` holds. NaN compares false with everything.
* A value of the wrong type makes the rule fail with a description of the mismatch;
  no operator raises on any input.
* Dates and datetimes compare with dates, datetimes and ISO-8601 strings; aware and
  naive datetimes do not compare.
* ``regex`` patterns are RE2 syntax and are matched by RE2, in time linear in the input:
  no pattern can make an evaluation backtrack for ever. Patterns RE2 refuses
  (backreferences, lookaround, Python-only escapes such as ``\Z``) are refused when the
  policy is registered.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from operator import eq, is_
from typing import Any, Final

import re2

from dotmac_shared.business_logic.policies.core._paths import MISSING

__all__ = [
    "MAX_IN_VALUES",
    "MAX_REGEX_INPUT_LENGTH",
    "MAX_REGEX_LENGTH",
    "OPERATORS",
    "SEES_MISSING",
    "VALUELESS_OPERATORS",
    "VALUE_FROM_OPERATORS",
    "DynamicTest",
    "Operator",
    "StaticTest",
    "check_value",
    "compile_dynamic",
    "compile_static",
    "is_type_mismatch",
    "order",
    "values_equal",
]


class Operator(enum.StrEnum):
    """Every operator a rule may use."""

    EQ = "eq"  # equal
    NE = "ne"  # not equal
    GT = "gt"  # greater than
    GTE = "gte"  # greater than or equal
    LT = "lt"  # less than
    LTE = "lte"  # less than or equal
    IN = "in"  # one of a list
    NOT_IN = "not_in"  # none of a list
    CONTAINS = "contains"  # substring, list element or mapping key
    NOT_CONTAINS = "not_contains"  # the opposite of contains
    EXISTS = "exists"  # present and not null
    NOT_EXISTS = "not_exists"  # missing or null
    IS_TRUE = "is_true"  # exactly the boolean true
    IS_FALSE = "is_false"  # exactly the boolean false
    BETWEEN = "between"  # low <= value <= high (numbers)
    REGEX = "regex"  # a string the RE2 pattern matches somewhere (search)
    STARTS_WITH = "starts_with"  # a string with this prefix
    ENDS_WITH = "ends_with"  # a string with this suffix
    LEN_GTE = "len_gte"  # len(value) >= n
    LEN_LTE = "len_lte"  # len(value) <= n


OPERATORS: Final = frozenset(op.value for op in Operator)
VALUELESS_OPERATORS: Final = frozenset({"exists", "not_exists", "is_true", "is_false"})
"""Operators that take no ``value``."""
SEES_MISSING: Final = frozenset({"exists", "not_exists"})
"""Operators whose test receives :data:`MISSING` instead of failing on a missing field."""
VALUE_FROM_OPERATORS: Final = frozenset(
    {
        "eq",
        "ne",
        "gt",
        "gte",
        "lt",
        "lte",
        "in",
        "not_in",
        "contains",
        "not_contains",
        "starts_with",
        "ends_with",
        "len_gte",
        "len_lte",
    }
)
"""Operators that may compare with another input field (``value_from``)."""

MAX_REGEX_LENGTH: Final = 512
MAX_REGEX_INPUT_LENGTH: Final = 10_000
"""Longer strings fail a regex rule instead of being scanned (bounds matching time)."""
MAX_IN_VALUES: Final = 10_000

Test = Callable[[Any], bool]
Describe = Callable[[Any], str]


@dataclass(frozen=True, slots=True)
class StaticTest:
    """A compiled operator with its expected value bound."""

    test: Test
    describe: Describe


@dataclass(frozen=True, slots=True)
class DynamicTest:
    """A compiled operator whose expected value is supplied per evaluation."""

    test: Callable[[Any, Any], bool]
    describe: Callable[[Any, Any], str]


# --- value helpers ---------------------------------------------------------------------------

_TRUE_KEY: Final = object()
_FALSE_KEY: Final = object()
_SHORT_LIMIT: Final = 60


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHORT_LIMIT else text[: _SHORT_LIMIT - 3] + "..."


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, datetime):
        return "datetime"
    if isinstance(value, date):
        return "date"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "list"
    return type(value).__name__


def _is_number(value: Any) -> bool:
    kind = type(value)
    if kind is int or kind is float or kind is Decimal:
        return True
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _to_decimal(value: int | float | Decimal) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))  # shortest repr: 0.1 -> Decimal("0.1"), not its binary value
    return Decimal(int(value))


def _is_nan(value: Any) -> bool:
    if isinstance(value, Decimal):
        return value.is_nan()
    return isinstance(value, float) and math.isnan(value)


def _compare_numbers(left: Any, right: Any) -> int | None:
    """Three-way compare of two numbers; ``None`` if either is NaN."""
    if _is_nan(left) or _is_nan(right):
        return None
    if isinstance(left, Decimal) or isinstance(right, Decimal):
        left, right = _to_decimal(left), _to_decimal(right)
    return int(left > right) - int(left < right)


def _as_temporal(value: Any, like: date) -> date | None:
    """``value`` as a datetime/date comparable with ``like``, parsing ISO strings."""
    if isinstance(value, str):
        try:
            value = (
                datetime.fromisoformat(value)
                if isinstance(like, datetime)
                else date.fromisoformat(value)
            )
        except ValueError:
            return None
    if isinstance(like, datetime):
        if not isinstance(value, datetime):
            return None
        if (value.utcoffset() is None) != (like.utcoffset() is None):
            return None  # aware and naive datetimes do not compare
        return value
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    return None


def order(left: Any, right: Any) -> int | None:
    """Three-way compare ``left`` with ``right``; ``None`` when they do not compare.

    Numbers compare with numbers, strings with strings, dates and datetimes with each
    other's kind (ISO strings are parsed).

    Example:
        >>> order(Decimal("650"), 600)
        1
        >>> order("abc", 600) is None
        True
    """
    if _is_number(left):
        return _compare_numbers(left, right) if _is_number(right) else None
    if isinstance(right, date):
        converted = _as_temporal(left, right)
        if converted is None:
            return None
        return (converted > right) - (converted < right)
    if isinstance(left, date):
        converted = _as_temporal(right, left)
        if converted is None:
            return None
        return (left > converted) - (left < converted)
    if isinstance(left, str) and isinstance(right, str):
        return (left > right) - (left < right)
    return None


def values_equal(left: Any, right: Any) -> bool:
    """Equality without Python's ``True == 1`` and with exact ``Decimal``/float comparison.

    Example:
        >>> values_equal(True, 1), values_equal(Decimal("0.1"), 0.1)
        (False, True)
    """
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    left_number, right_number = _is_number(left), _is_number(right)
    if left_number or right_number:
        return left_number and right_number and _compare_numbers(left, right) == 0
    if isinstance(left, date) and isinstance(right, date):
        return order(left, right) == 0
    if isinstance(left, list | tuple) and isinstance(right, list | tuple):
        return len(left) == len(right) and all(map(values_equal, left, right))
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        return left.keys() == right.keys() and all(
            values_equal(item, right[key]) for key, item in left.items()
        )
    try:
        return bool(left == right)
    except Exception:  # an exotic __eq__ that raises is simply "not equal"
        return False


def _member_key(value: Any) -> Any:
    """A hashable key such that equal keys mean :func:`values_equal` values."""
    kind = type(value)
    if kind is str:
        return value
    if kind is bool:
        return _TRUE_KEY if value else _FALSE_KEY
    if _is_nan(value):
        return object()  # NaN is a member of nothing
    if kind is float or isinstance(value, float):
        return _to_decimal(value)
    hash(value)  # raises TypeError for lists and dicts
    return value


_MISMATCH_PREFIXES: Final = ("has type ", "is compared with ")


def is_type_mismatch(description: str) -> bool:
    """Whether a failure description says the input had the wrong type."""
    return description.startswith(_MISMATCH_PREFIXES)


def _mismatch(actual: Any, expected_kind: str) -> str:
    return f"has type {_type_name(actual)}, expected {expected_kind}"


def _kind_of_expected(expected: Any) -> str:
    if _is_number(expected):
        return "a number"
    if isinstance(expected, datetime):
        return "a datetime"
    if isinstance(expected, date):
        return "a date"
    if isinstance(expected, str):
        return "a string"
    return f"a {_type_name(expected)}"


# --- comparisons -------------------------------------------------------------------------------

_SYMBOLS: Final = {"eq": "==", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _ordering_describe(symbol: str, expected: Any) -> Describe:
    def describe(actual: Any) -> str:
        if _is_nan(actual):
            return f"is NaN, expected {symbol} {_short(expected)}"
        if order(actual, expected) is None:
            return _mismatch(actual, _kind_of_expected(expected))
        return f"is {_short(actual)}, expected {symbol} {_short(expected)}"

    return describe


def _ordering(op: str, expected: Any) -> StaticTest:
    describe = _ordering_describe(_SYMBOLS[op], expected)
    if isinstance(expected, int | float) and not isinstance(expected, bool):
        # Hot path: int/float inputs compare directly, Decimal inputs against a Decimal copy.
        number = expected
        as_decimal = _to_decimal(expected)
        if op == "gt":

            def test(actual: Any) -> bool:
                kind = type(actual)
                if kind is int or kind is float:
                    return actual > number  # type: ignore[no-any-return]
                if kind is Decimal:
                    return not actual.is_nan() and actual > as_decimal
                result = order(actual, number)
                return result is not None and result > 0

        elif op == "gte":

            def test(actual: Any) -> bool:
                kind = type(actual)
                if kind is int or kind is float:
                    return actual >= number  # type: ignore[no-any-return]
                if kind is Decimal:
                    return not actual.is_nan() and actual >= as_decimal
                result = order(actual, number)
                return result is not None and result >= 0

        elif op == "lt":

            def test(actual: Any) -> bool:
                kind = type(actual)
                if kind is int or kind is float:
                    return actual < number  # type: ignore[no-any-return]
                if kind is Decimal:
                    return not actual.is_nan() and actual < as_decimal
                result = order(actual, number)
                return result is not None and result < 0

        else:

            def test(actual: Any) -> bool:
                kind = type(actual)
                if kind is int or kind is float:
                    return actual <= number  # type: ignore[no-any-return]
                if kind is Decimal:
                    return not actual.is_nan() and actual <= as_decimal
                result = order(actual, number)
                return result is not None and result <= 0

        return StaticTest(test, describe)

    accept = _ORDER_ACCEPT[op]

    def generic(actual: Any) -> bool:
        result = order(actual, expected)
        return result is not None and accept(result)

    return StaticTest(generic, describe)


_ORDER_ACCEPT: Final[dict[str, Callable[[int], bool]]] = {
    "gt": lambda result: result > 0,
    "gte": lambda result: result >= 0,
    "lt": lambda result: result < 0,
    "lte": lambda result: result <= 0,
}


def _equality_describe(expected: Any) -> Describe:
    def describe(actual: Any) -> str:
        if _type_name(actual) != _type_name(expected) and order(actual, expected) is None:
            return _mismatch(actual, _kind_of_expected(expected))
        return f"is {_short(actual)}, expected {_short(expected)}"

    return describe


def _equals_test(expected: Any) -> Test:
    if isinstance(expected, bool) or expected is None:
        return partial(is_, expected)  # C-level: no Python frame per call
    if isinstance(expected, str):
        # A str equals only a str (or a str subclass such as a StrEnum member).
        return partial(eq, expected)
    if isinstance(expected, int | float):
        number = expected
        as_decimal = _to_decimal(expected)

        def test(actual: Any) -> bool:
            kind = type(actual)
            if kind is int or kind is float:
                return actual == number  # type: ignore[no-any-return]
            if kind is Decimal:
                return not actual.is_nan() and actual == as_decimal
            return values_equal(actual, number)

        return test
    return lambda actual: values_equal(actual, expected)


def _eq(expected: Any) -> StaticTest:
    return StaticTest(_equals_test(expected), _equality_describe(expected))


def _ne(expected: Any) -> StaticTest:
    equals = _equals_test(expected)

    def test(actual: Any) -> bool:
        return actual is not MISSING and not equals(actual)

    return StaticTest(test, lambda actual: f"is {_short(actual)}, expected anything else")


# --- membership ----------------------------------------------------------------------------------


def _membership(values: list[Any]) -> Test:
    keys: set[Any] = set()
    unhashable: list[Any] = []
    for value in values:
        try:
            keys.add(_member_key(value))
        except TypeError:
            unhashable.append(value)
    frozen_keys = frozenset(keys)

    def contains(actual: Any) -> bool:
        if type(actual) is str:
            return actual in frozen_keys
        try:
            key = _member_key(actual)
        except TypeError:
            return any(values_equal(actual, value) for value in unhashable)
        return key in frozen_keys

    return contains


def _in(expected: Any) -> StaticTest:
    member = _membership(list(expected))
    return StaticTest(
        member, lambda actual: f"is {_short(actual)}, expected one of {_short(expected)}"
    )


def _not_in(expected: Any) -> StaticTest:
    member = _membership(list(expected))

    def test(actual: Any) -> bool:
        return actual is not MISSING and not member(actual)

    return StaticTest(
        test, lambda actual: f"is {_short(actual)}, expected none of {_short(expected)}"
    )


def _container_has(container: Any, item: Any) -> bool | None:
    """Whether ``container`` contains ``item``; ``None`` if it is not a container."""
    if isinstance(container, str):
        return isinstance(item, str) and item in container
    if isinstance(container, list | tuple | set | frozenset):
        if type(item) is str:
            return item in container  # a str only equals a str: plain `in` is exact
        return any(values_equal(element, item) for element in container)
    if isinstance(container, Mapping):
        try:
            return item in container
        except TypeError:
            return False
    return None


def _describe_contains(negate: bool, expected: Any) -> Describe:
    def describe(actual: Any) -> str:
        if _container_has(actual, expected) is None:
            return _mismatch(actual, "a string, list or object")
        if isinstance(actual, str) and not isinstance(expected, str):
            return f"has type string, which cannot contain a {_type_name(expected)}"
        verb = "contains" if negate else "does not contain"
        return f"{verb} {_short(expected)} (value {_short(actual)})"

    return describe


def _contains(expected: Any) -> StaticTest:
    def test(actual: Any) -> bool:
        return _container_has(actual, expected) is True

    return StaticTest(test, _describe_contains(False, expected))


def _not_contains(expected: Any) -> StaticTest:
    def test(actual: Any) -> bool:
        return _container_has(actual, expected) is False

    return StaticTest(test, _describe_contains(True, expected))


# --- presence and booleans -----------------------------------------------------------------


def _exists(expected: Any) -> StaticTest:
    return StaticTest(
        lambda actual: actual is not MISSING and actual is not None,
        lambda actual: "is null" if actual is None else "is missing",
    )


def _not_exists(expected: Any) -> StaticTest:
    return StaticTest(
        lambda actual: actual is MISSING or actual is None,
        lambda actual: f"is present ({_short(actual)}), expected it to be absent",
    )


def _boolean(target: bool) -> Callable[[Any], StaticTest]:
    def factory(expected: Any) -> StaticTest:
        def describe(actual: Any) -> str:
            if not isinstance(actual, bool):
                return _mismatch(actual, "a boolean")
            return f"is {actual}, expected {target}"

        return StaticTest(partial(is_, target), describe)

    return factory


# --- ranges, strings and lengths -----------------------------------------------------------


def _between(expected: Any) -> StaticTest:
    low, high = expected

    def test(actual: Any) -> bool:
        if not _is_number(actual):
            return False
        below = _compare_numbers(actual, low)
        above = _compare_numbers(actual, high)
        return below is not None and above is not None and below >= 0 and above <= 0

    def describe(actual: Any) -> str:
        if not _is_number(actual):
            return _mismatch(actual, "a number")
        return f"is {_short(actual)}, expected between {low} and {high}"

    return StaticTest(test, describe)


def _re2_search(pattern: str) -> Callable[[bytes], object]:
    """Compile ``pattern`` with RE2; return its search over UTF-8 bytes (a match or ``None``).

    The one place that touches ``re2``, which ships no type hints.

    Raises:
        ValueError: RE2 refuses the pattern; the message says why.
    """
    options = re2.Options()
    options.log_errors = False  # a refused pattern is reported to the author, not to stderr
    options.never_capture = True  # rules only ask "does it match?": no submatch bookkeeping
    try:
        compiled = re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid pattern"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "backslashreplace")
        raise ValueError(str(reason)) from exc
    except UnicodeEncodeError as exc:
        raise ValueError("the pattern holds a lone surrogate, which is not text") from exc
    search: Callable[[bytes], object] = compiled.search
    return search


def _utf8(text: str) -> bytes | None:
    """``text`` as UTF-8, or ``None`` when it holds a lone surrogate (not encodable)."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return None


def _regex(expected: Any) -> StaticTest:
    search = _re2_search(expected)

    def test(actual: Any) -> bool:
        if not isinstance(actual, str) or len(actual) > MAX_REGEX_INPUT_LENGTH:
            return False
        encoded = _utf8(actual)
        return encoded is not None and search(encoded) is not None

    def describe(actual: Any) -> str:
        if not isinstance(actual, str):
            return _mismatch(actual, "a string")
        if len(actual) > MAX_REGEX_INPUT_LENGTH:
            return f"is longer than {MAX_REGEX_INPUT_LENGTH} characters, too long to match"
        if _utf8(actual) is None:
            return f"is {_short(actual)}, which holds a lone surrogate and cannot be matched"
        return f"is {_short(actual)}, which does not match /{expected}/"

    return StaticTest(test, describe)


def _affix(prefix: bool) -> Callable[[Any], StaticTest]:
    def factory(expected: Any) -> StaticTest:
        word = "start" if prefix else "end"

        if prefix:

            def test(actual: Any) -> bool:
                return isinstance(actual, str) and actual.startswith(expected)

        else:

            def test(actual: Any) -> bool:
                return isinstance(actual, str) and actual.endswith(expected)

        def describe(actual: Any) -> str:
            if not isinstance(actual, str):
                return _mismatch(actual, "a string")
            return f"is {_short(actual)}, expected to {word} with {expected!r}"

        return StaticTest(test, describe)

    return factory


def _length(value: Any) -> int | None:
    if isinstance(value, (str | list | tuple | set | frozenset | bytes, Mapping)):
        return len(value)
    return None


def _len_compare(at_least: bool) -> Callable[[Any], StaticTest]:
    def factory(expected: Any) -> StaticTest:
        bound = int(expected)

        if at_least:

            def test(actual: Any) -> bool:
                size = _length(actual)
                return size is not None and size >= bound

        else:

            def test(actual: Any) -> bool:
                size = _length(actual)
                return size is not None and size <= bound

        symbol = ">=" if at_least else "<="

        def describe(actual: Any) -> str:
            size = _length(actual)
            if size is None:
                return _mismatch(actual, "a string, list or object")
            return f"has length {size}, expected length {symbol} {bound}"

        return StaticTest(test, describe)

    return factory


_STATIC: Final[dict[str, Callable[[Any], StaticTest]]] = {
    "eq": _eq,
    "ne": _ne,
    "gt": lambda expected: _ordering("gt", expected),
    "gte": lambda expected: _ordering("gte", expected),
    "lt": lambda expected: _ordering("lt", expected),
    "lte": lambda expected: _ordering("lte", expected),
    "in": _in,
    "not_in": _not_in,
    "contains": _contains,
    "not_contains": _not_contains,
    "exists": _exists,
    "not_exists": _not_exists,
    "is_true": _boolean(True),
    "is_false": _boolean(False),
    "between": _between,
    "regex": _regex,
    "starts_with": _affix(True),
    "ends_with": _affix(False),
    "len_gte": _len_compare(True),
    "len_lte": _len_compare(False),
}


def compile_static(operator: str, expected: Any) -> StaticTest:
    """Bind ``operator`` to an expected value checked by :func:`check_value`.

    Args:
        operator: One of :data:`OPERATORS`.
        expected: The validated expected value (ignored by value-less operators).

    Returns:
        The specialised test and its failure description.

    Raises:
        KeyError: Unknown operator (documents are validated before compiling).
    """
    return _STATIC[operator](expected)


# --- dynamic (value_from) ------------------------------------------------------------------


def _dynamic_ordering(op: str) -> DynamicTest:
    accept = _ORDER_ACCEPT[op]
    symbol = _SYMBOLS[op]

    def test(actual: Any, expected: Any) -> bool:
        result = order(actual, expected)
        return result is not None and accept(result)

    def describe(actual: Any, expected: Any) -> str:
        return _ordering_describe(symbol, expected)(actual)

    return DynamicTest(test, describe)


def _dynamic_in(negate: bool) -> DynamicTest:
    def test(actual: Any, expected: Any) -> bool:
        if not isinstance(expected, list | tuple | set | frozenset):
            return False
        found = any(values_equal(actual, value) for value in expected)
        return not found if negate else found

    def describe(actual: Any, expected: Any) -> str:
        if not isinstance(expected, list | tuple | set | frozenset):
            return f"is compared with a {_type_name(expected)}, expected a list"
        word = "none" if negate else "one"
        return f"is {_short(actual)}, expected {word} of {_short(expected)}"

    return DynamicTest(test, describe)


def _dynamic_contains(negate: bool) -> DynamicTest:
    def test(actual: Any, expected: Any) -> bool:
        return _container_has(actual, expected) is (not negate)

    def describe(actual: Any, expected: Any) -> str:
        return _describe_contains(negate, expected)(actual)

    return DynamicTest(test, describe)


def _dynamic_affix(prefix: bool) -> DynamicTest:
    def test(actual: Any, expected: Any) -> bool:
        if not isinstance(actual, str) or not isinstance(expected, str):
            return False
        return actual.startswith(expected) if prefix else actual.endswith(expected)

    def describe(actual: Any, expected: Any) -> str:
        if not isinstance(expected, str):
            return f"is compared with a {_type_name(expected)}, expected a string"
        return _affix(prefix)(expected).describe(actual)

    return DynamicTest(test, describe)


def _dynamic_length(at_least: bool) -> DynamicTest:
    def bound_of(expected: Any) -> int | None:
        if isinstance(expected, int) and not isinstance(expected, bool) and expected >= 0:
            return expected
        return None

    def test(actual: Any, expected: Any) -> bool:
        bound = bound_of(expected)
        size = _length(actual)
        if bound is None or size is None:
            return False
        return size >= bound if at_least else size <= bound

    def describe(actual: Any, expected: Any) -> str:
        if bound_of(expected) is None:
            return f"is compared with {_short(expected)}, expected a non-negative integer"
        return _len_compare(at_least)(expected).describe(actual)

    return DynamicTest(test, describe)


def _dynamic_equality(negate: bool) -> DynamicTest:
    def test(actual: Any, expected: Any) -> bool:
        equal = values_equal(actual, expected)
        return not equal if negate else equal

    def describe(actual: Any, expected: Any) -> str:
        if negate:
            return f"is {_short(actual)}, expected anything but {_short(expected)}"
        return _equality_describe(expected)(actual)

    return DynamicTest(test, describe)


_DYNAMIC: Final[dict[str, DynamicTest]] = {
    "eq": _dynamic_equality(False),
    "ne": _dynamic_equality(True),
    "gt": _dynamic_ordering("gt"),
    "gte": _dynamic_ordering("gte"),
    "lt": _dynamic_ordering("lt"),
    "lte": _dynamic_ordering("lte"),
    "in": _dynamic_in(False),
    "not_in": _dynamic_in(True),
    "contains": _dynamic_contains(False),
    "not_contains": _dynamic_contains(True),
    "starts_with": _dynamic_affix(True),
    "ends_with": _dynamic_affix(False),
    "len_gte": _dynamic_length(True),
    "len_lte": _dynamic_length(False),
}


def compile_dynamic(operator: str) -> DynamicTest:
    """Return the two-argument test for a ``value_from`` rule.

    Raises:
        KeyError: The operator does not support ``value_from``.
    """
    return _DYNAMIC[operator]


# --- validation of expected values ---------------------------------------------------------


def _finite_number(value: Any) -> bool:
    return _is_number(value) and not _is_nan(value) and not _is_infinite(value)


def _is_infinite(value: Any) -> bool:
    if isinstance(value, Decimal):
        return value.is_infinite()
    return isinstance(value, float) and math.isinf(value)


def check_value(operator: str, value: Any) -> str | None:
    """Check an expected value for ``operator``; return the problem, or ``None`` if fine.

    Example:
        >>> check_value("between", [10, 5])
        'between needs [low, high] with low <= high, got [10, 5]'
    """
    if operator in VALUELESS_OPERATORS:
        return None
    if isinstance(value, datetime) and value.utcoffset() is None:
        return f"{operator} needs a timezone-aware datetime, got {value.isoformat()}"
    if isinstance(value, float | Decimal) and not _finite_number(value):
        return f"{operator} needs a finite number, got {value}"
    if operator in ("gt", "gte", "lt", "lte"):
        if _is_number(value) or isinstance(value, str | date):
            return None
        return f"{operator} needs a number, string, date or datetime value, got {_type_name(value)}"
    if operator in ("in", "not_in"):
        if not isinstance(value, list | tuple):
            return f"{operator} needs a list of values, got {_type_name(value)}"
        if len(value) > MAX_IN_VALUES:
            return f"{operator} accepts at most {MAX_IN_VALUES} values"
        return None
    if operator == "between":
        if (
            not isinstance(value, list | tuple)
            or len(value) != 2
            or not all(_finite_number(bound) for bound in value)
        ):
            return f"between needs [low, high] with two numbers, got {_short(value)}"
        if _compare_numbers(value[0], value[1]) == 1:
            return f"between needs [low, high] with low <= high, got {_short(list(value))}"
        return None
    if operator == "regex":
        if not isinstance(value, str):
            return f"regex needs a pattern string, got {_type_name(value)}"
        if len(value) > MAX_REGEX_LENGTH:
            return f"regex pattern is longer than {MAX_REGEX_LENGTH} characters"
        try:
            _re2_search(value)
        except ValueError as exc:
            return (
                f"regex does not compile as RE2 syntax (no backreferences or lookaround; "
                f"\\z, not \\Z): {exc}"
            )
        return None
    if operator in ("starts_with", "ends_with"):
        if not isinstance(value, str):
            return f"{operator} needs a string, got {_type_name(value)}"
        return None
    if operator in ("len_gte", "len_lte"):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"{operator} needs a non-negative integer, got {_short(value)}"
        return None
    return None  # eq, ne, contains, not_contains accept any value
