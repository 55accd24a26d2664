"""Compile a validated policy document into closures, once, at registration.

Everything is built from the validated document (never from raw text, never with
``eval``/``exec``): paths become tuples of keys, operators become closures with their
expected value bound, rules are sorted by priority. Evaluation does no parsing and no
dispatch on operator names.

How an evaluation runs:

1. **Capture.** Every rule on an input path is a *row rule*: one ``itemgetter`` call
   fetches the top-level values of all of them at once (C code); other rules (context
   paths, ``value_from``, groups) have their own getters.
2. **Decide.** One unrolled conjunction (``t0(v[0]) and t1(v[1]) and ...``, built from
   closures) runs each rule's test on its captured value (a row rule's test walks the rest
   of its path first); only on failure are the flags collected to compute escalations and
   the score.
3. **Explain, lazily.** The :class:`PolicyResult` keeps the captured values; its
   :class:`RuleResult` objects and messages are built from them when first read.

``is_allowed`` runs the same captured tests, stopping at the first failing required rule,
and builds nothing.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import repeat
from operator import attrgetter, call, itemgetter
from time import time_ns
from typing import Any, Final, cast

import yaml

from dotmac_shared.business_logic.exceptions import InvalidInputError, PolicyDefinitionError
from dotmac_shared.business_logic.observability._telemetry import POLICY_EVALUATION_DURATION
from dotmac_shared.business_logic.policies.core._checks import Finding, Severity, check_policy
from dotmac_shared.business_logic.policies.core._document import (
    PolicyDocument,
    PolicyTestCase,
    RuleDocument,
    parse_policy_document,
)
from dotmac_shared.business_logic.policies.core._operators import (
    SEES_MISSING,
    compile_dynamic,
    compile_static,
    is_type_mismatch,
)
from dotmac_shared.business_logic.policies.core._paths import (
    MISSING,
    compile_getter,
    descender,
    lookup,
    parse_path,
    top_level_getter,
)
from dotmac_shared.business_logic.policies.core._results import (
    PolicyContext,
    PolicyDecision,
    PolicyInfo,
    PolicyResult,
    RuleResult,
    RuleSpec,
    passed_rule,
)

__all__ = ["Check", "Explain", "Policy", "compile_policy"]

Getter = Callable[[Mapping[str, Any], PolicyContext | None], Any]

Explain = Callable[[Mapping[str, Any], PolicyContext | None], RuleResult]
Check = Callable[[Mapping[str, Any], PolicyContext | None], bool]
_Decided = tuple[tuple[Any, ...], bool, float, PolicyDecision]  # values, passed, score, decision
_Runner = Callable[[Mapping[str, Any], PolicyContext | None], _Decided]

_ALLOW: Final = PolicyDecision.ALLOW
# The proxy histogram forwards to the SDK instrument once an application installs one.
_record: Final = POLICY_EVALUATION_DURATION.record
_REQUIRE_APPROVAL: Final = PolicyDecision.REQUIRE_APPROVAL
_SCORE_EPSILON: Final = 1e-9  # weights like 0.1 + 0.2 must still reach a 0.3 threshold


def _failure_message(custom: str | None, detail: str) -> str:
    if custom is None:
        return detail
    # The business message explains the rule; a wrong-typed input must still be visible.
    return f"{custom} ({detail})" if is_type_mismatch(detail.partition(" ")[2]) else custom


def _error_detail(field: str, exc: Exception) -> str:
    return f"{field} could not be evaluated ({type(exc).__name__}: {exc})"


# --- rules ---------------------------------------------------------------------------------------


_PASSED: Final[Callable[[Any], bool]] = attrgetter("_passed")


@dataclass(frozen=True, slots=True)
class _Probe:
    """One compiled rule.

    ``getter(data, context)`` captures a value; ``test(value)`` decides it;
    ``materialize(value)`` explains it as a :class:`RuleResult`; ``check(data, context)``
    is getter + test. For a row rule (``key`` set) the captured value is the top-level
    input value ``data[key]`` and test/materialize walk the rest of the path. For groups
    and ``value_from`` rules the captured value *is* the RuleResult (built eagerly: it
    depends on several values) and ``test`` reads its ``_passed``.
    """

    spec: RuleSpec
    getter: Getter
    test: Callable[[Any], bool]
    check: Check
    materialize: Callable[[Any], RuleResult]
    key: str | None = None

    def explain(self) -> Explain:
        if self.test is _PASSED:
            return cast(Explain, self.getter)
        getter, materialize = self.getter, self.materialize

        def explain(data: Mapping[str, Any], context: PolicyContext | None) -> RuleResult:
            return materialize(getter(data, context))

        return explain


def _identity(result: RuleResult) -> RuleResult:
    return result


def _check_of(getter: Getter, test: Callable[[Any], bool]) -> Check:
    def check(data: Mapping[str, Any], context: PolicyContext | None) -> bool:
        return test(getter(data, context))

    return check


def _compile_leaf(rule: RuleDocument, spec: RuleSpec, parameters: Mapping[str, Any]) -> _Probe:
    assert rule.field is not None and rule.operator is not None  # guaranteed by validation
    field = rule.field
    path = parse_path(field)
    operator = rule.operator.value
    custom = rule.message
    missing_detail = f"{field} is missing"
    missing_message = custom or missing_detail

    source = parse_path(rule.value_from, allow_params=True) if rule.value_from else None
    if source is not None and source.root != "params":
        return _compile_dynamic_leaf(rule, spec, compile_getter(path), source.text)

    expected = lookup(parameters, source.keys) if source is not None else rule.value
    compiled = compile_static(operator, expected)
    test, describe = compiled.test, compiled.describe
    sees_missing = operator in SEES_MISSING

    def materialize(actual: Any) -> RuleResult:
        if actual is MISSING and not sees_missing:
            return RuleResult(spec, False, None, True, missing_message, missing_detail)
        shown = None if actual is MISSING else actual
        try:
            if test(actual):
                return passed_rule(spec, shown)
            detail = f"{field} {describe(actual)}"
        except Exception as exc:  # an exotic input object; the rule fails with the reason
            detail = _error_detail(field, exc)
        message = _failure_message(custom, detail)
        return RuleResult(spec, False, shown, actual is MISSING, message, detail)

    if path.root != "input":
        getter = compile_getter(path)
        return _Probe(spec, getter, test, _check_of(getter, test), materialize)

    key = str(path.keys[0])
    top = top_level_getter(key)
    descend = descender(path.keys[1:])
    if descend is None:
        return _Probe(spec, top, test, _check_of(top, test), materialize, key)

    if len(path.keys) == 2 and isinstance(path.keys[1], str):
        inner_key = path.keys[1]
        rest = path.keys[1:]

        def row_test_one(value: Any) -> bool:
            if type(value) is dict:  # exact dict: a subscript cannot insert a default
                try:
                    inner = value[inner_key]
                except KeyError:
                    return test(MISSING)
                return test(inner)
            return test(lookup(value, rest))

        row_test = row_test_one
    else:

        def row_test_deep(value: Any) -> bool:
            return test(descend(value))

        row_test = row_test_deep

    def row_materialize(value: Any) -> RuleResult:
        return materialize(descend(value))

    return _Probe(spec, top, row_test, _check_of(top, row_test), row_materialize, key)


def _compile_dynamic_leaf(
    rule: RuleDocument, spec: RuleSpec, getter: Getter, source_text: str
) -> _Probe:
    assert rule.field is not None and rule.operator is not None
    field = rule.field
    source = compile_getter(parse_path(source_text))
    compiled = compile_dynamic(rule.operator.value)
    test, describe = compiled.test, compiled.describe
    custom = rule.message
    missing_detail = f"{field} is missing"
    source_missing_detail = f"{source_text} (compared with {field}) is missing"

    def explain(data: Mapping[str, Any], context: PolicyContext | None) -> RuleResult:
        actual = getter(data, context)
        expected = source(data, context)
        shown_expected = None if expected is MISSING else expected
        if actual is MISSING:
            message = custom or missing_detail
            return RuleResult(spec, False, None, True, message, missing_detail, (), shown_expected)
        if expected is MISSING:
            message = custom or source_missing_detail
            return RuleResult(spec, False, actual, True, message, source_missing_detail, (), None)
        try:
            if test(actual, expected):
                return RuleResult(spec, True, actual, False, None, None, (), expected)
            detail = f"{field} {describe(actual, expected)}"
        except Exception as exc:
            detail = _error_detail(field, exc)
        message = _failure_message(custom, detail)
        return RuleResult(spec, False, actual, False, message, detail, (), expected)

    def check(data: Mapping[str, Any], context: PolicyContext | None) -> bool:
        actual = getter(data, context)
        if actual is MISSING:
            return False
        expected = source(data, context)
        return expected is not MISSING and test(actual, expected)

    return _Probe(spec, explain, _PASSED, check, _identity)


# --- groups ----------------------------------------------------------------------------------


def _ordered(rules: list[RuleDocument]) -> list[RuleDocument]:
    """Priority order; document order breaks ties (sorted() is stable)."""
    return sorted(rules, key=lambda rule: rule.priority)


def _compile_group(rule: RuleDocument, spec: RuleSpec, parameters: Mapping[str, Any]) -> _Probe:
    kind = rule.group_kind
    probes = [_compile_rule(child, parameters) for child in _ordered(rule.children)]
    explains = tuple(probe.explain() for probe in probes)
    checks = tuple(probe.check for probe in probes)
    custom = rule.message

    if kind == "not":
        (child_explain,) = explains
        (child_check,) = checks

        def explain_not(data: Mapping[str, Any], context: PolicyContext | None) -> RuleResult:
            child = child_explain(data, context)
            if not child.passed:
                return RuleResult(spec, True, None, False, None, None, (child,))
            detail = f"{child.name} must not hold, but it does"
            return RuleResult(spec, False, None, False, custom or detail, detail, (child,))

        def check_not(data: Mapping[str, Any], context: PolicyContext | None) -> bool:
            return not child_check(data, context)

        return _Probe(spec, explain_not, _PASSED, check_not, _identity)

    if kind == "all":

        def explain_all(data: Mapping[str, Any], context: PolicyContext | None) -> RuleResult:
            children = tuple([child(data, context) for child in explains])
            failed = [child for child in children if not child.passed]
            if not failed:
                return RuleResult(spec, True, None, False, None, None, children)
            detail = "failed: " + ", ".join(child.name for child in failed)
            message = custom or "; ".join(child.message or child.name for child in failed)
            missing = any(child.missing for child in failed)
            return RuleResult(spec, False, None, missing, message, detail, children)

        def check_all(data: Mapping[str, Any], context: PolicyContext | None) -> bool:
            return all(child(data, context) for child in checks)

        return _Probe(spec, explain_all, _PASSED, check_all, _identity)

    def explain_any(data: Mapping[str, Any], context: PolicyContext | None) -> RuleResult:
        children = tuple([child(data, context) for child in explains])
        for child in children:
            if child.passed:
                return RuleResult(spec, True, None, False, None, None, children)
        detail = "none passed: " + ", ".join(child.name for child in children)
        message = custom or "none of: " + "; ".join(
            child.message or child.name for child in children
        )
        missing = any(child.missing for child in children)
        return RuleResult(spec, False, None, missing, message, detail, children)

    def check_any(data: Mapping[str, Any], context: PolicyContext | None) -> bool:
        return any(child(data, context) for child in checks)

    return _Probe(spec, explain_any, _PASSED, check_any, _identity)


def _spec_of(rule: RuleDocument, parameters: Mapping[str, Any]) -> RuleSpec:
    expected: Any = rule.value
    if rule.value_from is not None:
        source = parse_path(rule.value_from, allow_params=True)
        expected = lookup(parameters, source.keys) if source.root == "params" else None
    operator = rule.group_kind or (rule.operator.value if rule.operator else "")
    return RuleSpec(
        name=rule.name,
        field=rule.field,
        operator=operator,
        expected=expected,
        message=rule.message,
        required=rule.required,
        weight=rule.weight,
        priority=rule.priority,
        value_from=rule.value_from,
        on_fail=rule.on_fail,
    )


def _compile_rule(rule: RuleDocument, parameters: Mapping[str, Any]) -> _Probe:
    spec = _spec_of(rule, parameters)
    if rule.is_group:
        return _compile_group(rule, spec, parameters)
    return _compile_leaf(rule, spec, parameters)


# --- whole policy ------------------------------------------------------------------------------

_Capture = Callable[[Mapping[str, Any], PolicyContext | None], tuple[Any, ...]]


def _fetch(getters: tuple[Getter, ...]) -> _Capture:
    """``fetch(data, context)`` calling every getter; no comprehension frame for 1-2 getters."""
    if not getters:
        return lambda data, context: ()
    if len(getters) == 1:
        (first,) = getters
        return lambda data, context: (first(data, context),)
    if len(getters) == 2:
        first, second = getters
        return lambda data, context: (first(data, context), second(data, context))
    return lambda data, context: tuple(map(call, getters, repeat(data), repeat(context)))


@dataclass(frozen=True, slots=True)
class _Fetch:
    """How to capture values; the run closures inline it (no frame per step).

    With exact dicts, ``grab`` (an ``itemgetter``) fetches all row rules' top-level values
    in one C call; it raises KeyError when a field is missing, and then (as for other
    mappings) ``rows`` calls each row rule's safe getter, which gives MISSING.
    """

    grab: Callable[[dict[str, Any]], Any] | None  # None when there are no row rules
    single: bool  # one row key: itemgetter returns the value itself, not a tuple
    rows: _Capture
    others: _Capture
    has_others: bool


def _fetcher(rows: list[_Probe], others: list[_Probe]) -> _Fetch:
    keys = tuple(cast(str, probe.key) for probe in rows)
    return _Fetch(
        grab=itemgetter(*keys) if keys else None,
        single=len(keys) == 1,
        rows=_fetch(tuple(probe.getter for probe in rows)),
        others=_fetch(tuple(probe.getter for probe in others)),
        has_others=bool(others),
    )


def _capture(fetch: _Fetch) -> _Capture:
    """``capture(data, context)``: every probe's value, row rules first (see :class:`_Fetch`).

    The two hottest entries (``evaluate`` and the rows-only ``is_allowed``) repeat this body
    inline instead of calling it: a Python call is a large share of their cost.
    """
    grab, single, fetch_rows = fetch.grab, fetch.single, fetch.rows
    fetch_others, has_others = fetch.others, fetch.has_others

    def capture(data: Mapping[str, Any], context: PolicyContext | None) -> tuple[Any, ...]:
        # Exact dicts only: a subscript on a defaultdict would insert the missing key.
        if grab is not None and type(data) is dict:
            try:
                values = (grab(data),) if single else grab(data)
            except KeyError:
                values = fetch_rows(data, context)
        else:
            values = fetch_rows(data, context)
        return values + fetch_others(data, context) if has_others else values

    return capture


Test = Callable[[Any], bool]
Conjunction = Callable[[Sequence[Any]], bool]


def _unrolled(tests: tuple[Test, ...], start: int) -> Conjunction:
    """``values -> tests[0](values[start]) and tests[1](values[start + 1]) and ...``.

    Hand-unrolled for up to 8 tests: in CPython 3.11 a Python-to-Python call is about
    twice as cheap as one made from C (``all(map(call, tests, values))``), and a loop
    over ``zip`` costs as much again. Built from closures, never from generated source.
    """
    i0, i1, i2, i3, i4, i5, i6, i7 = range(start, start + 8)
    count = len(tests)
    padded = tests + (_always,) * (8 - count)
    t0, t1, t2, t3, t4, t5, t6, t7 = padded
    if count == 1:
        return lambda v: t0(v[i0])
    if count == 2:
        return lambda v: t0(v[i0]) and t1(v[i1])
    if count == 3:
        return lambda v: t0(v[i0]) and t1(v[i1]) and t2(v[i2])
    if count == 4:
        return lambda v: t0(v[i0]) and t1(v[i1]) and t2(v[i2]) and t3(v[i3])
    if count == 5:
        return lambda v: t0(v[i0]) and t1(v[i1]) and t2(v[i2]) and t3(v[i3]) and t4(v[i4])
    if count == 6:
        return lambda v: (
            t0(v[i0]) and t1(v[i1]) and t2(v[i2]) and t3(v[i3]) and t4(v[i4]) and t5(v[i5])
        )
    if count == 7:
        return lambda v: (
            t0(v[i0])
            and t1(v[i1])
            and t2(v[i2])
            and t3(v[i3])
            and t4(v[i4])
            and t5(v[i5])
            and t6(v[i6])
        )
    return lambda v: (
        t0(v[i0])
        and t1(v[i1])
        and t2(v[i2])
        and t3(v[i3])
        and t4(v[i4])
        and t5(v[i5])
        and t6(v[i6])
        and t7(v[i7])
    )


def _always(value: Any) -> bool:
    return True


def _conjunction(tests: tuple[Test, ...]) -> Conjunction:
    """``values -> all(test(value) for test, value in zip(tests, values))``, fast."""
    if not tests:
        return lambda values: True
    chunks = tuple(_unrolled(tests[start : start + 8], start) for start in range(0, len(tests), 8))
    if len(chunks) == 1:
        return chunks[0]

    def all_chunks(values: Sequence[Any]) -> bool:
        return all(chunk(values) for chunk in chunks)

    return all_chunks


def _safe_flags(tests: tuple[Callable[[Any], bool], ...], values: tuple[Any, ...]) -> list[bool]:
    flags = []
    for test, value in zip(tests, values, strict=True):
        try:
            flags.append(bool(test(value)))
        except Exception:  # materialize() reports the error as the rule's failure
            flags.append(False)
    return flags


class _Plan:
    """The evaluation plan of one policy: capture, decide, materialize."""

    def __init__(self, document: PolicyDocument, probes: list[_Probe]) -> None:
        # `probes` are in priority order. Evaluation order puts row rules first (one
        # itemgetter call); results are put back in priority order when materialized.
        rows = [probe for probe in probes if probe.key is not None]
        others = [probe for probe in probes if probe.key is None]
        order = rows + others
        self.fetch = _fetcher(rows, others)
        self.tests = tuple(probe.test for probe in order)
        self.all_pass = _conjunction(self.tests)
        self.required = tuple(probe.spec.required for probe in order)
        self.weights = tuple(0.0 if probe.spec.required else probe.spec.weight for probe in order)
        self.escalations = tuple(probe.spec.on_fail for probe in order)
        position = {id(probe): index for index, probe in enumerate(order)}
        self.materializers = tuple((probe.materialize, position[id(probe)]) for probe in probes)
        self.name = document.name
        self.on_pass, self.on_fail = document.on_pass, document.on_fail
        self.threshold = document.threshold
        self.total_weight = sum(self.weights)
        self.scored = not all(self.required)
        self.escalates = any(level is _REQUIRE_APPROVAL for level in self.escalations)
        # is_allowed: required row rules first (one itemgetter call), then other required
        # rules, then scored rules.
        required_rows = [probe for probe in rows if probe.spec.required]
        self.allowed_fetch = _fetcher(required_rows, [])
        self.allowed_rows_pass = _conjunction(tuple(probe.test for probe in required_rows))
        self.allowed_checks = tuple(probe.check for probe in others if probe.spec.required)
        self.allowed_scored = tuple(
            (probe.check, probe.spec.weight) for probe in probes if not probe.spec.required
        )

    def decide_failure(self, flags: list[bool]) -> PolicyDecision:
        if not self.escalates:
            return self.on_fail
        failed = [
            level
            for flag, required, level in zip(flags, self.required, self.escalations, strict=True)
            if required and not flag
        ]
        if failed and all(level is _REQUIRE_APPROVAL for level in failed):
            return _REQUIRE_APPROVAL
        return self.on_fail

    def runner(self) -> _Runner:
        tests, all_pass = self.tests, self.all_pass
        capture = _capture(self.fetch)
        on_pass = self.on_pass
        decide_failure = self.decide_failure

        if not self.scored:

            def run_required(data: Mapping[str, Any], context: PolicyContext | None) -> _Decided:
                values = capture(data, context)
                try:
                    if all_pass(values):
                        return values, True, 1.0, on_pass
                except Exception:  # an exotic input raised in a test; see _safe_flags
                    pass
                flags = _safe_flags(tests, values)
                if all(flags):
                    return values, True, 1.0, on_pass
                return values, False, 1.0, decide_failure(flags)

            return run_required

        required, weights = self.required, self.weights
        total_weight, threshold = self.total_weight, self.threshold

        def run_scored(data: Mapping[str, Any], context: PolicyContext | None) -> _Decided:
            values = capture(data, context)
            flags = _safe_flags(tests, values)
            hard_ok = all(flag for flag, hard in zip(flags, required, strict=True) if hard)
            gained = sum(weight for flag, weight in zip(flags, weights, strict=True) if flag)
            score = gained / total_weight if total_weight > 0 else 1.0
            if hard_ok and score + _SCORE_EPSILON >= threshold:
                return values, True, score, on_pass
            return values, False, score, decide_failure(flags)

        return run_scored

    def materialize(self, values: Sequence[Any]) -> tuple[RuleResult, ...]:
        if not values:
            return ()
        return tuple([materialize(values[index]) for materialize, index in self.materializers])

    def entry_evaluate(
        self,
        source: Policy,
        run: _Runner,
        in_effect: Callable[[PolicyContext | None], bool] | None,
    ) -> Callable[[Mapping[str, Any], PolicyContext | None], PolicyResult]:
        """The compiled ``evaluate``: checks, window, capture + tests inlined, result, metric.

        Everything per evaluation happens in this one frame (plus the result's ``__init__``)
        because Python function calls are the dominant cost at this scale.
        """
        fetch, tests, all_pass = self.fetch, self.tests, self.all_pass
        grab, single, fetch_rows = fetch.grab, fetch.single, fetch.rows
        fetch_others, has_others = fetch.others, fetch.has_others
        on_pass = self.on_pass
        decide_failure = self.decide_failure
        # Keyed by the plain string: hashing a StrEnum member runs Enum.__hash__ in Python.
        attributes = {
            decision.value: {"policy": self.name, "decision": decision.value}
            for decision in PolicyDecision
        }
        pass_attributes = attributes[on_pass.value]
        inline = not self.scored

        def evaluate(data: Mapping[str, Any], context: PolicyContext | None = None) -> PolicyResult:
            started = time_ns()
            if type(data) is not dict and not isinstance(data, Mapping):
                raise _bad_data(data)
            if context is not None and type(context) is not PolicyContext:
                context = _coerce_context(context)
            if in_effect is not None and not in_effect(context):
                result = source.not_in_force(context, started)
                _record(result.duration_us / 1000.0, attributes[result.decision.value])
                return result
            if not inline:
                values, passed, score, decision = run(data, context)
                duration = (time_ns() - started) / 1000.0
                _record(duration / 1000.0, attributes[decision.value])
                return PolicyResult(
                    source, values, passed, score, decision, started, duration, (), context
                )
            # _capture() and run_required(), inlined: this is the hot path of every evaluation.
            if grab is not None and type(data) is dict:
                try:
                    values = (grab(data),) if single else grab(data)
                except KeyError:
                    values = fetch_rows(data, context)
            else:
                values = fetch_rows(data, context)
            if has_others:
                values = values + fetch_others(data, context)
            try:
                passed = all_pass(values)
            except Exception:  # an exotic input raised in a test; see _safe_flags
                passed = False
            if passed:
                duration = (time_ns() - started) / 1000.0
                _record(duration / 1000.0, pass_attributes)
                return PolicyResult(
                    source, values, True, 1.0, on_pass, started, duration, (), context
                )
            flags = _safe_flags(tests, values)
            passed = all(flags)
            decision = on_pass if passed else decide_failure(flags)
            duration = (time_ns() - started) / 1000.0
            _record(duration / 1000.0, attributes[decision.value])
            return PolicyResult(
                source, values, passed, 1.0, decision, started, duration, (), context
            )

        return evaluate

    def entry_allowed(
        self,
        run: _Runner,
        in_effect: Callable[[PolicyContext | None], bool] | None,
        explain_decision: Callable[[Mapping[str, Any], PolicyContext | None], PolicyDecision],
    ) -> Check:
        """The compiled ``is_allowed``: input checks, window, then the short-circuit tests.

        Args:
            run: The policy's runner (for policies that may allow on failure).
            in_effect: ``in_effect(context)`` if the policy has an effective window.
            explain_decision: The explaining path, used if a test raises on an exotic input.
        """
        on_pass, on_fail = self.on_pass, self.on_fail
        if on_fail is _ALLOW or on_pass is not _ALLOW:
            # Rare shapes (never allows, or allows on failure): no need for a fast path.
            outside = on_fail is _ALLOW

            def allowed_generic(
                data: Mapping[str, Any], context: PolicyContext | None = None
            ) -> bool:
                if type(data) is not dict and not isinstance(data, Mapping):
                    raise _bad_data(data)
                if context is not None and type(context) is not PolicyContext:
                    context = _coerce_context(context)
                if in_effect is not None and not in_effect(context):
                    return outside
                return explain_decision(data, context) is _ALLOW

            return allowed_generic

        fetch, rows_pass = self.allowed_fetch, self.allowed_rows_pass
        grab, single, fetch_rows = fetch.grab, fetch.single, fetch.rows
        capture_rows = _capture(fetch)
        checks, scored = self.allowed_checks, self.allowed_scored
        total_weight = sum(weight for _, weight in scored)
        needed = self.threshold * total_weight - _SCORE_EPSILON * max(total_weight, 1.0)

        if grab is not None and not checks and not scored and in_effect is None:
            # The common shape: every required rule reads the input. One frame, one
            # itemgetter call, one unrolled conjunction.

            def allowed_rows(data: Mapping[str, Any], context: PolicyContext | None = None) -> bool:
                # _capture(), inlined (with the input check folded into its type test).
                if type(data) is dict:
                    try:
                        values = (grab(data),) if single else grab(data)
                    except KeyError:
                        values = fetch_rows(data, context)
                elif isinstance(data, Mapping):
                    values = fetch_rows(data, context)
                else:
                    raise _bad_data(data)
                if context is not None and type(context) is not PolicyContext:
                    context = _coerce_context(context)
                try:
                    # Not bool(...): a conditional expression avoids a call on the hot path.
                    return True if rows_pass(values) else False  # noqa: SIM210
                except Exception:  # see allowed() below
                    return explain_decision(data, context) is _ALLOW

            return allowed_rows

        def allowed(data: Mapping[str, Any], context: PolicyContext | None = None) -> bool:
            if type(data) is not dict and not isinstance(data, Mapping):
                raise _bad_data(data)
            if context is not None and type(context) is not PolicyContext:
                context = _coerce_context(context)
            if in_effect is not None and not in_effect(context):
                return False
            try:
                if grab is not None and not rows_pass(capture_rows(data, context)):
                    return False
                for check in checks:
                    if not check(data, context):
                        return False
                if not scored or total_weight <= 0:
                    return True
                gained = 0.0
                for check, weight in scored:
                    if check(data, context):
                        gained += weight
                return gained >= needed
            except Exception:
                # A test met an input object that raises (e.g. an exotic __eq__). The
                # explaining path turns such errors into failed rules; use it, not a guess.
                return explain_decision(data, context) is _ALLOW

        return allowed


def _coerce_context(context: Any) -> PolicyContext | None:
    if context is None or type(context) is PolicyContext:
        return context
    if isinstance(context, PolicyContext):
        return context
    if isinstance(context, Mapping):
        return PolicyContext.from_mapping(context)
    raise InvalidInputError(
        f"context must be a PolicyContext or a mapping, got {type(context).__name__}",
        field="context",
    )


def _bad_data(data: Any) -> InvalidInputError:
    return InvalidInputError(
        f"policy input must be a mapping, got {type(data).__name__}", field="data"
    )


class Policy:
    """One compiled version of a policy.

    Build it with :func:`compile_policy` (or ``Policy.compile``); the engine does this on
    registration. Evaluating it is pure and thread-safe.

    Attributes:
        name: The policy's name.
        version: Its semantic version.
        category: Its category, e.g. ``plan_eligibility``.
        tags: Its tags.
        description: What it is for.
        content_hash: SHA-256 of the canonical JSON document (for audit).
        document: The validated :class:`PolicyDocument`.
        parameters: The document's free parameters.
        test_cases: The test cases the document ships.
        tenant_id: The tenant owning this version (``None`` for a global policy).
    """

    def __init__(self, document: PolicyDocument, *, tenant_id: str | None = None) -> None:
        self.document = document
        self.name = document.name
        self.version = document.version
        self.category = document.category
        self.tags: tuple[str, ...] = tuple(document.tags)
        self.description = document.description
        self.parameters: dict[str, Any] = document.parameters
        self.test_cases: tuple[PolicyTestCase, ...] = tuple(document.test_cases)
        self.on_pass = document.on_pass
        self.on_fail = document.on_fail
        self.threshold = document.threshold
        self.effective_from = document.effective_from
        self.effective_until = document.effective_until
        self.tenant_id = tenant_id
        self.canonical: dict[str, Any] = document.canonical()
        self.content_hash = hashlib.sha256(
            json.dumps(
                self.canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False
            ).encode()
        ).hexdigest()
        self.info = PolicyInfo(
            self.name, self.version, self.threshold, self.content_hash, tenant_id
        )
        try:
            probes = [_compile_rule(rule, self.parameters) for rule in _ordered(document.rules)]
        except (ValueError, KeyError) as exc:  # validation should have caught it; be explicit
            raise PolicyDefinitionError(
                f"policy {self.name!r}: cannot compile: {exc}", policy_name=self.name
            ) from exc
        self._plan = _Plan(document, probes)
        self._run = self._plan.runner()
        self.materialize = self._plan.materialize
        self._has_window = self.effective_from is not None or self.effective_until is not None
        self._compile_entries()

    def _compile_entries(self) -> None:
        in_effect = self._in_effect_for if self._has_window else None
        self.run_evaluate = self._plan.entry_evaluate(self, self._run, in_effect)
        """The compiled ``evaluate(data, context=None)`` (what the engine calls)."""
        self.check: Check = self._plan.entry_allowed(
            self._run, in_effect, lambda data, context: self.run_evaluate(data, context).decision
        )
        """The compiled ``is_allowed(data, context=None)`` (what the engine calls)."""

    @classmethod
    def compile(cls, document: Mapping[str, Any] | PolicyDocument) -> Policy:
        """Validate (if needed) and compile a document.

        Raises:
            PolicyDefinitionError: The document is invalid.
        """
        return cls(parse_policy_document(document))

    @property
    def label(self) -> str:
        """``name@version`` (with ``[tenant]`` for a tenant's own version)."""
        suffix = f" [tenant {self.tenant_id}]" if self.tenant_id else ""
        return f"{self.name}@{self.version}{suffix}"

    def for_tenant(self, tenant_id: str | None) -> Policy:
        """The same compiled policy, owned by ``tenant_id`` (shares the closures)."""
        if tenant_id == self.tenant_id:
            return self
        clone = copy.copy(self)
        clone.tenant_id = tenant_id
        clone.info = PolicyInfo(
            self.name, self.version, self.threshold, self.content_hash, tenant_id
        )
        Policy._compile_entries(clone)  # results must name the clone (its tenant), not self
        return clone

    @functools.cached_property
    def findings(self) -> tuple[Finding, ...]:
        """What the static checks find in the document (errors first); see :mod:`._checks`.

        The registry refuses a policy with any error; warnings are in :attr:`warnings`.
        """
        return tuple(check_policy(self.document))

    @property
    def warnings(self) -> tuple[Finding, ...]:
        """The static checks' warnings (duplicate, shadowed, always-passing rules, ...)."""
        return tuple(finding for finding in self.findings if finding.severity is Severity.WARNING)

    def canonical_yaml(self) -> str:
        """The canonical document as YAML (what :meth:`PolicyRegistry.diff` compares)."""
        return yaml.safe_dump(
            self.canonical, sort_keys=False, allow_unicode=True, default_flow_style=False
        )

    def in_effect_at(self, moment: datetime) -> bool:
        """Whether ``moment`` lies in ``[effective_from, effective_until)``."""
        if self.effective_from is not None and moment < self.effective_from:
            return False
        return not (self.effective_until is not None and moment >= self.effective_until)

    def _now(self, context: PolicyContext | None) -> datetime:
        if context is not None and context.now is not None:
            return context.now
        return datetime.now(UTC)

    def _in_effect_for(self, context: PolicyContext | None) -> bool:
        return self.in_effect_at(self._now(context))

    def not_in_force(self, context: PolicyContext | None, started: int) -> PolicyResult:
        """The result of an evaluation outside the effective window (decision ``on_fail``)."""
        moment = self._now(context)
        window = (
            f"effective from {self.effective_from.isoformat() if self.effective_from else '-'}"
            f" until {self.effective_until.isoformat() if self.effective_until else '-'}"
        )
        note = f"policy {self.label} is not in force at {moment.isoformat()} ({window})"
        duration = (time_ns() - started) / 1000.0
        return PolicyResult(self, (), False, 0.0, self.on_fail, started, duration, (note,), context)

    def evaluate(
        self, data: Mapping[str, Any], context: PolicyContext | None = None
    ) -> PolicyResult:
        """Evaluate with full explanation, recording the evaluation-duration metric.

        Args:
            data: The input (e.g. a customer record).
            context: Tenant, user, operation, attributes and ``now``.

        Returns:
            The decision with every rule's outcome. Never raises for missing or
            wrong-typed fields: those rules fail with a message.

        Raises:
            InvalidInputError: ``data`` is not a mapping or ``context`` is not a context.
        """
        return self.run_evaluate(data, context)

    def is_allowed(self, data: Mapping[str, Any], context: PolicyContext | None = None) -> bool:
        """Whether the decision is ALLOW, without building an explanation.

        Raises:
            InvalidInputError: ``data`` is not a mapping or ``context`` is not a context.
        """
        return self.check(data, context)

    def __repr__(self) -> str:
        return f"Policy({self.label}, {len(self.document.rules)} rules)"


def compile_policy(document: Mapping[str, Any] | PolicyDocument) -> Policy:
    """Validate and compile a policy document.

    Args:
        document: A mapping (from YAML/JSON) or a :class:`PolicyDocument`.

    Returns:
        The compiled :class:`Policy`.

    Raises:
        PolicyDefinitionError: The document is invalid; names the policy, rule and problem.

    Example:
        >>> policy = compile_policy({
        ...     "name": "demo", "version": "1.0.0",
        ...     "rules": [{"name": "adult", "field": "age", "operator": "gte", "value": 18}],
        ... })
        >>> policy.is_allowed({"age": 30})
        True
    """
    return Policy.compile(document)
