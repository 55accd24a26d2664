"""Decision log and impact analysis: what recording costs, and replaying a million decisions.

1. Per decision: ``evaluate``/``is_allowed`` with no recorder (one ``None`` check) and with
   a buffering recorder (sampling, redaction, snapshot, buffer append; the batched write is
   measured separately in step 2).
2. One million varied customers decided by the shipped ``plan_eligibility.residential_basic``
   1.0.0, recorded to a JSON Lines decision log (background batched writes).
3. ``PolicyEngine.impact`` replays them through 1.0.0 and a candidate 1.1.0 (credit score
   620 instead of 600): from the log file, and from memory; side by side with the time
   zen-engine takes to decide the same inputs once with the equivalent expression (all of
   them) and decision table (a tenth, scaled, as its per-call cost is far higher).

Run: ``.venv/bin/python -m benchmarks policy_impact`` (``DOTMAC_BENCH_IMPACT_N`` overrides
the million).
"""

from __future__ import annotations

import copy
import gc
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zen

from benchmarks.bench_policies import CONTEXT, CUSTOMER, ZEN_EXPRESSION, ZEN_TABLE, customers
from benchmarks.support import print_table, sync_per_call_us
from dotmac_shared.business_logic.policies import (
    BufferedDecisionRecorder,
    JsonLinesDecisionRecorder,
    PolicyEngine,
    parse_input_lines,
)
from dotmac_shared.business_logic.policies._eligibility import shipped_policy

NAME = "plan_eligibility.residential_basic"
COUNT = int(os.environ.get("DOTMAC_BENCH_IMPACT_N", "1000000"))
TARGET_SECONDS = 10.0


def two_versions() -> PolicyEngine:
    """The shipped 1.0.0 and a candidate 1.1.0 asking for a credit score of 620."""
    engine = PolicyEngine()
    shipped = shipped_policy(NAME)
    engine.register_policy(shipped)
    candidate = copy.deepcopy(shipped.canonical)
    candidate["version"] = "1.1.0"
    for rule in candidate["rules"]:
        if rule["name"] == "minimum_credit_score":
            rule["value"] = 620
    engine.register_policy(candidate)
    return engine


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def recording_costs(engine: PolicyEngine) -> list[list[str]]:
    recorder = BufferedDecisionRecorder(redact=["id"], max_buffered=10_000_000)
    failing = {**CUSTOMER, "credit_score": 550}

    def measure(label: str, fn: Callable[[], object], n: int) -> tuple[str, float]:
        best = float("inf")
        for _ in range(15):
            # Empty the buffer between runs, as the background writer would.
            recorder.take()
            best = min(best, sync_per_call_us(fn, n, repeat=1))
        return label, best

    engine.recorder = None
    plain = [
        measure("is_allowed, no recorder", lambda: engine.is_allowed(NAME, CUSTOMER), 20_000),
        measure("evaluate, no recorder", lambda: engine.evaluate(NAME, CUSTOMER, CONTEXT), 10_000),
        measure("evaluate DENY, no recorder", lambda: engine.evaluate(NAME, failing), 10_000),
    ]
    engine.recorder = recorder
    recorded = [
        measure("is_allowed, recorded", lambda: engine.is_allowed(NAME, CUSTOMER), 5_000),
        measure("evaluate, recorded", lambda: engine.evaluate(NAME, CUSTOMER, CONTEXT), 5_000),
        measure("evaluate DENY, recorded", lambda: engine.evaluate(NAME, failing), 5_000),
    ]
    engine.recorder = None
    recorder.take()
    rows = []
    for (label, us), (recorded_label, recorded_us) in zip(plain, recorded, strict=True):
        rows.append([label, f"{us:.2f}", "-"])
        rows.append([recorded_label, f"{recorded_us:.2f}", f"+{recorded_us - us:.2f} µs"])
    return rows


