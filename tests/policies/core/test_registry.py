"""Versions, pinning, tenant overrides, diffs and loading directories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from dotmac_shared.business_logic.exceptions import PolicyDefinitionError, PolicyNotFoundError
from dotmac_shared.business_logic.policies import (
    PolicyContext,
    PolicyDecision,
    PolicyEngine,
    PolicyRegistry,
    compile_policy,
    load_policy_file,
)


def document(version: str, min_score: int = 600, **fields: Any) -> dict[str, Any]:
    return {
        "name": "plan_eligibility.residential_basic",
        "version": version,
        "category": "plan_eligibility",
        "rules": [
            {
                "name": "min_credit_score",
                "field": "credit_score",
                "operator": "gte",
                "value": min_score,
                "message": "Credit score too low",
            }
        ],
        **fields,
    }


NAME = "plan_eligibility.residential_basic"


@pytest.fixture
def engine() -> PolicyEngine:
    engine = PolicyEngine()
    for version, score in [("1.0.0", 600), ("1.10.0", 700), ("1.9.0", 650), ("2.0.0-rc.1", 800)]:
        engine.register_policy(document(version, score))
    return engine


def test_latest_is_highest_semver_when_several_versions_registered(engine: PolicyEngine) -> None:
    registry = engine.registry
    assert registry.versions(NAME) == ["1.0.0", "1.9.0", "1.10.0", "2.0.0-rc.1"]
    assert registry.get(NAME).version == "2.0.0-rc.1"
    engine.register_policy(document("2.0.0", 900))
    assert registry.get(NAME).version == "2.0.0"
    assert engine.evaluate(NAME, {"credit_score": 850}).policy_version == "2.0.0"


def test_pinned_version_is_evaluated_when_version_given(engine: PolicyEngine) -> None:
    customer = {"credit_score": 660}
    assert engine.evaluate(NAME, customer, version="1.9.0").decision is PolicyDecision.ALLOW
    assert engine.evaluate(NAME, customer, version="1.10.0").decision is PolicyDecision.DENY
    assert engine.is_allowed(NAME, customer, version="1.0.0") is True
    assert engine.is_allowed(NAME, customer, version="1.10.0") is False


def test_not_found_lists_known_versions_when_pinned_version_unknown(engine: PolicyEngine) -> None:
    with pytest.raises(PolicyNotFoundError) as caught:
        engine.registry.get(NAME, "3.0.0")
    assert caught.value.version == "3.0.0"
    assert caught.value.known == ["1.0.0", "1.9.0", "1.10.0", "2.0.0-rc.1"]
    assert "1.9.0" in caught.value.message


def test_tenant_version_is_preferred_when_tenant_has_override(engine: PolicyEngine) -> None:
    engine.register_policy(document("1.0.0", 500), tenant_id="tenant_a")
    customer = {"credit_score": 550}
    tenant_a = PolicyContext(tenant_id="tenant_a")
    tenant_b = PolicyContext(tenant_id="tenant_b")
    own = engine.evaluate(NAME, customer, tenant_a)
    assert own.decision is PolicyDecision.ALLOW
    assert own.policy_tenant_id == "tenant_a"
    assert own.policy_version == "1.0.0"
    fallback = engine.evaluate(NAME, customer, tenant_b)
    assert fallback.decision is PolicyDecision.DENY
    assert fallback.policy_tenant_id is None
    assert fallback.policy_version == "2.0.0-rc.1"
    assert engine.is_allowed(NAME, customer, tenant_a) is True
    assert engine.is_allowed(NAME, customer, tenant_b) is False
    assert engine.evaluate(NAME, customer).decision is PolicyDecision.DENY


def test_tenant_falls_back_to_global_when_pinned_version_only_global(engine: PolicyEngine) -> None:
    engine.register_policy(document("1.0.0", 500), tenant_id="tenant_a")
    context = PolicyContext(tenant_id="tenant_a")
    pinned = engine.evaluate(NAME, {"credit_score": 660}, context, version="1.10.0")
    assert pinned.policy_tenant_id is None
    assert pinned.decision is PolicyDecision.DENY
    assert engine.registry.versions(NAME, tenant_id="tenant_a") == ["1.0.0"]


def test_list_gives_latest_of_each_policy_when_listing(engine: PolicyEngine) -> None:
    engine.register_policy({**document("1.0.0"), "name": "aaa.first"})
    engine.register_policy(document("9.0.0", 1), tenant_id="tenant_a")
    assert [(p.name, p.version) for p in engine.registry.list()] == [
        ("aaa.first", "1.0.0"),
        (NAME, "2.0.0-rc.1"),
    ]
    assert [p.version for p in engine.registry.list(tenant_id="tenant_a")] == ["1.0.0", "9.0.0"]
    assert len(engine.registry.list(all_versions=True)) == 5
    assert engine.registry.names() == ["aaa.first", NAME]
    assert NAME in engine.registry
    assert len(engine.registry) == 6


def test_diff_shows_changed_lines_when_versions_differ(engine: PolicyEngine) -> None:
    diff = engine.registry.diff(NAME, "1.0.0", "1.9.0")
    assert diff.startswith(f"--- {NAME}@1.0.0\n+++ {NAME}@1.9.0\n")
    assert "-version: 1.0.0\n" in diff
    assert "+version: 1.9.0\n" in diff
    assert "-  value: 600\n" in diff
    assert "+  value: 650\n" in diff
    assert "min_credit_score" not in [
        line[1:].strip() for line in diff.splitlines() if line[:1] in "+-"
    ]


def test_diff_is_empty_when_versions_identical(engine: PolicyEngine) -> None:
    assert engine.registry.diff(NAME, "1.9.0", "1.9.0") == ""
    with pytest.raises(PolicyNotFoundError):
        engine.registry.diff(NAME, "1.0.0", "7.0.0")


def test_registration_is_idempotent_when_same_content_registered_again(
    engine: PolicyEngine,
) -> None:
    first = engine.registry.get(NAME, "1.0.0")
    again = engine.register_policy(document("1.0.0", 600))
    assert again is first


def test_error_when_version_reregistered_with_different_content(engine: PolicyEngine) -> None:
    with pytest.raises(PolicyDefinitionError) as caught:
        engine.register_policy(document("1.0.0", 601))
    assert "already registered with different content" in caught.value.message
    assert engine.registry.get(NAME, "1.0.0").document.rules[0].value == 600


def test_content_hash_ignores_key_order_when_documents_equal() -> None:
    one = compile_policy(document("1.0.0"))
    reordered = compile_policy(dict(reversed(list(document("1.0.0").items()))))
    explicit_defaults = compile_policy(document("1.0.0", on_pass="ALLOW", threshold=0.0))
    assert one.content_hash == reordered.content_hash == explicit_defaults.content_hash
    assert one.content_hash != compile_policy(document("1.0.0", 601)).content_hash


def test_registered_policy_is_compiled_when_policy_object_given() -> None:
    policy = compile_policy(document("1.0.0"))
    engine = PolicyEngine(PolicyRegistry())
    assert engine.register_policy(policy) is policy
    tenant_copy = engine.register_policy(policy, tenant_id="tenant_a")
    assert tenant_copy.tenant_id == "tenant_a"
    assert policy.tenant_id is None
    result = engine.evaluate(NAME, {"credit_score": 1}, PolicyContext(tenant_id="tenant_a"))
    assert result.policy_tenant_id == "tenant_a"


def write(path: Path, data: Any) -> Path:
    if path.suffix == ".json":
        path.write_text(json.dumps(data))
    else:
        path.write_text(yaml.safe_dump(data))
    return path


def test_directory_registers_every_file_when_loaded(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", document("1.0.0"))
    write(tmp_path / "b.yml", document("1.1.0"))
    write(tmp_path / "c.json", {**document("1.0.0"), "name": "other.policy"})
    (tmp_path / "notes.txt").write_text("not a policy")
    engine = PolicyEngine()
    loaded = engine.load_directory(tmp_path)
    assert sorted(p.label for p in loaded) == [
        "other.policy@1.0.0",
        f"{NAME}@1.0.0",
        f"{NAME}@1.1.0",
    ]
    assert engine.registry.versions(NAME) == ["1.0.0", "1.1.0"]


def test_nothing_is_registered_when_one_file_invalid(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", document("1.0.0"))
    broken = document("1.1.0")
    broken["rules"][0]["operator"] = "bigger"
    write(tmp_path / "b.yaml", broken)
    engine = PolicyEngine()
    with pytest.raises(PolicyDefinitionError) as caught:
        engine.load_directory(tmp_path)
    assert str(tmp_path / "b.yaml") in caught.value.message
    assert caught.value.rule_name == "min_credit_score"
    assert caught.value.metadata["file"] == str(tmp_path / "b.yaml")
    assert len(engine.registry) == 0


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("bad.yaml", "name: [unclosed", "invalid YAML"),
        ("bad.json", "{", "invalid JSON"),
        ("two.yaml", "name: a\n---\nname: b\n", "one document"),
        ("alias.yaml", "a: &x [1, 2]\nb: *x\n", "aliases are not allowed"),
        ("list.yaml", "- 1\n- 2\n", "mapping"),
    ],
)
def test_error_names_file_when_file_unreadable(
    tmp_path: Path, name: str, text: str, problem: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(PolicyDefinitionError) as caught:
        load_policy_file(path)
    assert str(path) in caught.value.message
    assert problem in caught.value.message


def test_error_when_directory_missing(tmp_path: Path) -> None:
    with pytest.raises(PolicyDefinitionError, match="not a directory"):
        PolicyEngine().load_directory(tmp_path / "nope")


def test_yaml_dates_are_accepted_when_window_written_unquoted(tmp_path: Path) -> None:
    path = tmp_path / "window.yaml"
    path.write_text(
        yaml.safe_dump(document("1.0.0"))
        + "effective_from: 2026-01-01T00:00:00Z\neffective_until: 2027-01-01\n"
    )
    policy = load_policy_file(path)
    assert policy.effective_from is not None and policy.effective_from.year == 2026
    assert policy.effective_until is not None and policy.effective_until.year == 2027


def test_error_names_link_when_symlink_leads_outside_directory(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    write(folder / "a.yaml", document("1.0.0"))
    outside = write(tmp_path / "secret.yaml", document("1.1.0"))
    (folder / "b.yaml").symlink_to(outside)
    engine = PolicyEngine()
    with pytest.raises(PolicyDefinitionError, match="outside the policy directory") as caught:
        engine.load_directory(folder)
    assert caught.value.metadata["file"] == str(folder / "b.yaml")
    assert len(engine.registry) == 0


def test_error_when_symlink_chain_inside_directory_leads_outside(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    outside = write(tmp_path / "secret.yaml", document("1.1.0"))
    (folder / "hop.txt").symlink_to(outside)  # not a policy file itself
    (folder / "b.yaml").symlink_to(folder / "hop.txt")
    with pytest.raises(PolicyDefinitionError, match="outside the policy directory"):
        PolicyEngine().load_directory(folder)


def test_error_when_symlinked_directory_entry_leads_outside(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (folder / "dir.yaml").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PolicyDefinitionError, match="outside the policy directory"):
        PolicyEngine().load_directory(folder)


def test_symlink_is_loaded_when_it_stays_inside_directory(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    (folder / "versions").mkdir(parents=True)
    write(folder / "versions" / "v1.yaml", document("1.0.0"))
    (folder / "current.yaml").symlink_to(Path("versions") / "v1.yaml")  # relative link
    engine = PolicyEngine()
    assert [p.label for p in engine.load_directory(folder)] == [f"{NAME}@1.0.0"]


def test_directory_is_loaded_when_reached_through_a_symlink(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    write(folder / "a.yaml", document("1.0.0"))
    (tmp_path / "alias").symlink_to(folder)
    assert len(PolicyEngine().load_directory(tmp_path / "alias")) == 1


@pytest.mark.parametrize("kind", ["dangling", "loop"])
def test_error_names_link_when_symlink_cannot_be_followed(tmp_path: Path, kind: str) -> None:
    link = tmp_path / "bad.yaml"
    if kind == "dangling":
        link.symlink_to(tmp_path / "missing.yaml")
    else:
        link.symlink_to(tmp_path / "other.yaml")
        (tmp_path / "other.yaml").symlink_to(link)
    with pytest.raises(PolicyDefinitionError, match="cannot follow symbolic link") as caught:
        PolicyEngine().load_directory(tmp_path)
    assert caught.value.metadata["file"] == str(link)


def test_error_names_file_when_file_larger_than_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * 1_048_576 + "\n")
    with pytest.raises(PolicyDefinitionError, match="larger than 1048576 bytes"):
        load_policy_file(path)
