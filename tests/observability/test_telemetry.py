"""Spans, metrics and log context read back with the OpenTelemetry SDK's in-memory readers.

The library gets its tracer and meter through the global OpenTelemetry API; its instruments
are created at import from the API's proxy meter, which forwards to whatever provider is set
globally later. The global meter provider can be set once per process, and another test
module (tests/policies/core/test_engine.py) sets its own, so this module resets the API's
"set once" guard around its own provider, as OpenTelemetry's own test utilities do.
"""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from dotmac_shared.business_logic.exceptions import IdempotencyPayloadMismatchError
from dotmac_shared.business_logic.idempotency import (
    IdempotencyKey,
    IdempotencyManager,
    IdempotentOperation,
)
from dotmac_shared.business_logic.observability import correlation_scope
from dotmac_shared.business_logic.operations import run_billing, seed_demo_data
from dotmac_shared.business_logic.operations._billing_steps import billing_run_id
from dotmac_shared.business_logic.policies import PolicyEngine
from dotmac_shared.business_logic.sagas import (
    SagaContext,
    SagaCoordinator,
    SagaDefinition,
    SagaStep,
    StepContext,
)
from tests.support.telemetry import metric_reader_installed

IDEMPOTENCY_REQUESTS = "dotmac.idempotency.requests"
SAGA_FINISHED = "dotmac.saga.finished"
SAGA_STEP_DURATION = "dotmac.saga.step.duration"
POLICY_DURATION = "dotmac.policy.evaluation.duration"
BILLING_CUSTOMERS = "dotmac.billing.customers_processed"


@dataclass
class Telemetry:
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader

    def finished_spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if name is None or s.name == name]

    def points(self, metric: str, **attributes: Any) -> list[Any]:
        """Data points of ``metric`` whose attributes include ``attributes``."""
        data = self.reader.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for item in scope.metrics:
                    if item.name != metric:
                        continue
                    for point in item.data.data_points:
                        if all(point.attributes.get(k) == v for k, v in attributes.items()):
                            found.append(point)
        return found

    def total(self, metric: str, **attributes: Any) -> float:
        """Sum of a counter, or count of a histogram, over the matching points."""
        return sum(
            point.count if hasattr(point, "count") else point.value
            for point in self.points(metric, **attributes)
        )


@pytest.fixture(scope="module")
def installed() -> Iterator[Telemetry]:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        trace.set_tracer_provider(TracerProvider(shutdown_on_exit=False))
        provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider), f"a foreign tracer provider is set: {provider}"
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with metric_reader_installed() as reader:
        try:
            yield Telemetry(exporter, reader)
        finally:
            exporter.shutdown()  # spans of later modules are dropped, not kept in memory


@pytest.fixture
def telemetry(installed: Telemetry) -> Telemetry:
    installed.spans.clear()
    return installed


# --- the proxy meter ----------------------------------------------------------------------------


def test_instruments_created_before_the_provider_forward_to_it_when_provider_set(telemetry):
    from dotmac_shared.business_logic.observability import _telemetry as module

    before = telemetry.total(BILLING_CUSTOMERS, tenant="proxy-check")
    module.BILLING_CUSTOMERS_PROCESSED.add(3, {"tenant": "proxy-check"})
    assert telemetry.total(BILLING_CUSTOMERS, tenant="proxy-check") == before + 3


# --- spans --------------------------------------------------------------------------------------

# Run in a fresh interpreter: this process's tracer provider is set once, by the fixture above.
_SPANS_BEFORE_AND_AFTER_THE_SDK = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from dotmac_shared.business_logic.observability._telemetry import start_span

with start_span("before", {"a": 1}) as span:
    assert span is trace.INVALID_SPAN and not span.is_recording()
trace.set_tracer_provider(TracerProvider())
with start_span("after", {"a": 1}) as span:
    assert span.is_recording() and trace.get_current_span() is span, span
    assert span.name == "after" and span.attributes["a"] == 1
