"""``dotmac-bl policy check PATH...``: findings per file, exit 1 on errors only, --json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from dotmac_shared.business_logic.cli import app
from dotmac_shared.business_logic.policies._eligibility import DEFINITIONS_DIR
from tests.cli.helpers import flat, one_error_line


def document(name: str, *rules: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "version": "1.0.0", "rules": list(rules)}


CONTRADICTION = document(
    "custom.contradiction",
    {"name": "high", "field": "score", "operator": "gte", "value": 600},
    {"name": "low", "field": "score", "operator": "lt", "value": 500},
)
SHADOWED = document(
    "custom.shadowed",
    {"name": "good", "field": "score", "operator": "gte", "value": 700},
    {"name": "fair", "field": "score", "operator": "gte", "value": 600},
)
CLEAN = document("custom.clean", {"name": "adult", "field": "age", "operator": "gte", "value": 18})


def write(folder: Path, name: str, data: dict[str, Any]) -> Path:
    path = folder / name
    text = json.dumps(data) if name.endswith(".json") else yaml.safe_dump(data)
    path.write_text(text, encoding="utf-8")
    return path


def test_check_exits_0_and_reports_no_findings_when_shipped_policies_checked(runner):
    result = runner.invoke(app, ["policy", "check", str(DEFINITIONS_DIR)])
    assert result.exit_code == 0, result.output
    assert "11 files checked: 0 errors, 0 warnings" in flat(result.stdout)


def test_check_exits_1_and_prints_the_error_when_a_rule_can_never_pass(runner, tmp_path):
    path = write(tmp_path, "contradiction.yaml", CONTRADICTION)
    result = runner.invoke(app, ["policy", "check", str(path)])
    assert result.exit_code == 1, result.output
    out = flat(result.stdout)
    assert "contradiction.yaml (custom.contradiction@1.0.0)" in out
    assert "error │ never-passes │ low │ rules[1]" in out
    assert "1 files checked: 1 errors, 0 warnings" in out


def test_check_exits_0_when_there_are_only_warnings(runner, tmp_path):
    path = write(tmp_path, "shadowed.yaml", SHADOWED)
    result = runner.invoke(app, ["policy", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert "warning │ shadowed-rule │ fair" in flat(result.stdout)
    assert "0 errors, 1 warnings" in flat(result.stdout)


def test_check_reads_every_file_of_a_folder_and_the_files_named(runner, tmp_path):
    folder = tmp_path / "policies"
    folder.mkdir()
    write(folder, "a_clean.yaml", CLEAN)
    write(folder, "b_shadowed.json", SHADOWED)
    (folder / "notes.txt").write_text("not a policy")
    extra = write(tmp_path, "contradiction.yml", CONTRADICTION)
    result = runner.invoke(app, ["policy", "check", str(folder), str(extra), "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert [Path(item["file"]).name for item in report["files"]] == [
        "a_clean.yaml",
        "b_shadowed.json",
        "contradiction.yml",
    ]
    assert [item["findings"] for item in report["files"]][0] == []
    assert report["files"][1]["findings"] == [
        {
            "severity": "warning",
            "code": "shadowed-rule",
            "policy": "custom.shadowed",
            "version": "1.0.0",
            "rule": "fair",
            "location": "rules[1]",
            "message": "rule 'good' (rules[0]) implies it: it adds nothing to the all",
        }
    ]
    assert report["files"][2]["findings"][0]["code"] == "never-passes"
    assert (report["errors"], report["warnings"]) == (1, 1)


def test_check_json_exits_0_when_nothing_is_wrong(runner, tmp_path):
    path = write(tmp_path, "clean.yaml", CLEAN)
    result = runner.invoke(app, ["policy", "check", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["files"][0]["policy"] == "custom.clean"
    assert (report["errors"], report["warnings"]) == (0, 0)


def test_check_reports_an_invalid_document_as_an_error_of_its_file(runner, tmp_path):
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    write(tmp_path, "clean.yaml", CLEAN)
    result = runner.invoke(app, ["policy", "check", str(tmp_path), "--json"])
    assert result.exit_code == 1, result.output
    broken, clean = json.loads(result.stdout)["files"]
    assert broken["findings"][0]["code"] == "invalid-document"
    assert "invalid YAML" in broken["findings"][0]["message"]
    assert clean["findings"] == []


def test_check_fails_with_one_line_when_a_path_does_not_exist(runner, tmp_path):
    result = runner.invoke(app, ["policy", "check", str(tmp_path / "nowhere")])
    assert result.exit_code == 1
    assert "no such file or folder" in one_error_line(result.stderr)


def test_check_fails_with_one_line_when_a_folder_holds_no_policy_files(runner, tmp_path):
    result = runner.invoke(app, ["policy", "check", str(tmp_path)])
    assert result.exit_code == 1
    assert "no policy files" in one_error_line(result.stderr)
