"""``dotmac-bl policy test --coverage [--fail-under N]``: rule coverage of the shipped cases."""

from __future__ import annotations

from dotmac_shared.business_logic.cli import app
from tests.cli.helpers import flat
from tests.policies.core.test_coverage import reachable_policy, write_folder


def test_coverage_exits_1_and_lists_the_uncovered_rules_when_below_fail_under(runner, tmp_path):
    folder = write_folder(tmp_path / "partial", reachable_policy(full=False))
    result = runner.invoke(
        app, ["policy", "test", str(folder), "--coverage", "--fail-under", "100"]
    )
    assert result.exit_code == 1, result.output
    out = flat(result.stdout)
    assert "2 passed, 0 failed" in out  # the cases pass; only coverage is short
    assert "rule coverage: 1/4 rules seen both ways (25.0%)" in out
    assert "rule coverage 25.0% is below 100%" in out
    rows = flat(result.stdout.replace("│", " "))
    for row in ("reachable rules[1] any pass only", "has_phone rules[1].any[1] leaf fail only"):
        assert row in rows


def test_coverage_exits_0_when_every_rule_was_seen_both_ways(runner, tmp_path):
    folder = write_folder(tmp_path / "full", reachable_policy(full=True))
    result = runner.invoke(
        app, ["policy", "test", str(folder), "--coverage", "--fail-under", "100"]
    )
    assert result.exit_code == 0, result.output
    assert "rule coverage: 4/4 rules seen both ways (100.0%)" in flat(result.stdout)
    assert "Uncovered rules" not in result.stdout


def test_coverage_exits_0_when_below_100_but_no_threshold_given(runner, tmp_path):
    folder = write_folder(tmp_path / "partial", reachable_policy(full=False))
    result = runner.invoke(app, ["policy", "test", str(folder), "--coverage"])
    assert result.exit_code == 0, result.output
    assert "(25.0%)" in flat(result.stdout)


def test_fail_under_implies_coverage_when_given_alone(runner, tmp_path):
    folder = write_folder(tmp_path / "partial", reachable_policy(full=False))
    result = runner.invoke(app, ["policy", "test", str(folder), "--fail-under", "20"])
    assert result.exit_code == 0, result.output
    assert "(25.0%)" in flat(result.stdout)


def test_coverage_lists_every_rule_when_verbose(runner, tmp_path):
    folder = write_folder(tmp_path / "full", reachable_policy(full=True))
    result = runner.invoke(app, ["policy", "test", str(folder), "--coverage", "--verbose"])
    assert result.exit_code == 0, result.output
    assert flat(result.stdout).count("│ both │") == 4


def test_shipped_policies_reach_full_coverage_when_run_from_the_command_line(runner):
    result = runner.invoke(app, ["policy", "test", "--coverage", "--fail-under", "100"])
    assert result.exit_code == 0, result.output
    assert "(100.0%)" in flat(result.stdout)


def test_coverage_is_counted_for_one_policy_when_policy_option_given(runner, tmp_path):
    folder = write_folder(
        tmp_path / "two",
        reachable_policy(full=True),
        reachable_policy(full=False) | {"name": "custom.other"},
    )
    args = ["policy", "test", str(folder), "--policy", "custom.reachable", "--fail-under", "100"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "custom.other" not in result.stdout
