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

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext

from opentelemetry import metrics, trace
from opentelemetry.util.types import AttributeValue

__all__ = [
    "BILLING_CUSTOMERS_PROCESSED",
    "IDEMPOTENCY_REQUESTS",
    "NOTIFICATIONS_RELAYED",
    "POLICY_EVALUATION_DURATION",
    "SAGA_FINISHED",
    "SAGA_STEP_DURATION",
    "get_meter",
    "get_tracer",
    "start_span",
]

INSTRUMENTATION_NAME = "dotmac_shared.business_logic"


def get_tracer() -> trace.Tracer:
    """Return the framework's tracer (resolved through the global provider at call time)."""
    return trace.get_tracer(INSTRUMENTATION_NAME)


_TRACER = get_tracer()
# The providers the API falls back to while no SDK is installed: every span they make is the
# same non-recording span.
_NO_SDK = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)


def start_span(
    name: str, attributes: Mapping[str, AttributeValue]
) -> AbstractContextManager[trace.Span]:
    """Start a current span on the framework's tracer, as ``start_as_current_span`` does.

    While no SDK is installed this returns the API's non-recording span without making
    it current: the API's own no-op path (two context managers and a context attach) costs
    a sizeable share of the idempotency manager's own work per call.
    """
    if isinstance(trace.get_tracer_provider(), _NO_SDK):
        return nullcontext(trace.INVALID_SPAN)
    return _TRACER.start_as_current_span(name, attributes=attributes)


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
NOTIFICATIONS_RELAYED = _meter.create_counter(
    "dotmac.notifications.relayed",
    description="Outbox notices by delivery outcome (sent, retry, dead, lost) and channel",
)
