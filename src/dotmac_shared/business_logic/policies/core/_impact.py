"""Impact analysis: replay inputs through two versions of a policy and report what flips.

Each input is decided by both versions on the fast path (``is_allowed``-style checks; a
policy that can decide more than ALLOW and one other decision is evaluated instead). Only
the decisions that differ are explained, by both versions, to name the rules responsible:
the top-level rules whose pass/fail differs between the versions (a rule only one version
has counts when it fails there). A flip no rule explains (a changed threshold, ``on_fail``
or effective window) is counted as ``unattributed``.

Inputs come as mappings, or from JSON Lines text through :func:`parse_input_lines`: one
input object a line, or the decision log of :mod:`._decision_log` (inputs and contexts as
recorded, so redacted fields stay redacted: rules reading them see the marker string).
A bad line is reported with its number, never raised.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, cast

from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.policies.core._compiler import Policy
from dotmac_shared.business_logic.policies.core._results import (
    PolicyContext,
    PolicyDecision,
    PolicyResult,
    jsonable,
)

__all__ = [
    "ImpactReport",
    "InputProblem",
    "ReplayInput",
    "RuleImpact",
    "analyze_impact",
    "parse_input_lines",
]

_ALLOW: Final = PolicyDecision.ALLOW
#: Problems kept in a report (all are counted).
MAX_PROBLEMS_KEPT: Final = 100
#: The longest input line read (longer lines are reported, not parsed).
MAX_LINE_CHARS: Final = 1_048_576


class ReplayInput(NamedTuple):
    """One input to replay, with the context it was decided in and where it came from.

    A named tuple: a million of them are built when a decision log is replayed.
    """

    data: Mapping[str, Any]
    context: PolicyContext | None = None
    line: int | None = None


@dataclass(frozen=True, slots=True)
class InputProblem:
    """An input line that could not be replayed: its number and why."""

    line: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"line": self.line, "message": self.message}


@dataclass(frozen=True, slots=True)
class FlipSample:
    """One input whose decision flips, with the rules responsible."""

    line: int | None
    input: Mapping[str, Any]
    from_decision: PolicyDecision
    to_decision: PolicyDecision
    rules: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "line": self.line,
            "from": self.from_decision.value,
            "to": self.to_decision.value,
            "rules": list(self.rules),
            "input": jsonable(self.input),
        }


@dataclass(slots=True)
class RuleImpact:
    """How many flipped decisions one rule is responsible for, by direction."""

    name: str
    flipped: int = 0
    transitions: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"flipped": self.flipped, "transitions": dict(self.transitions)}


@dataclass(frozen=True, slots=True)
class ImpactReport:
    """What changing a policy from one version to another would do to these inputs.

    Attributes:
        policy_name: The policy.
        from_version: The version in force.
        to_version: The candidate version.
        total: Inputs replayed (bad lines and other policies' records excluded).
        flipped: Inputs whose decision differs.
        transitions: Flips by direction, e.g. ``{"ALLOW->DENY": 12}``.
        by_rule: Per responsible rule, its flips (most first).
        unattributed: Flips with no rule whose outcome changed.
        from_decisions: Decisions of ``from_version``, counted.
        to_decisions: Decisions of ``to_version``, counted.
        samples: A few flipped inputs per direction.
        problems: Bad input lines (the first :data:`MAX_PROBLEMS_KEPT`).
        problem_count: All bad input lines.
        skipped: Decision-log records of other policies.
    """

    policy_name: str
    from_version: str
    to_version: str
    total: int
    flipped: int
    transitions: dict[str, int]
    by_rule: dict[str, RuleImpact]
    unattributed: int
    from_decisions: dict[str, int]
    to_decisions: dict[str, int]
    samples: tuple[FlipSample, ...]
    problems: tuple[InputProblem, ...]
    problem_count: int
    skipped: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (what ``dotmac-bl policy impact --json`` prints)."""
        return {
            "policy_name": self.policy_name,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "total": self.total,
            "flipped": self.flipped,
            "transitions": dict(self.transitions),
            "by_rule": {name: impact.to_dict() for name, impact in self.by_rule.items()},
            "unattributed": self.unattributed,
            "decisions": {"from": dict(self.from_decisions), "to": dict(self.to_decisions)},
            "samples": [sample.to_dict() for sample in self.samples],
            "problems": [problem.to_dict() for problem in self.problems],
            "problem_count": self.problem_count,
            "skipped": self.skipped,
        }


#: Inputs decided per round: long enough that per-item work runs in C (``map``), short
#: enough that memory stays flat whatever the number of inputs.
CHUNK: Final = 2048

DecideAll = Callable[[list[Any], list[PolicyContext | None] | None], list[PolicyDecision]]


def _decider(policy: Policy) -> DecideAll:
    """The cheapest exact decision function of ``policy``, over a chunk of inputs.

    When the policy allows on pass and has exactly one other decision (its ``on_fail``,
    with no rule escalating to something else), ``check`` (the short-circuit path) decides;
    otherwise each input is evaluated.
    """
    failures = {policy.on_fail} | {
        rule.on_fail for rule in policy.document.rules if rule.on_fail is not None
    }
    if policy.on_pass is _ALLOW and len(failures) == 1 and _ALLOW not in failures:
        (failure,) = failures
        check = cast(Callable[..., bool], policy.check)

        def decide_fast(
            datas: list[Any], contexts: list[PolicyContext | None] | None
        ) -> list[PolicyDecision]:
            allowed = map(check, datas) if contexts is None else map(check, datas, contexts)
            return [_ALLOW if flag else failure for flag in allowed]

        return decide_fast
    evaluate = cast(Callable[..., PolicyResult], policy.run_evaluate)

    def decide(
        datas: list[Any], contexts: list[PolicyContext | None] | None
    ) -> list[PolicyDecision]:
        results = map(evaluate, datas) if contexts is None else map(evaluate, datas, contexts)
        return [result.decision for result in results]

    return decide


def _responsible(old: PolicyResult, new: PolicyResult) -> tuple[str, ...]:
    before = {rule.name: rule.passed for rule in old.rule_results}
    after = {rule.name: rule.passed for rule in new.rule_results}
    names = [rule.name for rule in new.rule_results] + [
        rule.name for rule in old.rule_results if rule.name not in after
    ]
    # A rule only one version has is "passing" in the other: it matters if it fails.
    return tuple(name for name in names if before.get(name, True) != after.get(name, True))


class _Tally:
    """The running totals of one analysis."""

    def __init__(self, old: Policy, new: Policy, sample_limit: int) -> None:
        self.old, self.new = old, new
        self.old_decide, self.new_decide = _decider(old), _decider(new)
        self.sample_limit = sample_limit
        self.total = self.flipped = self.unattributed = self.skipped = self.problem_count = 0
        self.transitions: dict[str, int] = {}
        self.by_rule: dict[str, RuleImpact] = {}
        self.from_counts: Counter[PolicyDecision] = Counter()
        self.to_counts: Counter[PolicyDecision] = Counter()
        self.samples: dict[str, list[FlipSample]] = {}
        self.problems: list[InputProblem] = []

    def problem(self, problem: InputProblem) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(problem)

    def run(
        self,
        datas: list[Any],
        contexts: list[PolicyContext | None] | None,
        lines: list[int | None],
    ) -> None:
        """Decide one chunk with both versions; explain the flips."""
        try:
            before = self.old_decide(datas, contexts)
            after = self.new_decide(datas, contexts)
        except InvalidInputError:
            # Some item is not a mapping (or has a bad context): find it, keep the rest.
            for index, data in enumerate(datas):
                one = None if contexts is None else [contexts[index]]
                try:
                    was, now = self.old_decide([data], one), self.new_decide([data], one)
                except InvalidInputError as exc:
                    self.problem(InputProblem(lines[index] or 0, exc.message))
                    continue
                self.count([data], one, [lines[index]], was, now)
            return
        self.count(datas, contexts, lines, before, after)

    def count(
        self,
        datas: list[Any],
        contexts: list[PolicyContext | None] | None,
        lines: list[int | None],
        before: list[PolicyDecision],
        after: list[PolicyDecision],
    ) -> None:
        self.total += len(datas)
        self.from_counts.update(before)
        self.to_counts.update(after)
        if before == after:
            return
        for index, (was, now) in enumerate(zip(before, after, strict=True)):
            if was is not now:
                context = None if contexts is None else contexts[index]
                self.flip(datas[index], context, lines[index], was, now)

    def flip(
        self,
        data: Any,
        context: PolicyContext | None,
        line: int | None,
        before: PolicyDecision,
        after: PolicyDecision,
    ) -> None:
        self.flipped += 1
        direction = f"{before.value}->{after.value}"
        self.transitions[direction] = self.transitions.get(direction, 0) + 1
        rules = _responsible(
            self.old.run_evaluate(data, context), self.new.run_evaluate(data, context)
        )
        if not rules:
            self.unattributed += 1
        for name in rules:
            impact = self.by_rule.get(name)
            if impact is None:
                impact = self.by_rule[name] = RuleImpact(name)
            impact.flipped += 1
            impact.transitions[direction] = impact.transitions.get(direction, 0) + 1
        kept = self.samples.setdefault(direction, [])
        if len(kept) < self.sample_limit:
            kept.append(FlipSample(line, data, before, after, rules))

    def report(self) -> ImpactReport:
        by_rule = sorted(self.by_rule.items(), key=lambda entry: (-entry[1].flipped, entry[0]))
        samples = self.samples
        return ImpactReport(
            policy_name=self.new.name,
            from_version=self.old.version,
            to_version=self.new.version,
            total=self.total,
            flipped=self.flipped,
            transitions=dict(sorted(self.transitions.items())),
            by_rule=dict(by_rule),
            unattributed=self.unattributed,
            from_decisions={decision.value: count for decision, count in self.from_counts.items()},
            to_decisions={decision.value: count for decision, count in self.to_counts.items()},
            samples=tuple(sample for direction in sorted(samples) for sample in samples[direction]),
            problems=tuple(self.problems),
            problem_count=self.problem_count,
            skipped=self.skipped,
        )


def analyze_impact(
    old: Policy,
    new: Policy,
    inputs: Iterable[Mapping[str, Any] | ReplayInput | InputProblem | None],
    *,
    sample_limit: int = 5,
) -> ImpactReport:
    """Replay ``inputs`` through two compiled versions and report the flipped decisions.

    Args:
        old: The version in force.
        new: The candidate version.
        inputs: Input mappings (numbered from 1), :class:`ReplayInput` items, or the output
            of :func:`parse_input_lines` (problems are reported, ``None`` counted as skipped).
        sample_limit: Flipped inputs kept per direction.

    Returns:
        The report. An item that is not a mapping is a problem, not an exception.
    """
    tally = _Tally(old, new, sample_limit)
    datas: list[Any] = []
    contexts: list[PolicyContext | None] = []
    lines: list[int | None] = []
    with_context = False
    position = 0
    data: Any
    for item in inputs:
        position += 1
        if type(item) is ReplayInput:
            data, context, line = item
            if context is not None:
                with_context = True
        elif item is None:
            tally.skipped += 1
            continue
        elif type(item) is InputProblem:
            tally.problem(item)
            continue
        else:
            data, context, line = item, None, position
        datas.append(data)
        contexts.append(context)
        lines.append(line)
        if len(datas) == CHUNK:
            tally.run(datas, contexts if with_context else None, lines)
            datas, contexts, lines, with_context = [], [], [], False
    if datas:
        tally.run(datas, contexts if with_context else None, lines)
    return tally.report()


def _context_of(values: Any, cache: dict[Any, PolicyContext]) -> PolicyContext | None:
    if values is None:
        return None
    if not isinstance(values, dict):
        raise InvalidInputError("the context is not an object", field="context")
    if not values.get("attributes") and values.get("now") is None:
        # Most records share a handful of contexts: build each once.
        key: Any = (
            values.get("tenant_id"),
            values.get("user_id"),
            values.get("operation"),
            values.get("correlation_id"),
        )
        try:
            cached = cache.get(key)
        except TypeError:  # an unhashable value: build it, and let it say what is wrong
            cached, key = None, None
        if cached is not None:
            return cached
    else:
        key = None
    context = PolicyContext.from_mapping(
        {name: value for name, value in values.items() if value is not None}
    )
    if key is not None:
        cache[key] = context
    return context


def _decode(text: str | bytes, raw_decode: Callable[[str], tuple[Any, int]]) -> Any:
    """``json.loads(text)`` without its per-call detours (this runs once per line)."""
    if type(text) is bytes:
        text = text.decode("utf-8")
    assert isinstance(text, str)
    try:
        value, end = raw_decode(text)
    except ValueError:
        return json.loads(text)  # leading whitespace, or the exact error to report
    if end != len(text) and not text[end:].isspace():
        return json.loads(text)  # raises "Extra data" with its position
    return value


def parse_input_lines(
    lines: Iterable[str | bytes], *, decisions: bool = False, policy_name: str | None = None
) -> Iterator[ReplayInput | InputProblem | None]:
    """Read JSON Lines text for :func:`analyze_impact`.

    Args:
        lines: The text, line by line (an open file works; bytes are decoded per line as
            JSON text, so an undecodable line is that line's problem).
        decisions: The lines are decision-log records (``input`` and ``context`` are
            replayed); otherwise each line is one input object.
        policy_name: With ``decisions``, records of other policies yield ``None``.

    Yields:
        A :class:`ReplayInput` per good line (numbered from 1), an :class:`InputProblem`
        per bad one, ``None`` per record of another policy; blank lines are ignored.
    """
    contexts: dict[Any, PolicyContext] = {}
    raw_decode = json.JSONDecoder().raw_decode
    for number, text in enumerate(lines, 1):
        if len(text) > MAX_LINE_CHARS:
            yield InputProblem(number, f"line is longer than {MAX_LINE_CHARS} characters")
            continue
        if not text or text.isspace():
            continue
        try:
            value = _decode(text, raw_decode)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            yield InputProblem(number, f"invalid JSON: {exc}")
            continue
        if not isinstance(value, dict):
            yield InputProblem(number, f"expected a JSON object, got {type(value).__name__}")
            continue
        if not decisions:
            yield ReplayInput(value, None, number)
            continue
        if policy_name is not None and value.get("policy_name") != policy_name:
            if isinstance(value.get("policy_name"), str):
                yield None
            else:
                yield InputProblem(number, "not a decision record: no policy_name")
            continue
        data = value.get("input")
        if not isinstance(data, dict):
            yield InputProblem(number, "decision record has no input object")
            continue
        try:
            context = _context_of(value.get("context"), contexts)
        except InvalidInputError as exc:
            yield InputProblem(number, f"bad context: {exc.message}")
            continue
        yield ReplayInput(data, context, number)
