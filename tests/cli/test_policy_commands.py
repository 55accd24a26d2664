from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dotmac_shared.business_logic.cli import app
from dotmac_shared.business_logic.cli._output import load_mapping_file
from dotmac_shared.business_logic.exceptions import InvalidInputError, PolicyNotFoundError
from dotmac_shared.business_logic.policies import (
    PolicyEngine,
    load_policy_directory,
    run_policy_test_cases,
)
from dotmac_shared.business_logic.policies._eligibility import DEFINITIONS_DIR, shipped_policy_names
from tests.cli.helpers import flat, one_error_line

RESIDENTIAL = "plan_eligibility.residential_basic"
SPEC_CUSTOMER = {
    "id": "cust789",
    "customer_type": "residential",
    "credit_score": 650,
    "outstanding_balance": 0.0,
    "location": {"service_coverage": True},
}


def adult_policy(version: str, minimum: int, *, expect_17: str = "DENY") -> dict:
    return {
        "name": "custom.adult",
        "version": version,
        "category": "custom",
        "rules": [
            {
                "name": "adult",
                "field": "age",
                "operator": "gte",
                "value": minimum,
                "message": f"must be at least {minimum}",
            },
            {"name": "named", "field": "name", "operator": "exists"},
        ],
        "test_cases": [
            {"name": "seventeen", "input": {"age": 17, "name": "a"}, "expect": expect_17},
            {"name": "thirty", "input": {"age": 30, "name": "b"}, "expect": "ALLOW"},
        ],
    }


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "adult_1.yaml").write_text(yaml.safe_dump(adult_policy("1.0.0", 18)))
    (folder / "adult_2.json").write_text(json.dumps(adult_policy("1.1.0", 21)))
    return folder


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- list -------------------------------------------------------------------------------------


def test_list_shows_every_shipped_policy_when_no_folder_given(runner):
    result = runner.invoke(app, ["policy", "list"])
    assert result.exit_code == 0, result.output
    names = shipped_policy_names()
    for name in names:
        assert name in result.stdout
    assert f"{len(names)} policies, {len(names)} versions" in flat(result.stdout)


def test_list_adds_the_folder_policies_and_their_versions_when_dir_given(runner, policy_dir):
    result = runner.invoke(app, ["policy", "list", "--dir", str(policy_dir)])
    assert result.exit_code == 0, result.output
    assert "custom.adult" in result.stdout and RESIDENTIAL in result.stdout
    assert "1.0.0, 1.1.0" in result.stdout
    total = len(shipped_policy_names())
    assert f"{total + 1} policies, {total + 2} versions" in flat(result.stdout)


def test_list_shows_only_the_folder_when_no_shipped(runner, policy_dir):
    result = runner.invoke(app, ["policy", "list", "--dir", str(policy_dir), "--no-shipped"])
    assert result.exit_code == 0, result.output
    assert "custom.adult" in result.stdout and RESIDENTIAL not in result.stdout
    assert "1 policies, 2 versions" in flat(result.stdout)


def test_list_fails_with_one_line_when_folder_missing(runner, tmp_path):
    result = runner.invoke(app, ["policy", "list", "--dir", str(tmp_path / "nowhere")])
    assert result.exit_code == 1
    assert "not a directory" in one_error_line(result.stderr)


def test_list_fails_with_one_line_naming_the_file_when_a_policy_file_is_malformed(
    runner, policy_dir
):
    write(policy_dir / "broken.yaml", "name: [unclosed\n")
    result = runner.invoke(app, ["policy", "list", "--dir", str(policy_dir)])
    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    assert "broken.yaml" in line and "invalid YAML" in line


# --- show -------------------------------------------------------------------------------------


def test_show_prints_the_latest_canonical_document_when_no_version_given(runner, policy_dir):
    result = runner.invoke(app, ["policy", "show", "custom.adult", "--dir", str(policy_dir)])
    assert result.exit_code == 0, result.output
    document = yaml.safe_load(result.stdout)
    assert document["version"] == "1.1.0"
    assert document["rules"][0]["value"] == 21
    assert result.stdout.startswith("# custom.adult@1.1.0  sha256:")


