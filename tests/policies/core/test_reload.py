"""Atomic hot reload: a folder is validated whole, then swapped in with one reference."""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dotmac_shared.business_logic.exceptions import PolicyDefinitionError, PolicyNotFoundError
from dotmac_shared.business_logic.policies import (
    PlanEligibilityEngine,
    PolicyContext,
    PolicyEngine,
)
from dotmac_shared.business_logic.policies._eligibility import shipped_policy

ENGINE_LOGGER = "dotmac_shared.business_logic.policies.core._engine"
PERSON = {"age": 19}
# Set "1" lets a 19-year-old through both policies, set "2" through neither: each
# decision (and each result's version) tells which set evaluated it.
SETS: dict[str, dict[str, Any]] = {
    "1": {"version": "1.0.0", "minimum": 18},
    "2": {"version": "2.0.0", "minimum": 21, "description": "the stricter set, longer file"},
}
EXPECTED = {
    "1": ("1.0.0", "ALLOW", "1.0.0", "ALLOW"),
    "2": ("2.0.0", "DENY", "2.0.0", "DENY"),
}


def document(name: str, version_set: str) -> dict[str, Any]:
    spec = SETS[version_set]
    doc: dict[str, Any] = {
        "name": name,
        "version": spec["version"],
        "rules": [
            {"name": "old_enough", "field": "age", "operator": "gte", "value": spec["minimum"]}
        ],
    }
    if "description" in spec:
        doc["description"] = spec["description"]
    return doc


