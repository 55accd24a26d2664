"""Rule coverage of the test cases policy documents ship: pure report, CLI gate, pytest gate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from dotmac_shared.business_logic.policies import (
    PolicyEngine,
    RuleSeen,
    compile_policy,
    load_policy_directory,
    policy_coverage,
    run_policy_coverage,
    run_policy_test_cases,
)
from dotmac_shared.business_logic.policies._eligibility import DEFINITIONS_DIR

PLUGIN = "dotmac_shared.business_logic.policies.pytest_plugin"


def reachable_policy(*, full: bool) -> dict[str, Any]:
    """A leaf and an ``any`` group of two leaves; ``full`` adds the cases that cover all."""
    cases: list[dict[str, Any]] = [
        {"name": "adult_with_email", "input": {"age": 30, "email": "a@b"}, "expect": "ALLOW"},
        {"name": "minor_with_email", "input": {"age": 17, "email": "a@b"}, "expect": "DENY"},
    ]
    if full:
        cases += [
            {"name": "unreachable", "input": {"age": 30}, "expect": "DENY"},
            {"name": "adult_with_phone", "input": {"age": 30, "phone": "1"}, "expect": "ALLOW"},
        ]
    return {
        "name": "custom.reachable",
        "version": "1.0.0",
        "rules": [
            {"name": "adult", "field": "age", "operator": "gte", "value": 18},
            {
                "name": "reachable",
                "any": [
                    {"name": "has_email", "field": "email", "operator": "exists"},
                    {"name": "has_phone", "field": "phone", "operator": "exists"},
                ],
            },
        ],
        "test_cases": cases,
    }


def write_folder(folder: Path, *documents: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, document in enumerate(documents):
        (folder / f"policy_{index}.yaml").write_text(yaml.safe_dump(document))
    return folder


# --- the pure report ------------------------------------------------------------------------


def test_rules_seen_only_passing_are_uncovered_when_cases_never_fail_them():
    report = run_policy_coverage(compile_policy(reachable_policy(full=False)))
    seen = {rule.name: rule.seen for policy in report.policies for rule in policy.rules}
    assert seen == {
        "adult": RuleSeen.BOTH,
        "reachable": RuleSeen.PASS_ONLY,
        "has_email": RuleSeen.PASS_ONLY,
        "has_phone": RuleSeen.FAIL_ONLY,
    }
    assert (report.covered, report.total, report.percent) == (1, 4, 25.0)
    assert [rule.address for rule in report.uncovered] == [
        "custom.reachable@1.0.0 rules[1] (reachable)",
        "custom.reachable@1.0.0 rules[1].any[0] (has_email)",
        "custom.reachable@1.0.0 rules[1].any[1] (has_phone)",
    ]
    assert not report.meets(100)


def test_group_rules_and_their_children_count_when_measuring_coverage():
    report = run_policy_coverage(compile_policy(reachable_policy(full=True)))
    (policy,) = report.policies
    kinds = {rule.location: rule.kind for rule in policy.rules}
    assert kinds == {
        "rules[0]": "leaf",
        "rules[1]": "any",
        "rules[1].any[0]": "leaf",
        "rules[1].any[1]": "leaf",
    }
    assert (policy.cases, policy.covered, policy.total, report.percent) == (4, 4, 4, 100.0)
    assert report.meets(100)


def test_rules_are_never_seen_when_the_policy_is_not_in_force_for_any_case():
    document = reachable_policy(full=True) | {"effective_from": "2000-01-01T00:00:00Z"}
    document["effective_until"] = "2000-01-02T00:00:00Z"
    report = run_policy_coverage(compile_policy(document))
    assert {rule.seen for rule in report.uncovered} == {RuleSeen.NEVER}
    assert report.percent == 0.0


def test_coverage_is_computed_from_results_alone_when_given_evaluations():
    policy = compile_policy(reachable_policy(full=False))
    other = compile_policy(reachable_policy(full=False) | {"version": "2.0.0"})
    results = [policy.evaluate({"age": 17}), other.evaluate({"age": 30, "email": "x"})]
    coverage = policy_coverage(policy, results)
    assert coverage.cases == 1  # the other version's result is not counted
    assert {rule.name: (rule.passed, rule.failed) for rule in coverage.rules} == {
        "adult": (0, 1),
        "reachable": (0, 1),
        "has_email": (0, 1),
        "has_phone": (0, 1),
    }


def test_every_registered_version_is_measured_when_given_an_engine():
    engine = PolicyEngine()
    engine.register_policy(reachable_policy(full=True))
    engine.register_policy(reachable_policy(full=False), tenant_id="t1")
    report = run_policy_coverage(engine)
    assert [(p.policy, p.percent) for p in report.policies] == [
        ("custom.reachable@1.0.0", 100.0),
        ("custom.reachable@1.0.0 [tenant t1]", 25.0),
    ]
    assert report.to_dict()["percent"] == 100.0 * 5 / 8


def test_shipped_domain_policies_cover_every_rule_when_their_cases_run():
    policies = load_policy_directory(DEFINITIONS_DIR)
    assert all(outcome.passed for outcome in run_policy_test_cases(policies))
    report = run_policy_coverage(policies)
    assert report.uncovered == (), report.format_text()
    assert report.percent == 100.0
    assert {policy.policy.split("@")[0] for policy in report.policies} == {
        policy.name for policy in policies
    }


# --- the pytest plugin ----------------------------------------------------------------------


def run_pytest(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """A separate pytest session over one trivial test, with the plugin's options."""
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    (project / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    (project / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", PLUGIN, "-p", "no:cacheprovider", *options],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_pytest_session_fails_and_lists_uncovered_rules_when_below_fail_under(tmp_path):
    folder = write_folder(tmp_path / "partial", reachable_policy(full=False))
    result = run_pytest(tmp_path, f"--policy-coverage={folder}", "--policy-coverage-fail-under=100")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert "pass only custom.reachable@1.0.0 rules[1] (reachable)" in result.stdout
    assert "policy rule coverage 25.0% < 100%" in result.stdout


def test_pytest_session_passes_and_prints_the_table_when_coverage_is_full(tmp_path):
    folder = write_folder(tmp_path / "full", reachable_policy(full=True))
    result = run_pytest(tmp_path, f"--policy-coverage={folder}", "--policy-coverage-fail-under=100")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "policy rule coverage" in result.stdout
    assert "100.0%" in result.stdout


def test_pytest_measures_the_shipped_policies_when_no_folder_given(tmp_path):
    result = run_pytest(tmp_path, "--policy-coverage", "--policy-coverage-fail-under=100")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "plan_eligibility.residential_basic@1.0.0" in result.stdout


def test_pytest_session_fails_naming_the_file_when_a_document_is_invalid(tmp_path):
    folder = write_folder(tmp_path / "bad")
    (folder / "broken.yaml").write_text("name: x\nversion: 1.0.0\nrules: []\n")
    result = run_pytest(tmp_path, f"--policy-coverage={folder}")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "cannot measure policy coverage" in result.stdout
    assert "broken.yaml" in result.stdout


def test_pytest_prints_nothing_of_policies_when_the_option_is_absent(tmp_path):
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "policy rule coverage" not in result.stdout


@pytest.mark.parametrize("flag", ["--policy-coverage", "--policy-coverage-fail-under=1"])
def test_pytest_plugin_options_are_listed_when_help_is_asked(tmp_path, flag):
    result = run_pytest(tmp_path, "--help")
    assert flag.split("=")[0] in result.stdout
