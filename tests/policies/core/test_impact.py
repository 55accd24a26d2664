"""Impact analysis: replaying inputs through two versions of a policy."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dotmac_shared.business_logic.exceptions import PolicyNotFoundError
from dotmac_shared.business_logic.policies import (
    REDACTED,
    BufferedDecisionRecorder,
    InputProblem,
    PolicyContext,
    PolicyEngine,
    ReplayInput,
    parse_input_lines,
)

NAME = "lending.basic"


def document(version: str, minimum: int, **extra: Any) -> dict[str, Any]:
    rules = [
        {"name": "min_score", "field": "score", "operator": "gte", "value": minimum},
        {"name": "no_debt", "field": "debt", "operator": "lte", "value": 0},
    ]
    rules += extra.pop("more_rules", [])
    return {"name": NAME, "version": version, "rules": rules, **extra}


@pytest.fixture
def engine() -> PolicyEngine:
    engine = PolicyEngine()
    engine.register_policy(document("1.0.0", 600))
    engine.register_policy(document("1.1.0", 620))
    return engine


def inputs() -> list[dict[str, Any]]:
    return [{"score": score, "debt": debt} for score in range(590, 640) for debt in (0, 5)]


def test_impact_counts_flips_by_direction_and_rule_when_a_threshold_moves(engine):
    report = engine.impact(NAME, "1.0.0", "1.1.0", inputs())
    # scores 600..619 with no debt were allowed and are now denied
    assert (report.total, report.flipped) == (100, 20)
    assert report.transitions == {"ALLOW->DENY": 20}
    assert list(report.by_rule) == ["min_score"]
    assert report.by_rule["min_score"].transitions == {"ALLOW->DENY": 20}
    assert report.unattributed == 0
    assert report.from_decisions == {"DENY": 60, "ALLOW": 40}
    assert report.to_decisions == {"DENY": 80, "ALLOW": 20}
    assert len(report.samples) == 5 and report.samples[0].rules == ("min_score",)
    assert report.samples[0].line == 21  # the 21st input: score 600, debt 0
    data = report.to_dict()
    assert (data["total"], data["flipped"]) == (100, 20)
    assert data["by_rule"] == {"min_score": {"flipped": 20, "transitions": {"ALLOW->DENY": 20}}}
    json.dumps(data)


def test_impact_reports_the_reverse_direction_when_replayed_backwards(engine):
    report = engine.impact(NAME, "1.1.0", "1.0.0", inputs())
    assert report.transitions == {"DENY->ALLOW": 20}


def test_rules_only_one_version_has_are_responsible_when_they_fail(engine):
    engine.register_policy(
        document(
            "2.0.0",
            600,
            more_rules=[{"name": "verified", "field": "verified", "operator": "is_true"}],
        )
    )
    data = [{"score": 700, "debt": 0, "verified": False}, {"score": 700, "debt": 0}]
    data.append({"score": 700, "debt": 0, "verified": True})
    forward = engine.impact(NAME, "1.0.0", "2.0.0", data)
    assert forward.flipped == 2 and dict(forward.transitions) == {"ALLOW->DENY": 2}
    assert list(forward.by_rule) == ["verified"]
    backward = engine.impact(NAME, "2.0.0", "1.0.0", data)
    assert list(backward.by_rule) == ["verified"]


def test_flips_no_rule_explains_are_unattributed_when_only_on_fail_changes(engine):
    engine.register_policy(document("3.0.0", 600, on_fail="REQUIRE_APPROVAL"))
    report = engine.impact(NAME, "1.0.0", "3.0.0", inputs())
    assert report.transitions == {"DENY->REQUIRE_APPROVAL": 60}
    assert report.by_rule == {} and report.unattributed == 60


def test_escalating_rules_are_decided_exactly_when_a_policy_has_several_failure_decisions(
    engine,
):
    escalating = document("4.0.0", 600)
    escalating["rules"][1]["on_fail"] = "REQUIRE_APPROVAL"
    engine.register_policy(escalating)
    report = engine.impact(NAME, "1.0.0", "4.0.0", inputs())
    # debt only (score >= 600): DENY -> REQUIRE_APPROVAL, by the debt rule's escalation
    assert report.transitions == {"DENY->REQUIRE_APPROVAL": 40}
    assert report.by_rule == {} and report.unattributed == 40  # same rules fail, escalated


def test_items_that_are_not_mappings_are_problems_with_their_position(engine):
    report = engine.impact(NAME, "1.0.0", "1.1.0", [{"score": 610, "debt": 0}, [1, 2], "x"])
    assert report.total == 1 and report.problem_count == 2
    assert [problem.line for problem in report.problems] == [2, 3]
    assert "must be a mapping" in report.problems[0].message


def test_unknown_versions_are_policy_not_found_errors(engine):
    with pytest.raises(PolicyNotFoundError, match="no version 9.9.9"):
        engine.impact(NAME, "1.0.0", "9.9.9", [])


def test_bad_lines_are_reported_with_their_line_number_not_raised():
    lines = [
        b'{"score": 610, "debt": 0}\n',
        b"\n",
        b"{not json\n",
        b"[1, 2]\n",
        b'{"score": "\xff"}\n',
        '{"score": 700, "debt": 0}\n',
    ]
    items = list(parse_input_lines(lines))
    assert [type(item).__name__ for item in items] == [
        "ReplayInput",
        "InputProblem",
        "InputProblem",
        "InputProblem",
        "ReplayInput",
    ]
    assert [item.line for item in items] == [1, 3, 4, 5, 6]
    assert "invalid JSON" in items[1].message and "got list" in items[2].message


def test_decision_log_lines_replay_recorded_inputs_and_contexts_of_the_named_policy(engine):
    recorder = BufferedDecisionRecorder(redact=["ssn"])
    engine.recorder = recorder
    context = PolicyContext(tenant_id="t1", user_id="u1")
    engine.evaluate(NAME, {"score": 610, "debt": 0, "ssn": "123"}, context)
    engine.register_policy({**document("1.0.0", 0), "name": "other.policy"})
    engine.evaluate("other.policy", {"score": 1, "debt": 0})
    engine.recorder = None
    lines = [json.dumps(record.to_dict()) + "\n" for record in recorder.take()]
    lines.append('{"input": {}}\n')
    items = list(parse_input_lines(lines, decisions=True, policy_name=NAME))
    first = items[0]
    assert isinstance(first, ReplayInput) and first.line == 1
    assert first.data == {"score": 610, "debt": 0, "ssn": REDACTED}  # stays redacted
    assert first.context == context
    assert items[1] is None  # another policy's record
    assert isinstance(items[2], InputProblem) and items[2].line == 3

    report = engine.impact(NAME, "1.0.0", "1.1.0", items)
    assert (report.total, report.flipped, report.skipped, report.problem_count) == (1, 1, 1, 1)
    assert report.samples[0].input["ssn"] == REDACTED


def test_problems_are_counted_beyond_the_ones_kept(engine):
    items = list(parse_input_lines(["nope\n"] * 150))
    report = engine.impact(NAME, "1.0.0", "1.1.0", items)
    assert report.problem_count == 150 and len(report.problems) == 100