def write_set(folder: Path, version_set: str) -> Path:
    """Write both policies of a set, each file replaced atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("p1", "p2"):
        staged = folder / f".{name}.tmp"
        staged.write_text(yaml.safe_dump(document(name, version_set)))
        os.replace(staged, folder / f"{name}.yaml")
    return folder


def decide(engine: PolicyEngine) -> tuple[str, str, str, str]:
    """One decision over both policies, on one snapshot of the set in force."""
    view = engine.snapshot()
    first = view.evaluate("p1", PERSON)
    second = view.evaluate("p2", PERSON)
    return (
        first.policy_version,
        first.decision.value,
        second.policy_version,
        second.decision.value,
    )


@pytest.fixture
def fast_switching() -> Iterator[None]:
    # Switch threads as often as possible so that evaluations interleave with swaps.
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def test_threads_never_see_a_mixed_set_when_versions_are_swapped_back_and_forth(
    tmp_path, fast_switching
):
    one, two = write_set(tmp_path / "one", "1"), write_set(tmp_path / "two", "2")
    bad = write_set(tmp_path / "bad", "2")
    (bad / "broken.yaml").write_text("name: broken\nversion: 1.0.0\nrules: []\n")
    engine = PolicyEngine()
    engine.reload_directory(one)
    seen: list[tuple[str, str, str, str]] = []
    stop = threading.Event()

    def evaluate_continuously() -> None:
        while not stop.is_set():
            seen.append(decide(engine))
            assert engine.is_allowed("p1", PERSON) in (True, False)

    workers = [threading.Thread(target=evaluate_continuously) for _ in range(2)]
    for worker in workers:
        worker.start()
    try:
        for swap in range(60):
            engine.reload_directory(two if swap % 2 == 0 else one)
            if swap == 30:  # set "2" is in force; a bad folder must leave it there
                before = engine.registry
                with pytest.raises(PolicyDefinitionError, match="broken.yaml"):
                    engine.reload_directory(bad)
                assert engine.registry is before
                assert decide(engine) == EXPECTED["2"]
            time.sleep(0)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=10)
    assert set(seen) <= set(EXPECTED.values()), set(seen) - set(EXPECTED.values())
    assert set(seen) == set(EXPECTED.values())  # both sets were really evaluated


async def test_tasks_never_see_a_mixed_set_when_watch_reloads_a_changing_folder(tmp_path, caplog):
    folder = write_set(tmp_path / "live", "1")
    engine = PolicyEngine()
    engine.reload_directory(folder)
    seen: list[tuple[str, str, str, str]] = []
    stop = asyncio.Event()

    async def evaluate_continuously() -> None:
        while not stop.is_set():
            view = engine.snapshot()
            first = view.evaluate("p1", PERSON)
            await asyncio.sleep(0)  # a reload may complete here; the snapshot holds
            second = view.evaluate("p2", PERSON)
            seen.append(
                (first.policy_version, first.decision.value)
                + (second.policy_version, second.decision.value)
            )
            # Yield for a moment, not just a turn: two tasks spinning on sleep(0) starve the
            # reload thread of the GIL, and on a loaded machine a reload took past the timeout.
            await asyncio.sleep(0.001)

    async def in_force(expected: tuple[str, str, str, str]) -> None:
        async with asyncio.timeout(10):
            while decide(engine) != expected:
                await asyncio.sleep(0.001)

    # interval=0: the watcher polls as fast as the loop turns, no waiting on the wall clock.
    watcher = asyncio.create_task(engine.watch(folder, interval=0))
    tasks = [asyncio.create_task(evaluate_continuously()) for _ in range(2)]
    caplog.set_level(logging.ERROR, logger=ENGINE_LOGGER)
    try:
        for swap in range(40):
            version_set = "2" if swap % 2 == 0 else "1"
            write_set(folder, version_set)  # no await in between: the watcher sees both files
            await in_force(EXPECTED[version_set])
            if swap == 20:  # set "2" is in force
                before = engine.registry
                (folder / "broken.yaml").write_text("name: broken\nversion: 1.0.0\nrules: []\n")
                async with asyncio.timeout(10):
                    while not any("broken.yaml" in r.getMessage() for r in caplog.records):
                        await asyncio.sleep(0.001)
                assert engine.registry is before
                assert decide(engine) == EXPECTED["2"]
                (folder / "broken.yaml").unlink()
    finally:
        stop.set()
        watcher.cancel()
        await asyncio.gather(*tasks)
        with pytest.raises(asyncio.CancelledError):
            await watcher
    assert set(seen) <= set(EXPECTED.values()), set(seen) - set(EXPECTED.values())
    assert set(seen) == set(EXPECTED.values())
    (record,) = [r for r in caplog.records if "broken.yaml" in r.getMessage()]
    assert "previous policies stay in force" in record.getMessage()


def test_reload_fails_naming_the_file_and_keeps_the_old_set_when_one_file_is_invalid(tmp_path):
    folder = write_set(tmp_path / "policies", "1")
    engine = PolicyEngine()
    engine.reload_directory(folder)
    write_set(folder, "2")
    (folder / "zz_bad.json").write_text('{"name": "bad", "version": "1.0.0", "rules": [')
    before = engine.registry
    with pytest.raises(PolicyDefinitionError) as caught:
        engine.reload_directory(folder)
    assert str(folder / "zz_bad.json") in caught.value.message
    assert caught.value.metadata["file"] == str(folder / "zz_bad.json")
    assert engine.registry is before
    assert decide(engine) == EXPECTED["1"]  # p1 and p2 of set "2" were valid, yet not used


def test_reload_replaces_the_global_set_and_keeps_tenant_overrides_when_reloading_globals(
    tmp_path,
):
    engine = PolicyEngine()
    engine.register_policy(document("p1", "1"))
    engine.register_policy(document("gone", "1"))
    engine.register_policy(document("p1", "1"), tenant_id="acme")
    loaded = engine.reload_directory(write_set(tmp_path / "two", "2"))
    assert sorted(policy.label for policy in loaded) == ["p1@2.0.0", "p2@2.0.0"]
    assert engine.evaluate("p1", PERSON).policy_version == "2.0.0"
    acme = PolicyContext(tenant_id="acme")
    assert engine.evaluate("p1", PERSON, acme).policy_version == "1.0.0"  # carried over
    with pytest.raises(PolicyNotFoundError):
        engine.evaluate("gone", PERSON)  # absent from the folder: no longer in force
    with pytest.raises(PolicyNotFoundError):
        engine.evaluate("p1", PERSON, version="1.0.0")  # a pinned old global version too


def test_reload_replaces_only_that_tenants_versions_when_tenant_given(tmp_path):
    engine = PolicyEngine()
    engine.reload_directory(write_set(tmp_path / "one", "1"))
    engine.register_policy(document("p2", "1"), tenant_id="acme")
    engine.reload_directory(write_set(tmp_path / "two", "2"), tenant_id="acme")
    acme = PolicyContext(tenant_id="acme")
    assert engine.evaluate("p1", PERSON, acme).policy_version == "2.0.0"
    assert engine.registry.versions("p2", tenant_id="acme") == ["2.0.0"]
    assert decide(engine) == EXPECTED["1"]  # the global set is untouched


def test_snapshot_keeps_evaluating_the_old_set_when_a_reload_happens_after_it(tmp_path):
    engine = PolicyEngine()
    engine.reload_directory(write_set(tmp_path / "one", "1"))
    view = engine.snapshot()
    engine.reload_directory(write_set(tmp_path / "two", "2"))
    assert decide(view) == EXPECTED["1"]
    assert decide(engine) == EXPECTED["2"]


def test_domain_engines_decide_with_the_reloaded_set_when_they_hold_the_engine(tmp_path):
    engine = PolicyEngine()
    plans = PlanEligibilityEngine(engine)
    customer = {
        "customer_type": "residential",
        "credit_score": 590,
        "outstanding_balance": 0.0,
        "location": {"service_coverage": True},
    }
    assert plans.check_plan_eligibility("residential_basic", customer)["eligible"] is False
    # A deep copy: the shipped policy (and its canonical form) is cached for the process.
    lenient = copy.deepcopy(shipped_policy("plan_eligibility.residential_basic").canonical)
    lenient |= {"version": "2.0.0", "test_cases": []}
    for rule in lenient["rules"]:
        if rule.get("operator") == "gte":
            rule["value"] = 500
    folder = tmp_path / "lenient"
    folder.mkdir()
    (folder / "residential.yaml").write_text(yaml.safe_dump(lenient))
    engine.reload_directory(folder)
    assert plans.check_plan_eligibility("residential_basic", customer)["eligible"] is True


def test_reload_logs_a_warning_when_a_version_changes_content_in_place(tmp_path, caplog):
    folder = write_set(tmp_path / "policies", "1")
    engine = PolicyEngine()
    engine.reload_directory(folder)
    changed = document("p1", "1")
    changed["rules"][0]["value"] = 16
    (folder / "p1.yaml").write_text(yaml.safe_dump(changed))
    with caplog.at_level(logging.WARNING, logger=ENGINE_LOGGER):
        engine.reload_directory(folder)
    assert any("p1@1.0.0 changed content" in r.getMessage() for r in caplog.records)
    assert engine.evaluate("p1", {"age": 17}).decision.value == "ALLOW"


async def test_watch_loads_first_then_reloads_only_when_a_policy_file_changes(
    tmp_path, monkeypatch
):
    folder = write_set(tmp_path / "policies", "1")
    engine = PolicyEngine()
    reloads: list[Path] = []
    original = engine.reload_directory

    def counting(path: Any, **kwargs: Any) -> Any:
        reloads.append(path)
        return original(path, **kwargs)

    monkeypatch.setattr(engine, "reload_directory", counting)
    polls = asyncio.Queue[None]()
    asleep = asyncio.Queue[None]()

    async def stepped_sleep(_interval: float) -> None:
        await asleep.put(None)
        await polls.get()

    async def poll_once() -> None:
        await polls.put(None)
        await asleep.get()  # asleep again: that poll (and any reload) is over

    watcher = asyncio.create_task(engine.watch(folder, interval=5, sleep=stepped_sleep))
    try:
        await asleep.get()
        assert reloads == [folder]  # loaded before the first sleep
        assert decide(engine) == EXPECTED["1"]
        (folder / "notes.txt").write_text("not a policy file")
        await poll_once()
        assert reloads == [folder]
        write_set(folder, "2")
        await poll_once()
        assert reloads == [folder, folder]
        assert decide(engine) == EXPECTED["2"]
        await poll_once()
        assert reloads == [folder, folder]
    finally:
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher


async def test_watch_logs_and_keeps_the_old_set_when_the_folder_disappears(tmp_path, caplog):
    folder = write_set(tmp_path / "policies", "1")
    engine = PolicyEngine()
    engine.reload_directory(folder)
    caplog.set_level(logging.ERROR, logger=ENGINE_LOGGER)
    watcher = asyncio.create_task(engine.watch(tmp_path / "absent", interval=0))
    try:
        async with asyncio.timeout(10):
            while not caplog.records:
                await asyncio.sleep(0.001)
    finally:
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher
    assert "not a directory" in caplog.records[0].getMessage()
    assert len(caplog.records) == 1  # logged once, not at every poll
    assert decide(engine) == EXPECTED["1"]
