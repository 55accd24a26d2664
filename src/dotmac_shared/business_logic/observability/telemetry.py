"""Spans and metrics through the OpenTelemetry API: no-ops unless the application installs an SDK.

Instruments are created once here so every pillar reports under the same names::

    dotmac.policy.evaluation.duration      histogram, ms   {policy, decision}
    dotmac.idempotency.requests            counter         {operation_type, outcome}
                                           outcome: miss | hit | conflict | in_progress | takeover
    dotmac.saga.finished                   counter         {saga, status}
    dotmac.saga.step.duration              histogram, ms   {saga, step, outcome}
    dotmac.billing.customers_processed     counter         {tenant}
"""

from __future__ import annotations

from opentelemetry import metrics, trace

__all__ = [
    "BILLING_CUSTOMERS_PROCESSED",
    "IDEMPOTENCY_REQUESTS",
    "POLICY_EVALUATION_DURATION",
    "SAGA_FINISHED",
    "SAGA_STEP_DURATION",
    "get_meter",
    "get_tracer",
]

INSTRUMENTATION_NAME = "dotmac_shared.business_logic"


def get_tracer() -> trace.Tracer:
    """Return the framework's tracer (resolved through the global provider at call time)."""
    return trace.get_tracer(INSTRUMENTATION_NAME)


def get_meter() -> metrics.Meter:
    """Return the framework's meter (resolved through the global provider at call time)."""
    return metrics.get_meter(INSTRUMENTATION_NAME)


# The API's proxy meter binds these to the real SDK once the application installs one.
_meter = get_meter()

POLICY_EVALUATION_DURATION = _meter.create_histogram(
    "dotmac.policy.evaluation.duration",
    unit="ms",
    description="Time to evaluate one policy with full explanation",
)
IDEMPOTENCY_REQUESTS = _meter.create_counter(
    "dotmac.idempotency.requests",
    description="Idempotent executions by outcome: miss, hit, conflict, in_progress, takeover",
)
SAGA_FINISHED = _meter.create_counter(
    "dotmac.saga.finished",
    description="Sagas that reached a final status (completed, compensated, failed, ...)",
)
SAGA_STEP_DURATION = _meter.create_histogram(
    "dotmac.saga.step.duration",
    unit="ms",
    description="Duration of one saga step execution or compensation",
)
BILLING_CUSTOMERS_PROCESSED = _meter.create_counter(
    "dotmac.billing.customers_processed",
    description="Customers a billing run has invoiced",
)