def test_show_prints_the_pinned_version_as_json_when_asked(runner, policy_dir):
    result = runner.invoke(
        app,
        [
            "policy",
            "show",
            "custom.adult",
            "--version",
            "1.0.0",
            "--dir",
            str(policy_dir),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["version"], document["rules"][0]["value"]) == ("1.0.0", 18)


def test_show_matches_the_shipped_document_when_shipped_policy(runner):
    result = runner.invoke(app, ["policy", "show", RESIDENTIAL])
    assert result.exit_code == 0, result.output
    engine = PolicyEngine()
    engine.load_directory(DEFINITIONS_DIR)
    assert yaml.safe_load(result.stdout) == yaml.safe_load(
        engine.registry.get(RESIDENTIAL).canonical_yaml()
    )


def test_show_fails_with_one_line_when_policy_unknown(runner):
    result = runner.invoke(app, ["policy", "show", "no.such.policy"])
    assert result.exit_code == 1
    assert "no policy named 'no.such.policy'" in one_error_line(result.stderr)


def test_show_fails_listing_known_versions_when_version_unknown(runner, policy_dir):
    result = runner.invoke(
        app, ["policy", "show", "custom.adult", "-v", "9.9.9", "--dir", str(policy_dir)]
    )
    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    assert "no version 9.9.9" in line and "1.0.0, 1.1.0" in line


# --- diff -------------------------------------------------------------------------------------


def test_diff_shows_changed_lines_when_versions_differ(runner, policy_dir):
    result = runner.invoke(
        app, ["policy", "diff", "custom.adult", "1.0.0", "1.1.0", "--dir", str(policy_dir)]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "--- custom.adult@1.0.0" in lines and "+++ custom.adult@1.1.0" in lines
    assert "-version: 1.0.0" in lines and "+version: 1.1.0" in lines
    assert any(line.startswith("-") and "18" in line for line in lines)
    assert any(line.startswith("+") and "21" in line for line in lines)


def test_diff_says_same_content_when_versions_equal(runner, policy_dir):
    result = runner.invoke(
        app, ["policy", "diff", "custom.adult", "1.0.0", "1.0.0", "--dir", str(policy_dir)]
    )
    assert result.exit_code == 0, result.output
    assert "same content" in result.stdout


def test_diff_fails_with_one_line_when_a_version_unknown(runner, policy_dir):
    result = runner.invoke(
        app, ["policy", "diff", "custom.adult", "1.0.0", "2.0.0", "--dir", str(policy_dir)]
    )
    assert result.exit_code == 1
    assert "no version 2.0.0" in one_error_line(result.stderr)


def test_diff_is_a_usage_error_when_a_version_argument_is_missing(runner):
    result = runner.invoke(app, ["policy", "diff", RESIDENTIAL, "1.0.0"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


# --- eval -------------------------------------------------------------------------------------


def test_eval_prints_every_rule_outcome_and_the_decision_when_json_input(runner, tmp_path):
    customer = {**SPEC_CUSTOMER, "credit_score": 550}
    source = write(tmp_path / "customer.json", json.dumps(customer))
    result = runner.invoke(app, ["policy", "eval", RESIDENTIAL, str(source)])
    assert result.exit_code == 0, result.output
    rows = {
        line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:-1]]
        for line in result.stdout.splitlines()
        if line.startswith("│")
    }
    assert rows["minimum_credit_score"] == [
        "no",
        "550",
        "gte 600",
        "A credit score of at least 600 is required",
    ]
    assert rows["residential_customer"][:3] == ["yes", "residential", "eq residential"]
    assert len(rows) == 4
    assert "Decision: DENY — 3/4 rules passed" in flat(result.stdout)
    assert "reason: A credit score of at least 600 is required" in flat(result.stdout)


def test_eval_reads_yaml_input_and_a_context_file_when_given(runner, tmp_path):
    policy_dir = tmp_path / "ctx"
    policy_dir.mkdir()
    write(
        policy_dir / "tenant_only.yaml",
        yaml.safe_dump(
            {
                "name": "custom.tenant_only",
                "version": "1.0.0",
                "rules": [
                    {
                        "name": "tenant",
                        "field": "context.tenant_id",
                        "operator": "eq",
                        "value": "t1",
                    },
                    {"name": "amount", "field": "amount", "operator": "lte", "value": 100},
                ],
            }
        ),
    )
    source = write(tmp_path / "in.yaml", "amount: 40\n")
    context = write(tmp_path / "ctx.yaml", "tenant_id: t1\nuser_id: u1\n")
    args = ["policy", "eval", "custom.tenant_only", str(source), "--dir", str(policy_dir)]
    allowed = runner.invoke(app, [*args, "--context", str(context)])
    assert allowed.exit_code == 0, allowed.output
    assert "Decision: ALLOW — 2/2 rules passed" in flat(allowed.stdout)
    without_context = runner.invoke(app, args)
    assert without_context.exit_code == 0, without_context.output
    assert "Decision: DENY — 1/2 rules passed" in flat(without_context.stdout)


def test_eval_prints_the_result_as_json_when_asked(runner, tmp_path, policy_dir):
    source = write(tmp_path / "in.json", json.dumps({"age": 19, "name": "x"}))
    result = runner.invoke(
        app,
        [
            "policy",
            "eval",
            "custom.adult",
            str(source),
            "--version",
            "1.0.0",
            "--dir",
            str(policy_dir),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["policy_version"], data["decision"]) == ("1.0.0", "ALLOW")
    latest = runner.invoke(
        app, ["policy", "eval", "custom.adult", str(source), "--dir", str(policy_dir), "--json"]
    )
    assert json.loads(latest.stdout)["decision"] == "DENY"  # 1.1.0 wants 21


@pytest.mark.parametrize(
    ("content", "suffix", "expected"),
    [
        (None, ".json", "no such file"),
        ("{bad json", ".json", "invalid JSON"),
        ("a: [unclosed\n", ".yaml", "invalid YAML"),
        ("[1, 2, 3]", ".json", "must hold a mapping"),
        ("", ".yaml", "must hold a mapping"),
    ],
    ids=["missing", "malformed-json", "malformed-yaml", "list", "empty"],
)
def test_eval_fails_with_one_line_naming_the_file_when_input_bad(
    runner, tmp_path, content, suffix, expected
):
    source = tmp_path / f"input{suffix}"
    if content is not None:
        write(source, content)
    result = runner.invoke(app, ["policy", "eval", RESIDENTIAL, str(source)])
    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    assert expected in line and str(source) in line


def test_eval_fails_with_one_line_when_policy_unknown(runner, tmp_path):
    source = write(tmp_path / "in.json", "{}")
    result = runner.invoke(app, ["policy", "eval", "plan_eligibility.gold", str(source)])
    assert result.exit_code == 1
    assert "no policy named 'plan_eligibility.gold'" in one_error_line(result.stderr)


def test_eval_fails_with_one_line_when_context_lacks_tenant(runner, tmp_path):
    source = write(tmp_path / "in.json", json.dumps(SPEC_CUSTOMER))
    context = write(tmp_path / "ctx.json", json.dumps({"user_id": "u1"}))
    result = runner.invoke(
        app, ["policy", "eval", RESIDENTIAL, str(source), "--context", str(context)]
    )
    assert result.exit_code == 1
    assert "tenant_id" in one_error_line(result.stderr)


def test_eval_shows_the_traceback_when_debug(runner, tmp_path):
    source = write(tmp_path / "in.json", "{}")
    result = runner.invoke(app, ["--debug", "policy", "eval", "plan_eligibility.gold", str(source)])
    assert result.exit_code == 1
    assert isinstance(result.exception, PolicyNotFoundError)


SHIPPED = PolicyEngine()
SHIPPED.load_directory(DEFINITIONS_DIR)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    score=st.integers(min_value=300, max_value=850),
    balance=st.decimals(min_value=-50, max_value=50, places=2),
    coverage=st.booleans(),
)
def test_eval_decides_like_the_engine_when_inputs_vary(score, balance, coverage):
    from typer.testing import CliRunner

    customer = {
        **SPEC_CUSTOMER,
        "credit_score": score,
        "outstanding_balance": float(balance),
        "location": {"service_coverage": coverage},
    }
    expected = SHIPPED.evaluate(RESIDENTIAL, customer)
    with tempfile.TemporaryDirectory() as folder:
        source = write(Path(folder) / "c.json", json.dumps(customer))
        result = CliRunner().invoke(app, ["policy", "eval", RESIDENTIAL, str(source), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["decision"] == expected.decision.value
    assert data["failed_rules"] == list(expected.failed_rule_names)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=50, deadline=None)
@given(document=st.dictionaries(st.text(max_size=10), json_values, max_size=5))
def test_input_files_load_the_same_mapping_when_json_or_yaml(document):
    with tempfile.TemporaryDirectory() as folder:
        as_json = write(Path(folder) / "doc.json", json.dumps(document))
        as_yaml = write(Path(folder) / "doc.yaml", yaml.safe_dump(document))
        assert load_mapping_file(as_json) == document
        assert load_mapping_file(as_yaml) == document


def test_input_files_are_refused_when_larger_than_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr("dotmac_shared.business_logic.cli._output.MAX_INPUT_FILE_BYTES", 10)
    source = write(tmp_path / "big.json", json.dumps({"a": "x" * 20}))
    with pytest.raises(InvalidInputError, match="larger than 10 bytes"):
        load_mapping_file(source)


# --- test -------------------------------------------------------------------------------------


def test_test_runs_every_shipped_case_and_exits_0_when_all_pass(runner):
    expected = run_policy_test_cases(load_policy_directory(DEFINITIONS_DIR))
    result = runner.invoke(app, ["policy", "test"])
    assert result.exit_code == 0, result.output
    assert f"{len(expected)} passed, 0 failed" in flat(result.stdout)
    assert RESIDENTIAL in result.stdout


def test_test_exits_1_and_names_the_failing_case_when_a_case_fails(runner, tmp_path):
    folder = tmp_path / "failing"
    folder.mkdir()
    write(folder / "adult.yaml", yaml.safe_dump(adult_policy("1.0.0", 18, expect_17="ALLOW")))
    result = runner.invoke(app, ["policy", "test", str(folder)])
    assert result.exit_code == 1
    out = flat(result.stdout)
    assert "FAIL custom.adult@1.0.0 / seventeen: expected ALLOW, got DENY" in out
    assert "1 passed, 1 failed" in out


def test_test_lists_every_case_when_verbose(runner, policy_dir):
    result = runner.invoke(app, ["policy", "test", str(policy_dir), "--verbose"])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("PASS") == 4
    assert "seventeen" in result.stdout and "thirty" in result.stdout


def test_test_runs_only_one_policy_when_policy_option_given(runner, policy_dir):
    result = runner.invoke(app, ["policy", "test", "--policy", RESIDENTIAL])
    assert result.exit_code == 0, result.output
    expected = run_policy_test_cases(load_policy_directory(DEFINITIONS_DIR), RESIDENTIAL)
    assert f"{len(expected)} passed, 0 failed" in flat(result.stdout)
    assert "commission" not in result.stdout


def test_test_fails_with_one_line_when_folder_has_no_cases(runner, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    result = runner.invoke(app, ["policy", "test", str(folder)])
    assert result.exit_code == 1
    assert "no policy test cases" in one_error_line(result.stderr)


def test_test_fails_with_one_line_when_folder_missing(runner, tmp_path):
    result = runner.invoke(app, ["policy", "test", str(tmp_path / "absent")])
    assert result.exit_code == 1
    assert "not a directory" in one_error_line(result.stderr)
