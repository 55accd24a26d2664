"""Install the OpenTelemetry SDK's in-memory metric reader for one test module."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import metrics
from opentelemetry.metrics import _internal as metrics_internal
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.util._once import Once


def unset_global_meter_provider() -> None:
    """Let the next ``set_meter_provider`` take effect (the API allows one per process)."""
    # What opentelemetry-test-utils' reset_metrics_globals does, minus replacing the proxy
    # provider: the library's instruments hang off that proxy and must be rebound, not lost.
    metrics_internal._METER_PROVIDER_SET_ONCE = Once()
    metrics_internal._METER_PROVIDER = None


@contextmanager
def metric_reader_installed() -> Iterator[InMemoryMetricReader]:
    """An SDK meter provider with an in-memory reader, global for the duration."""
    reader = InMemoryMetricReader()
    unset_global_meter_provider()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader], shutdown_on_exit=False))
    assert metrics.get_meter_provider() is metrics_internal._METER_PROVIDER
    try:
        yield reader
    finally:
        unset_global_meter_provider()  # let later modules install their own
