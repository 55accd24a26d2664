"""``dotmac-bl policy impact``: replay inputs or a decision log through two versions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from dotmac_shared.business_logic.cli import app
from dotmac_shared.business_logic.policies import (
    REDACTED,
    JsonLinesDecisionRecorder,
    PolicyContext,
    PolicyEngine,
)
from dotmac_shared.business_logic.policies._eligibility import shipped_policy
from tests.cli.helpers import flat, one_error_line

RESIDENTIAL = "plan_eligibility.residential_basic"


def customer(score: int, *, ssn: str = "000-00-0000") -> dict:
    return {
        "customer_type": "residential",
        "credit_score": score,
        "outstanding_balance": 0,
        "location": {"service_coverage": True},
        "ssn": ssn,
    }


@pytest.fixture
def candidate_dir(tmp_path: Path) -> Path:
    """A folder holding residential_basic 1.1.0: a credit score of 620 instead of 600."""
    document = json.loads(json.dumps(shipped_policy(RESIDENTIAL).canonical, default=str))
    document["version"] = "1.1.0"
    for rule in document["rules"]:
        if rule["name"] == "minimum_credit_score":
            rule["value"] = 620
    document.pop("test_cases", None)
    folder = tmp_path / "candidate"
    folder.mkdir()
    (folder / "residential_basic.yaml").write_text(yaml.safe_dump(document), encoding="utf-8")
    return folder


@pytest.fixture
def inputs_file(tmp_path: Path) -> Path:
    path = tmp_path / "inputs.jsonl"
    lines = [json.dumps(customer(score)) for score in (550, 605, 615, 640)]
    lines.insert(2, "{broken")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_impact_json_reports_totals_flips_and_rules_when_given_inputs(
    runner, candidate_dir, inputs_file
):
    result = runner.invoke(
        app,
        [
            "policy", "impact", RESIDENTIAL, "--from", "1.0.0", "--to", "1.1.0",
            "--inputs", str(inputs_file), str(candidate_dir), "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["total"], data["flipped"]) == (4, 2)
    assert data["transitions"] == {"ALLOW->DENY": 2}
    assert data["by_rule"] == {
        "minimum_credit_score": {"flipped": 2, "transitions": {"ALLOW->DENY": 2}}
    }
    assert [sample["line"] for sample in data["samples"]] == [2, 4]
    assert data["problems"] == [{"line": 3, "message": data["problems"][0]["message"]}]
    assert "invalid JSON" in data["problems"][0]["message"]
    assert data["source"]["kind"] == "inputs"


def test_impact_table_names_directions_rules_samples_and_bad_lines(
    runner, candidate_dir, inputs_file
):
    result = runner.invoke(
        app,
        [
            "policy", "impact", RESIDENTIAL, "--from", "1.0.0", "--to", "1.1.0",
            "--inputs", str(inputs_file), str(candidate_dir),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert "2 of 4 decisions flip (50.00%)" in out
    assert re.search(r"ALLOW->DENY │ +2 │", out) and re.search(r"minimum_credit_score │ +2 │", out)
    assert "sample line 2: ALLOW -> DENY (rules: minimum_credit_score)" in out
    assert "line 3: invalid JSON" in flat(result.stderr)


def test_impact_replays_a_recorded_decision_log_with_redacted_fields_kept(
    runner, candidate_dir, tmp_path
):
    log_path = tmp_path / "decisions.jsonl"
    engine = PolicyEngine()
    engine.register_policy(shipped_policy(RESIDENTIAL))
    with JsonLinesDecisionRecorder(log_path, redact=["ssn"]) as log:
        engine.recorder = log
        for score in (590, 610, 700):
            engine.evaluate(RESIDENTIAL, customer(score, ssn="123-45-6789"), PolicyContext("t1"))
    result = runner.invoke(
        app,
        [
            "policy", "impact", RESIDENTIAL, "--from", "1.0.0", "--to", "1.1.0",
            "--decisions", str(log_path), str(candidate_dir), "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["total"], data["flipped"]) == (3, 1)
    assert data["samples"][0]["input"]["ssn"] == REDACTED
    assert data["source"]["kind"] == "decisions"
    table = runner.invoke(
        app,
        [
            "policy", "impact", RESIDENTIAL, "--from", "1.0.0", "--to", "1.1.0",
            "--decisions", str(log_path), str(candidate_dir),
        ],
    )  # fmt: skip
    assert "redacted fields stay redacted" in flat(table.stdout)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "give exactly one of --decisions LOG or --inputs FILE"),
        (["--inputs", "a.jsonl", "--decisions", "b.jsonl"], "give exactly one of"),
        (["--inputs", "missing.jsonl"], "cannot read missing.jsonl"),
    ],
)
def test_impact_bad_sources_are_one_line_errors(runner, candidate_dir, extra, message):
    result = runner.invoke(
        app,
        ["policy", "impact", RESIDENTIAL, "--from", "1.0.0", "--to", "1.1.0", *extra,
         str(candidate_dir)],
    )  # fmt: skip
    assert result.exit_code == 1
    assert message in one_error_line(result.stderr)


def test_impact_unknown_version_is_a_one_line_error(runner, inputs_file):
    result = runner.invoke(
        app,
        ["policy", "impact", RESIDENTIAL, "--from", "1.0.0", "--to", "7.0.0",
         "--inputs", str(inputs_file)],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "has no version 7.0.0" in one_error_line(result.stderr)