def record_log(engine: PolicyEngine, path: Path) -> float:
    """Decide COUNT customers with the JSONL recorder on; returns the seconds it took."""
    batch = customers(COUNT)
    # A tight loop of decisions outruns the background writer (which gets the GIL between
    # them); size the buffer for the whole run so that every decision reaches the log.
    with JsonLinesDecisionRecorder(
        path, redact=["id"], batch_size=5000, max_buffered=COUNT + 1
    ) as log:
        engine.recorder = log
        evaluate = engine.evaluate

        def decide_all() -> None:
            for customer in batch:  # results are not kept: a service does not keep them
                evaluate(NAME, customer, CONTEXT, version="1.0.0")

        seconds, _ = timed(decide_all)
        close_seconds, _ = timed(log.close)
    engine.recorder = None
    return seconds + close_seconds


def main() -> None:
    os.environ["RUST_LIB_BACKTRACE"] = "0"  # zen raises on a missing credit score
    engine = two_versions()
    print_table(
        "Recording cost per decision (best of 15; buffering recorder redacting one path, "
        "drained between runs; the batched write is not included)",
        ["call", "µs/decision", "recording adds"],
        recording_costs(engine),
    )

    folder = Path(tempfile.mkdtemp(prefix="dotmac_bench_impact_"))
    log_path = folder / "decisions.jsonl"
    record_seconds = record_log(engine, log_path)
    gc.collect()  # the recording's garbage is not the replay's cost
    size_mb = log_path.stat().st_size / 1e6

    def replay_log() -> Any:
        with log_path.open("rb") as handle:
            items = parse_input_lines(handle, decisions=True, policy_name=NAME)
            return engine.impact(NAME, "1.0.0", "1.1.0", items)

    # Best of two: the machine is shared.
    log_seconds, report = min(timed(replay_log), timed(replay_log), key=lambda run: run[0])
    assert report.total == COUNT and report.problem_count == 0, report.to_dict()

    batch = customers(COUNT)
    memory_seconds, in_memory = timed(lambda: engine.impact(NAME, "1.0.0", "1.1.0", batch))
    assert in_memory.flipped == report.flipped and in_memory.transitions == report.transitions

    expression = zen.compile_expression(ZEN_EXPRESSION)

    def zen_safe(customer: dict[str, Any]) -> bool:
        try:
            return expression.evaluate(customer) is True
        except RuntimeError:  # zen raises on `null >= 600` (a missing credit score)
            return False

    zen_seconds, zen_answers = timed(lambda: [zen_safe(customer) for customer in batch])
    assert sum(zen_answers) == report.from_decisions.get("ALLOW", 0), "zen disagrees"
    table = zen.ZenEngine().create_decision(json.dumps(ZEN_TABLE))
    tenth = batch[: max(COUNT // 10, 1)]
    table_seconds, table_answers = timed(
        lambda: [table.evaluate(customer)["result"]["eligible"] for customer in tenth]
    )
    assert sum(table_answers) == sum(zen_answers[: len(tenth)]), "zen table disagrees"
    table_seconds *= COUNT / len(tenth)

    rows = []
    for label, seconds in (
        ("impact: replay the JSONL decision log, 2 versions", log_seconds),
        ("impact: replay inputs in memory, 2 versions", memory_seconds),
        ("zen-engine compiled expression, 1 version", zen_seconds),
        ("zen-engine decision table, 1 version (1/10 run, x10)", table_seconds),
        ("(setup) evaluate + record the log, 1 version", record_seconds),
    ):
        rows.append(
            [
                label,
                f"{seconds:.2f}",
                f"{seconds / COUNT * 1e6:.2f}",
                f"{seconds / zen_seconds:.2f}x",
            ]
        )
    print_table(
        f"{COUNT:,} recorded decisions of {NAME} ({size_mb:.0f} MB log); ratio vs zen expression",
        ["run", "seconds", "µs/input", "ratio"],
        rows,
    )
    data = report.to_dict()
    print(
        f"\nflipped {data['flipped']:,} of {data['total']:,}: {data['transitions']}; "
        f"by rule: { {name: rule['flipped'] for name, rule in data['by_rule'].items()} }"
        f"\ntarget replay of the log < {TARGET_SECONDS:.0f} s: {log_seconds:.2f} s -> "
        f"{'met' if log_seconds < TARGET_SECONDS else 'MISSED'}"
    )
    log_path.unlink()
    folder.rmdir()


if __name__ == "__main__":
    main()