print("ok")
"""


def test_spans_record_once_an_sdk_is_installed_and_cost_nothing_before():
    ran = subprocess.run(
        [sys.executable, "-c", _SPANS_BEFORE_AND_AFTER_THE_SDK],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (ran.returncode, ran.stdout.strip()) == (0, "ok"), ran.stderr


# --- policies -----------------------------------------------------------------------------------

POLICY = {
    "name": "otel.adult",
    "version": "1.0.0",
    "rules": [{"name": "adult", "field": "age", "operator": "gte", "value": 18}],
}


@pytest.fixture(scope="module")
def policy_engine() -> PolicyEngine:
    engine = PolicyEngine()
    engine.register_policy(POLICY)
    return engine


@settings(max_examples=25, deadline=None)
@given(ages=st.lists(st.integers(min_value=0, max_value=120), min_size=1, max_size=10))
def test_policy_latency_is_recorded_per_decision_when_evaluated(installed, policy_engine, ages):
    allow = dict(policy="otel.adult", decision="ALLOW")
    deny = dict(policy="otel.adult", decision="DENY")
    before = installed.total(POLICY_DURATION, **allow), installed.total(POLICY_DURATION, **deny)
    for age in ages:
        policy_engine.evaluate("otel.adult", {"age": age})
    adults = sum(1 for age in ages if age >= 18)
    assert installed.total(POLICY_DURATION, **allow) == before[0] + adults
    assert installed.total(POLICY_DURATION, **deny) == before[1] + len(ages) - adults
    (point,) = installed.points(POLICY_DURATION, **(allow if adults else deny))
    assert 0 <= point.sum / point.count < 50  # milliseconds per evaluation


def test_policy_evaluation_opens_no_span_when_evaluated(telemetry, policy_engine):
    policy_engine.evaluate("otel.adult", {"age": 30})
    assert telemetry.finished_spans() == []  # by design: callers trace the operation


# --- idempotency --------------------------------------------------------------------------------


class OtelEcho(IdempotentOperation):
    """Returns its payload."""

    operation_type = "otel_test_echo"

    async def execute(self, operation_data: Mapping[str, Any], context: Mapping[str, Any]) -> dict:
        return dict(operation_data)


async def test_idempotency_counts_miss_then_hit_and_traces_each_call(telemetry, session_factory):
    manager = IdempotencyManager(session_factory)
    data = {"n": uuid.uuid4().hex}
    key = IdempotencyKey.generate(OtelEcho.operation_type, "tenant-otel", data)
    attrs = {"operation_type": OtelEcho.operation_type}
    before = {
        outcome: telemetry.total(IDEMPOTENCY_REQUESTS, outcome=outcome, **attrs)
        for outcome in ("miss", "hit")
    }
    first = await manager.execute_idempotent(idempotency_key=key, operation_data=data)
    second = await manager.execute_idempotent(idempotency_key=key, operation_data=data)
    assert (first.from_cache, second.from_cache) == (False, True)
    assert telemetry.total(IDEMPOTENCY_REQUESTS, outcome="miss", **attrs) == before["miss"] + 1
    assert telemetry.total(IDEMPOTENCY_REQUESTS, outcome="hit", **attrs) == before["hit"] + 1
    spans = telemetry.finished_spans("idempotency.execute")
    assert [s.attributes["idempotency.outcome"] for s in spans] == ["miss", "hit"]
    assert all(s.attributes["operation_type"] == OtelEcho.operation_type for s in spans)


async def test_idempotency_counts_a_conflict_when_payload_differs(telemetry, session_factory):
    manager = IdempotencyManager(session_factory)
    client_key = f"client-{uuid.uuid4().hex}"
    context = {"tenant_id": "tenant-otel"}
    attrs = {"operation_type": OtelEcho.operation_type, "outcome": "conflict"}
    before = telemetry.total(IDEMPOTENCY_REQUESTS, **attrs)
    await manager.execute_idempotent(client_key, {"a": 1}, context, operation=OtelEcho)
    with pytest.raises(IdempotencyPayloadMismatchError):
        await manager.execute_idempotent(client_key, {"a": 2}, context, operation=OtelEcho)
    assert telemetry.total(IDEMPOTENCY_REQUESTS, **attrs) == before + 1
    (failed,) = [s for s in telemetry.finished_spans("idempotency.execute") if not s.status.is_ok]
    assert failed.status.status_code is StatusCode.ERROR


# --- sagas --------------------------------------------------------------------------------------


async def _ok(ctx: StepContext) -> dict:
    return {ctx.step_name: True}


async def _undo(ctx: StepContext) -> None:
    return None


async def _boom(ctx: StepContext) -> dict:
    raise RuntimeError("step b exploded")


def _coordinator(factory: Any) -> SagaCoordinator:
    coordinator = SagaCoordinator(factory, lease_seconds=5)
    coordinator.register_saga(
        SagaDefinition(
            name="otel_ok",
            steps=[SagaStep(name="a", execute=_ok, compensate=_undo), SagaStep("b", _ok)],
        )
    )
    coordinator.register_saga(
        SagaDefinition(
            name="otel_fail",
            steps=[SagaStep(name="a", execute=_ok, compensate=_undo), SagaStep("b", _boom)],
        )
    )
    return coordinator


def _context(tenant: str = "tenant-otel") -> SagaContext:
    return SagaContext(saga_id=f"otel-{uuid.uuid4().hex[:12]}", tenant_id=tenant, user_id="u")


async def test_saga_and_each_step_get_spans_when_saga_completes(telemetry, session_factory):
    context = _context()
    result = await _coordinator(session_factory).execute_saga("otel_ok", context)
    assert result["status"] == "completed"
    (saga,) = [
        s
        for s in telemetry.finished_spans("saga.execute")
        if s.attributes["dotmac.saga.id"] == context.saga_id
    ]
    assert saga.attributes["dotmac.saga.name"] == "otel_ok"
    assert saga.attributes["dotmac.saga.status"] == "completed"
    assert saga.attributes["dotmac.tenant.id"] == "tenant-otel"
    assert saga.status.status_code is not StatusCode.ERROR
    steps = [
        s
        for s in telemetry.finished_spans("saga.step.execute")
        if s.attributes["dotmac.saga.id"] == context.saga_id
    ]
    assert [s.attributes["dotmac.saga.step"] for s in steps] == ["a", "b"]
    assert all(s.parent is not None and s.parent.span_id == saga.context.span_id for s in steps)
    assert all(s.context.trace_id == saga.context.trace_id for s in steps)


async def test_saga_failure_is_an_error_span_with_a_compensation_span(telemetry, session_factory):
    context = _context()
    result = await _coordinator(session_factory).execute_saga("otel_fail", context)
    assert result["status"] == "compensated"
    (saga,) = [
        s
        for s in telemetry.finished_spans("saga.execute")
        if s.attributes["dotmac.saga.id"] == context.saga_id
    ]
    assert saga.status.status_code is StatusCode.ERROR
    assert "step b exploded" in (saga.status.description or "")
    (undo,) = telemetry.finished_spans("saga.step.compensate")
    assert undo.attributes["dotmac.saga.step"] == "a"
    assert undo.parent is not None and undo.parent.span_id == saga.context.span_id


async def test_saga_finished_counter_and_step_durations_are_recorded(telemetry, session_factory):
    completed = dict(saga="otel_ok", status="completed")
    compensated = dict(saga="otel_fail", status="compensated")
    step = dict(saga="otel_fail", step="b", phase="execute", outcome="error")
    undo = dict(saga="otel_fail", step="a", phase="compensate", outcome="ok")
    before = [
        telemetry.total(SAGA_FINISHED, **completed),
        telemetry.total(SAGA_FINISHED, **compensated),
        telemetry.total(SAGA_STEP_DURATION, **step),
        telemetry.total(SAGA_STEP_DURATION, **undo),
    ]
    coordinator = _coordinator(session_factory)
    await coordinator.execute_saga("otel_ok", _context())
    await coordinator.execute_saga("otel_ok", _context())
    await coordinator.execute_saga("otel_fail", _context())
    assert telemetry.total(SAGA_FINISHED, **completed) == before[0] + 2
    assert telemetry.total(SAGA_FINISHED, **compensated) == before[1] + 1
    assert telemetry.total(SAGA_STEP_DURATION, **step) == before[2] + 1
    assert telemetry.total(SAGA_STEP_DURATION, **undo) == before[3] + 1
    (durations,) = telemetry.points(
        SAGA_STEP_DURATION, saga="otel_ok", step="a", phase="execute", outcome="ok"
    )
    assert durations.count >= 2 and 0 <= durations.sum / durations.count < 5_000  # ms


async def test_saga_logs_carry_tenant_correlation_and_saga_ids(session_factory, caplog):
    context = _context(tenant="tenant-logs")
    with (
        caplog.at_level(logging.WARNING, logger="dotmac_shared"),
        correlation_scope("corr-otel-1"),
    ):
        await _coordinator(session_factory).execute_saga("otel_fail", context)
    records = [r for r in caplog.records if context.saga_id in r.getMessage()]
    assert records, caplog.text
    for record in records:
        assert record.tenant_id == "tenant-logs"
        assert record.saga_id == context.saga_id
        assert record.correlation_id == "corr-otel-1"


# --- billing ------------------------------------------------------------------------------------


def _last_full_month() -> str:
    previous = dt.datetime.now(dt.UTC).date().replace(day=1) - dt.timedelta(days=1)
    return f"{previous.year:04d}-{previous.month:02d}"


async def test_billing_run_counts_every_customer_it_processed(telemetry, session_factory, caplog):
    await seed_demo_data(session_factory, customers=7)
    before = telemetry.total(BILLING_CUSTOMERS, tenant="tenant123")
    period = _last_full_month()
    with caplog.at_level(logging.INFO, logger="dotmac_shared"):
        outcome = await run_billing(session_factory, "tenant123", period, batch_size=3)
    assert outcome["status"] == "completed"
    seen = outcome["step_results"]["generate_invoices"]["customers_seen"]
    assert seen >= 7
    assert telemetry.total(BILLING_CUSTOMERS, tenant="tenant123") == before + seen
    saga_id = billing_run_id("tenant123", period)
    (saga,) = [
        s
        for s in telemetry.finished_spans("saga.execute")
        if s.attributes["dotmac.saga.id"] == saga_id
    ]
    assert saga.attributes["dotmac.saga.name"] == "billing_run"
    (finalized,) = [r for r in caplog.records if "finalized" in r.getMessage()]
    assert (finalized.tenant_id, finalized.saga_id) == ("tenant123", saga_id)
