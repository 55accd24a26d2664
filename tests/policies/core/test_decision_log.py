"""The decision log: what a record carries, sampling, redaction, the JSON Lines sink."""

from __future__ import annotations

import copy
import json
import math
import random
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from dotmac_shared.business_logic.clock import ManualClock
from dotmac_shared.business_logic.exceptions import InvalidInputError, PersistenceError
from dotmac_shared.business_logic.policies import (
    REDACTED,
    BufferedDecisionRecorder,
    DecisionRecord,
    DecisionRecorder,
    JsonLinesDecisionRecorder,
    PolicyContext,
    PolicyDecision,
    PolicyEngine,
    compile_redaction,
)

NAME = "shop.checkout"
DOCUMENT: dict[str, Any] = {
    "name": NAME,
    "version": "1.2.0",
    "rules": [
        {"name": "adult", "field": "age", "operator": "gte", "value": 18, "priority": 1},
        {"name": "card_present", "field": "card.number", "operator": "exists", "priority": 2},
        {"name": "verified", "field": "contacts[0].verified", "operator": "is_true"},
    ],
}
CONTEXT = PolicyContext(
    tenant_id="t1", user_id="u1", operation="checkout", attributes={"region": "eu"}
)


def customer(age: int = 30) -> dict[str, Any]:
    return {
        "age": age,
        "card": {"number": "4111111111111111", "brand": "visa"},
        "contacts": [{"email": "a@example.com", "verified": True}, {"email": "b@example.com"}],
    }


def engine_with(recorder: DecisionRecorder | None) -> PolicyEngine:
    engine = PolicyEngine(recorder=recorder)
    engine.register_policy(DOCUMENT)
    return engine


def test_record_carries_policy_version_input_context_decision_failed_rules_and_clock_time():
    clock = ManualClock()
    recorder = BufferedDecisionRecorder(clock=clock)
    engine = engine_with(recorder)
    started = clock.now()
    engine.evaluate(NAME, customer(age=16), CONTEXT)
    clock.advance(seconds=5)
    engine.evaluate(NAME, customer(), None)

    denied, allowed = recorder.take()
    assert denied.policy_name == NAME and denied.policy_version == "1.2.0"
    assert denied.decision is PolicyDecision.DENY and denied.failed_rules == ("adult",)
    assert denied.input == customer(age=16)
    assert denied.context == {
        "tenant_id": "t1",
        "user_id": "u1",
        "operation": "checkout",
        "correlation_id": None,
        "attributes": {"region": "eu"},
        "now": None,
    }
    assert denied.tenant_id == "t1" and len(denied.content_hash) == 64
    assert denied.recorded_at == started
    assert (allowed.recorded_at - denied.recorded_at).total_seconds() == 5
    assert allowed.decision is PolicyDecision.ALLOW and allowed.failed_rules == ()
    assert allowed.context is None and allowed.tenant_id is None
    assert recorder.pending == 0


def test_recorded_time_comes_from_the_injected_clock_when_one_is_given():
    clock = ManualClock()
    recorder = BufferedDecisionRecorder(clock=clock)
    engine_with(recorder).evaluate(NAME, customer())
    (record,) = recorder.take()
    assert record.recorded_at == clock.now()


def test_is_allowed_and_evaluate_many_are_recorded_when_a_recorder_is_configured():
    recorder = BufferedDecisionRecorder()
    engine = engine_with(recorder)
    assert engine.is_allowed(NAME, customer()) is True
    assert engine.is_allowed(NAME, customer(age=3), CONTEXT, version="1.2.0") is False
    engine.evaluate_many(NAME, [customer(), customer(age=1)])
    with pytest.raises(Exception, match="decided DENY"):
        engine.enforce(NAME, customer(age=2))
    records = recorder.take()
    assert [record.decision.value for record in records] == [
        "ALLOW",
        "DENY",
        "ALLOW",
        "DENY",
        "DENY",
    ]
    assert records[1].failed_rules == ("adult",) and records[1].tenant_id == "t1"


def test_nothing_is_recorded_when_no_recorder_is_configured():
    engine = engine_with(None)
    assert engine.recorder is None
    assert engine.is_allowed(NAME, customer())
    recorder = BufferedDecisionRecorder()
    engine.recorder = recorder  # set later: recording starts from here
    engine.is_allowed(NAME, customer())
    assert len(recorder.take()) == 1


def test_redaction_replaces_nested_paths_and_leaves_the_callers_input_untouched():
    recorder = BufferedDecisionRecorder(
        redact=["card.number", "contacts[0].email", "contacts[5].email", "absent.path"]
    )
    engine = engine_with(recorder)
    data = customer()
    original = copy.deepcopy(data)
    result = engine.evaluate(NAME, data)

    (record,) = recorder.take()
    assert record.input["card"] == {"number": REDACTED, "brand": "visa"}
    assert record.input["contacts"] == [
        {"email": REDACTED, "verified": True},
        {"email": "b@example.com"},
    ]
    assert "absent" not in record.input
    assert data == original  # nothing mutated, nested containers included
    assert result.decision is PolicyDecision.ALLOW  # the decision saw the real values


def test_compiled_redaction_shares_untouched_branches_and_copies_the_redacted_path():
    data = customer()
    redacted = compile_redaction(["card.number"])(data)
    assert redacted is not data and redacted["card"] is not data["card"]
    assert redacted["contacts"] is data["contacts"]
    assert compile_redaction([])(data) is data


def test_record_is_a_snapshot_when_the_caller_mutates_the_input_after_deciding():
    recorder = BufferedDecisionRecorder()
    engine = engine_with(recorder)
    data = customer()
    engine.evaluate(NAME, data)
    data["card"]["brand"] = "changed"
    data["contacts"].clear()
    (record,) = recorder.take()
    assert record.input == customer()


@pytest.mark.parametrize(("rate", "expected"), [(0, 0), (0.0, 0), (1, 200), (1.0, 200)])
def test_sampling_zero_records_nothing_and_one_records_everything(rate, expected):
    recorder = BufferedDecisionRecorder(sample_rate=rate)
    engine = engine_with(recorder)
    for _ in range(200):
        engine.evaluate(NAME, customer())
    assert recorder.pending == expected


def test_sampling_is_deterministic_when_the_random_source_is_seeded():
    def sampled(seed: int) -> list[int]:
        recorder = BufferedDecisionRecorder(sample_rate=0.3, rng=random.Random(seed))
        engine = engine_with(recorder)
        for age in range(1000):
            engine.evaluate(NAME, customer(age=age))
        return [record.input["age"] for record in recorder.take()]

    first = sampled(7)
    assert first == sampled(7)
    assert 200 < len(first) < 400  # about 30 %


@pytest.mark.parametrize("rate", [-0.1, 1.01, math.nan, math.inf, True, "0.5", None])
def test_bad_sample_rate_is_a_clear_error_when_outside_zero_to_one(rate):
    with pytest.raises(InvalidInputError, match="sample_rate must be a number from 0 to 1") as info:
        BufferedDecisionRecorder(sample_rate=rate)
    assert info.value.field == "sample_rate"


@pytest.mark.parametrize(
    ("paths", "problem"),
    [
        (["card..number"], "cannot redact 'card..number': bad path syntax"),
        ([""], "cannot redact '': a path must have 1 to"),
        (["context.tenant_id"], "redaction paths name input fields, not the context"),
        ([42], "a path must be a string"),
        ("card.number", "a list of paths, not one string"),
    ],
)
def test_bad_redaction_path_is_a_clear_error_naming_the_path(paths, problem):
    with pytest.raises(InvalidInputError, match=problem) as info:
        BufferedDecisionRecorder(redact=paths)
    assert info.value.field == "redact"


@pytest.mark.parametrize("options", [{"batch_size": 0}, {"max_buffered": -1}, {"batch_size": 2.5}])
def test_bad_buffer_sizes_are_clear_errors(options):
    with pytest.raises(InvalidInputError, match="must be a positive integer"):
        BufferedDecisionRecorder(**options)


def test_full_buffer_drops_and_counts_decisions_when_max_buffered_is_reached(caplog):
    recorder = BufferedDecisionRecorder(max_buffered=3)
    engine = engine_with(recorder)
    for _ in range(5):
        assert engine.is_allowed(NAME, customer())  # decisions never fail for the log
    assert recorder.pending == 3 and recorder.dropped == 2
    assert len(recorder.take()) == 3
    assert "2 decisions were not recorded" in caplog.text


def test_values_json_cannot_hold_are_recorded_as_text_when_the_input_has_them():
    recorder = BufferedDecisionRecorder()
    engine = engine_with(recorder)
    when = datetime.now(UTC)
    data = {**customer(), "balance": Decimal("1.50"), "seen": when, "ratio": math.nan}
    engine.evaluate(NAME, data)
    (record,) = recorder.take()
    assert record.input["balance"] == "1.50" and record.input["seen"] == when.isoformat()
    assert record.input["ratio"] == "nan"
    json.dumps(record.to_dict(), allow_nan=False)  # strictly valid JSON


def test_record_round_trips_through_to_dict_and_from_dict():
    recorder = BufferedDecisionRecorder(clock=ManualClock())
    engine_with(recorder).evaluate(NAME, customer(age=3), CONTEXT)
    (record,) = recorder.take()
    again = DecisionRecord.from_dict(json.loads(json.dumps(record.to_dict())))
    assert again == record
    assert again.policy_context() == CONTEXT


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"decision": "MAYBE"}, "decision"),
        ({"input": [1]}, "input"),
        ({"recorded_at": "yesterday"}, "recorded_at"),
        ({"policy_name": None}, "policy_name"),
    ],
)
def test_malformed_record_is_a_clear_error_naming_the_field(change, field):
    recorder = BufferedDecisionRecorder()
    engine_with(recorder).evaluate(NAME, customer())
    data = {**recorder.take()[0].to_dict(), **change}
    with pytest.raises(InvalidInputError) as info:
        DecisionRecord.from_dict(data)
    assert info.value.field == field


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_jsonl_close_writes_every_buffered_record_with_redaction(tmp_path):
    path = tmp_path / "decisions.jsonl"
    clock = ManualClock()
    with JsonLinesDecisionRecorder(
        path, redact=["card.number"], clock=clock, flush_interval=60
    ) as log:
        engine = engine_with(log)
        for age in range(250):
            engine.evaluate(NAME, customer(age=age), CONTEXT)
    lines = _lines(path)
    assert len(lines) == 250
    assert [line["input"]["age"] for line in lines] == list(range(250))
    assert {line["input"]["card"]["number"] for line in lines} == {REDACTED}
    first = DecisionRecord.from_dict(lines[0])
    assert first.decision is PolicyDecision.DENY and first.failed_rules == ("adult",)
    assert first.recorded_at == clock.now()
    log.close()  # closing twice is harmless


def test_jsonl_flush_writes_everything_buffered_and_appends_on_reopen(tmp_path):
    path = tmp_path / "decisions.jsonl"
    log = JsonLinesDecisionRecorder(path, flush_interval=60)
    engine = engine_with(log)
    engine.evaluate(NAME, customer())
    engine.evaluate(NAME, customer(age=1))
    assert log.flush() == 2 and log.pending == 0
    assert len(_lines(path)) == 2
    log.close()
    with JsonLinesDecisionRecorder(path) as again:
        engine.recorder = again
        engine.evaluate(NAME, customer())
    assert len(_lines(path)) == 3


def test_jsonl_background_thread_writes_a_batch_when_batch_size_is_reached(tmp_path):
    path = tmp_path / "decisions.jsonl"
    with JsonLinesDecisionRecorder(path, batch_size=10, flush_interval=60) as log:
        engine = engine_with(log)
        for _ in range(10):
            engine.evaluate(NAME, customer())
        deadline = time.monotonic() + 5
        while len(path.read_text(encoding="utf-8").splitlines()) < 10:
            assert time.monotonic() < deadline, "the background writer never wrote the batch"
            time.sleep(0.01)
        assert log.pending == 0


def test_jsonl_keeps_records_and_raises_when_the_disk_is_full():
    log = JsonLinesDecisionRecorder("/dev/full", flush_interval=60)  # every write: ENOSPC
    engine_with(log).evaluate(NAME, customer())
    with pytest.raises(PersistenceError, match="cannot write decision log /dev/full"):
        log.flush()
    assert log.pending == 1  # kept for the next attempt
    with pytest.raises(PersistenceError):
        log.close()  # the final flush says so too


def test_jsonl_unopenable_path_is_a_persistence_error(tmp_path):
    with pytest.raises(PersistenceError, match="cannot open decision log"):
        JsonLinesDecisionRecorder(tmp_path / "missing" / "dir" / "log.jsonl")


@pytest.mark.parametrize("interval", [0, -1, "1", True])
def test_jsonl_bad_flush_interval_is_a_clear_error(tmp_path, interval):
    with pytest.raises(InvalidInputError, match="flush_interval"):
        JsonLinesDecisionRecorder(tmp_path / "log.jsonl", flush_interval=interval)


def test_jsonl_lines_stay_writable_when_an_input_holds_a_lone_surrogate(tmp_path):
    path = tmp_path / "decisions.jsonl"
    with JsonLinesDecisionRecorder(path) as log:
        engine_with(log).evaluate(NAME, {**customer(), "note": "bad \ud800 text"})
    (line,) = _lines(path)
    assert line["input"]["note"] == "bad \ud800 text"


class ExplodingMapping(dict):
    """A dict whose copy raises: what a hostile mapping type can do to a redacting log."""

    def __iter__(self):
        raise RuntimeError("no copies")

    def keys(self):
        raise RuntimeError("no copies")


def test_decision_stands_and_record_says_why_when_the_input_cannot_be_copied():
    recorder = BufferedDecisionRecorder(redact=["card.number"])
    engine = engine_with(recorder)
    data = ExplodingMapping(customer())
    assert engine.evaluate(NAME, data).decision is PolicyDecision.ALLOW
    (record,) = recorder.take()
    assert record.input == {"[UNRECORDABLE]": "RuntimeError: no copies"}
